"""Pulls through a real http proxy (Debian's tinyproxy on 127.0.0.1) from a real
docker-registry that is not on loopback (Go's rule: loopback is never proxied), so the
registry runs in a network namespace of the test's own, reached over a veth pair:

    pytest ──HTTP(S)_PROXY──► tinyproxy 127.0.0.1:P ──► veth 10.255.77.(4k+1)/30
                                                        └─ netns <tag>-px: 10.255.77.(4k+2)
                                                           docker-registry :5000 (http)
                                                                           :5443 (https,
                                                           the same storage, a self-signed
                                                           certificate for that IP)

Each test checks the pull AND tinyproxy's log (a request line naming the registry), or its
absence under NO_PROXY. The netns (and with it the veth pair), the registries and tinyproxy
are removed by the test; leak_check checks the netns and the processes.
"""

from __future__ import annotations

import gc
import hashlib
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.service.content import FileContentStore
from runtime.service.images import RegistryClient, RetryPolicy, Unauthorized, pull
from runtime.service.images import connections as conn
from tests.support import certs, ociimage, process
from tests.support.etcd import free_port
from tests.support.registry import REGISTRY, Registry

pytestmark = pytest.mark.asyncio
TINYPROXY = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"
PROXY_ENV = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy",
             "SSL_CERT_FILE", "SSL_CERT_DIR")
IMAGE = ociimage.image()


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


class Netns(process.Managed):
    """A network namespace named after the test's tag, joined to the host by a veth pair
    on a /30 of 10.255.77.0/24 (from the tag, and one no interface of the host has yet);
    deleting the netns deletes the pair."""

    def __init__(self, tag: str) -> None:
        self.name = f"{tag}-px"
        first = int(hashlib.sha256(tag.encode()).hexdigest(), 16) % 64
        for k in range(64):
            base = 4 * ((first + k) % 64)
            taken = subprocess.run(["ip", "-o", "addr", "show", "to", f"10.255.77.{base}/30"],
                                   capture_output=True, text=True, timeout=10).stdout
            if not taken.strip():
                break
        else:
            pytest.fail("every /30 of 10.255.77.0/24 is in use on this host")
        self.host_ip, self.ns_ip = f"10.255.77.{base + 1}", f"10.255.77.{base + 2}"
        self.host_if, self.ns_if = f"pxh{tag[-10:]}", f"pxn{tag[-10:]}"  # <= 15 characters

    def start(self) -> Netns:
        try:
            ip("netns", "add", self.name)
            ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if,
               "netns", self.name)
            ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
            ip("link", "set", self.host_if, "up")
            ip("-n", self.name, "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if)
            ip("-n", self.name, "link", "set", self.ns_if, "up")
            ip("-n", self.name, "link", "set", "lo", "up")
        except BaseException:
            self.cleanup()
            raise
        return self

    def cleanup(self) -> None:
        for args in (["netns", "delete", self.name], ["link", "delete", self.host_if]):
            subprocess.run(["ip", *args], check=False, capture_output=True, timeout=10)


class NetnsRegistry(Registry):
    """tests.support.registry.Registry, served inside NS on NS.ns_ip:PORT (https with
    TLS=(key, cert)); the process is ``ip netns exec`` exec'ing docker-registry (one PID)."""

    def __init__(self, ns: Netns, *, port: int, tls: tuple[str, str] | None = None,
                 data_dir: str | None = None) -> None:
        super().__init__(data_dir=data_dir)
        self.ns, self.tls, self.port = ns, tls, port
        self.host = f"{ns.ns_ip}:{port}"
        self.url = f"{'https' if tls else 'http'}://{self.host}"

    def _config(self) -> str:
        path = super()._config()  # ends with the http: section (no auth configured here)
        if self.tls:
            with open(path, "a") as f:
                f.write(f"  tls:\n    key: {self.tls[0]}\n    certificate: {self.tls[1]}\n")
        return path

    def start(self, timeout: float = 10) -> NetnsRegistry:
        config = self._config()
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("REGISTRY_") and k not in PROXY_ENV}
        self.proc = process.start(["ip", "netns", "exec", self.ns.name, REGISTRY, "serve",
                                   config], log_path=self.log_path, env=env)
        try:
            process.wait_until_ready(self.proc, name="docker-registry", condition="answering",
                                     ready=self._answers, timeout=timeout, tail=self.log_tail,
                                     interval=0.05)
        except BaseException:
            self.cleanup()
            raise
        return self

    def _answers(self) -> bool:
        insecure = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                             urllib.request.HTTPSHandler(context=insecure))
        try:
            with opener.open(f"{self.url}/v2/", timeout=1):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False


class TinyProxy(process.Managed):
    """tinyproxy in the foreground on a free 127.0.0.1 port, with its own config and log;
    stopped by PID. CONNECT_PORTS limits CONNECT (else any port); USER=(name, password)
    asks for Basic credentials."""

    def __init__(self, *, connect_ports: tuple[int, ...] = (),
                 user: tuple[str, str] | None = None) -> None:
        self.dir = tempfile.mkdtemp(prefix="corral-tinyproxy-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(self.dir, "tinyproxy.log")
        self.connect_ports = connect_ports
        self.user = user
        self.proc: process.Process | None = None

    def start(self) -> TinyProxy:
        if not os.path.exists(TINYPROXY):
            pytest.fail(f"{TINYPROXY} is missing (Debian package tinyproxy-bin: "
                        "scripts/install-deps.sh)")
        lines = [f"Port {self.port}", "Listen 127.0.0.1", "Timeout 30",
                 f'LogFile "{self.log_path}"', "LogLevel Info", "MaxClients 20",
                 "Allow 127.0.0.1", "DisableViaHeader Yes"]
        lines += [f"ConnectPort {p}" for p in self.connect_ports]
        if self.user:
            lines.append(f"BasicAuth {self.user[0]} {self.user[1]}")
        config = os.path.join(self.dir, "tinyproxy.conf")
        with open(config, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = process.start([TINYPROXY, "-d", "-c", config],
                                  log_path=os.path.join(self.dir, "stderr.log"))
        try:
            process.wait_until_ready(self.proc, name="tinyproxy", condition="listening",
                                     ready=self._listening, timeout=10, tail=self.log_tail)
        except BaseException:
            self.cleanup()
            raise
        return self

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def requests(self) -> list[str]:
        """The request lines tinyproxy logged: "GET http://h:p/v2/… HTTP/1.1", "CONNECT …"."""
        with open(self.log_path, errors="replace") as f:
            return [line.split("): ", 1)[1] for line in f.read().splitlines()
                    if "Request (file descriptor" in line and "): " in line]

    def log_tail(self, lines: int = 20) -> str:
        return process.log_tail(self.log_path, lines=lines)

    def cleanup(self) -> None:
        proc, self.proc = self.proc, None
        process.stop(proc, timeout=5, kill_timeout=5)
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- fixtures ---------------------------------------------------------------------------

@pytest.fixture
def netns(tag: str, leak_check: None) -> Iterator[Netns]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    with Netns(tag) as ns:
        yield ns


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No proxy or CA setting from the machine: each test sets its own."""
    for name in PROXY_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def registry(netns: Netns) -> Iterator[NetnsRegistry]:
    with NetnsRegistry(netns, port=5000) as reg:
        ociimage.push(reg.url, "busybox", "1", IMAGE)
        yield reg


@pytest.fixture
def tls_registry(netns: Netns, registry: NetnsRegistry) -> Iterator[NetnsRegistry]:
    """The same storage as REGISTRY (so the image is there), served over https on 5443."""
    key, cert = certs.self_signed(registry.dir, netns.ns_ip)
    with NetnsRegistry(netns, port=5443, tls=(key, cert), data_dir=registry.data_dir) as reg:
        yield reg


def _collect() -> bool:
    """Free the shared SSL contexts an earlier test left (so SSL_CERT_FILE is read)."""
    gc.collect()
    return conn.live_tls_contexts() == 0


async def pull_it(image: str, store: Path, *, plain_http: tuple[str, ...] = ()) -> list[str]:
    """Pull IMAGE twice with one RegistryClient -> the layer digests; the client's pool
    keeps one client for the registry across both pulls."""
    async with RegistryClient(retry=RetryPolicy(attempts=2, base_delay=0.05),
                              plain_http=plain_http) as c:
        first = await pull(image, client=c, store=FileContentStore(store / "a"))
        held = c.connections.client(image.split("/")[0])
        again = await pull(image, client=c, store=FileContentStore(store / "b"))
        assert again.manifest_digest == first.manifest_digest
        assert c.connections.client(image.split("/")[0]) is held  # reused, not reopened
        return [str(layer.digest) for layer in first.layers]


# ---- tests ------------------------------------------------------------------------------

@pytest.mark.parametrize("variable", [pytest.param("HTTP_PROXY", id="upper"),
                                      pytest.param("http_proxy", id="lower")])
async def test_http_registry_through_the_proxy(registry: NetnsRegistry, clean_env:
                                               pytest.MonkeyPatch, tmp_path: Path,
                                               variable: str) -> None:
    with TinyProxy() as proxy:
        clean_env.setenv(variable, proxy.url)
        layers = await pull_it(f"{registry.host}/busybox:1", tmp_path,
                               plain_http=(registry.host,))
        assert layers == [str(layer.digest) for layer in IMAGE.layers]
        seen = proxy.requests()
    blob = f"GET http://{registry.host}/v2/busybox/blobs/{IMAGE.layers[0].digest} HTTP/1.1"
    assert blob in seen, seen
    assert any(r.startswith(f"HEAD http://{registry.host}/v2/busybox/manifests/1 ")
               for r in seen), seen


@pytest.mark.parametrize(
    ("name", "value"),
    [pytest.param("NO_PROXY", "{ip}", id="ip"),
     pytest.param("no_proxy", "{ip}", id="lower-case-variable"),
     pytest.param("NO_PROXY", "example.test, {ip}:5000", id="ip-and-port-in-a-list"),
     pytest.param("NO_PROXY", "10.255.77.0/24", id="cidr"),
     pytest.param("NO_PROXY", "*", id="star")],
)
async def test_no_proxy_goes_direct(registry: NetnsRegistry, netns: Netns,
                                    clean_env: pytest.MonkeyPatch, tmp_path: Path, name: str,
                                    value: str) -> None:
    with TinyProxy() as proxy:
        clean_env.setenv("HTTP_PROXY", proxy.url)
        clean_env.setenv(name, value.format(ip=netns.ns_ip))
        layers = await pull_it(f"{registry.host}/busybox:1", tmp_path,
                               plain_http=(registry.host,))
        assert layers == [str(layer.digest) for layer in IMAGE.layers]
        seen = proxy.requests()
    assert not [r for r in seen if netns.ns_ip in r], seen


async def test_https_registry_through_a_connect_tunnel(tls_registry: NetnsRegistry,
                                                       clean_env: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    """HTTPS_PROXY only (HTTP_PROXY would not be used for https); the registry's
    certificate is verified (SSL_CERT_FILE) inside the tunnel."""
    assert tls_registry.tls is not None
    with TinyProxy() as proxy:
        clean_env.setenv("HTTPS_PROXY", proxy.url)
        clean_env.setenv("SSL_CERT_FILE", tls_registry.tls[1])
        assert _collect()
        layers = await pull_it(f"{tls_registry.host}/busybox:1", tmp_path)
        assert layers == [str(layer.digest) for layer in IMAGE.layers]
        seen = proxy.requests()
    connects = [r for r in seen if r.startswith(f"CONNECT {tls_registry.host} ")]
    assert connects and len(connects) == len(seen), seen  # everything through the tunnel


async def test_a_refusing_proxy_is_named_and_not_retried(tls_registry: NetnsRegistry,
                                                         clean_env: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    with TinyProxy(connect_ports=(443,)) as proxy:  # CONNECT to 5443: refused
        clean_env.setenv("HTTPS_PROXY", proxy.url)
        with pytest.raises(Unauthorized) as e:
            await pull_it(f"{tls_registry.host}/busybox:1", tmp_path)
        seen = proxy.requests()
    assert str(e.value) == (f"pull {tls_registry.host}/busybox:1: proxy {proxy.url}:"
                            " CONNECT answered 403 Access violation")  # tinyproxy's reason
    assert seen == [f"CONNECT {tls_registry.host} HTTP/1.1"]  # once: no retry


@pytest.mark.parametrize(("credentials", "answer"),
                         [pytest.param("alice:s3cret@", None, id="right"),
                          pytest.param("alice:wrong@", "401 Unauthorized (credentials"
                                       " rejected)", id="wrong"),
                          pytest.param("", "407 Proxy Authentication Required (no credentials"
                                       " in the proxy URL)", id="none")])
async def test_proxy_credentials(tls_registry: NetnsRegistry, clean_env: pytest.MonkeyPatch,
                                 tmp_path: Path, credentials: str, answer: str | None) -> None:
    """tinyproxy with BasicAuth: 407 without credentials, 401 to wrong ones."""
    assert tls_registry.tls is not None
    with TinyProxy(user=("alice", "s3cret")) as proxy:
        clean_env.setenv("HTTPS_PROXY", proxy.url.replace("//", f"//{credentials}"))
        clean_env.setenv("SSL_CERT_FILE", tls_registry.tls[1])
        assert _collect()
        if answer is None:
            assert await pull_it(f"{tls_registry.host}/busybox:1", tmp_path)
            assert set(proxy.requests()) == {f"CONNECT {tls_registry.host} HTTP/1.1"}
            return
        with pytest.raises(Unauthorized) as e:
            await pull_it(f"{tls_registry.host}/busybox:1", tmp_path)
    assert str(e.value) == (f"pull {tls_registry.host}/busybox:1: proxy {proxy.url}:"
                            f" CONNECT answered {answer}")
    assert "alice" not in str(e.value)  # the proxy URL is shown without its credentials
