"""H11Transport through an http proxy, against a scripted proxy on 127.0.0.1 that is also
the far end (so nothing leaves loopback): http in absolute form, https through CONNECT with
TLS to the registry inside the tunnel (its name sent and verified), proxy credentials, each
refusal mapped to the error the RegistryClient expects, and the loopback bypass. The last
tests drive a RegistryClient: a refusing proxy is not retried and is named in the error."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from runtime.service.content import MemoryContentStore
from runtime.service.images import (
    ProxySettings,
    RegistryClient,
    RegistryUnavailable,
    RetryPolicy,
    Unauthorized,
    pull,
)
from runtime.service.images import connections as conn
from runtime.service.images.transport import H11Transport, ProxyRefused
from tests.support import certs

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"
FORBIDDEN = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"
AUTH_REQUIRED = (b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                 b'Proxy-Authenticate: Basic realm="p"\r\nContent-Length: 0\r\n\r\n')
BAD_GATEWAY = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"
UNAUTHORIZED = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"
REGISTRY = "registry.test:5000"  # never resolved: the scripted proxy is the far end


class ScriptedProxy:
    """Answers CONNECT with CONNECT_ANSWER, then (after a 2xx) speaks TLS as the registry
    and answers ANSWER; a plain request is answered ANSWER. ``seen`` holds every request
    head it read, in order; ``names`` every TLS server name asked for."""

    def __init__(self, *, connect_answer: bytes = ESTABLISHED, answer: bytes = OK,
                 tls: ssl.SSLContext | None = None) -> None:
        self.connect_answer = connect_answer
        self.answer = answer
        self.tls = tls
        self.seen: list[bytes] = []
        self.names: list[str | None] = []
        if tls is not None:
            tls.sni_callback = lambda _obj, name, _ctx: self.names.append(name)
        self.port = 0

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            head = await r.readuntil(b"\r\n\r\n")
            self.seen.append(head)
            if head.startswith(b"CONNECT "):
                w.write(self.connect_answer)
                await w.drain()
                if not self.connect_answer.startswith(b"HTTP/1.1 2") or self.tls is None:
                    return
                await w.start_tls(self.tls)
                self.seen.append(await r.readuntil(b"\r\n\r\n"))
            w.write(self.answer)
            await w.drain()
        w.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[ScriptedProxy]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()
            await server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def server_tls(tmp_path: Path, name: str = "registry.test") -> tuple[ssl.SSLContext, str]:
    key, cert = certs.self_signed(tmp_path, name, common_name=name)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx, cert


def header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == name.lower():
            return v.strip()
    return None


async def get(url: str, *, proxies: ProxySettings, cafile: str | None = None
              ) -> httpx.Response:
    def context() -> ssl.SSLContext:
        return ssl.create_default_context(cafile=cafile) if cafile else \
            conn.tls_context(verify=True)

    transport = H11Transport(tls_context=context, proxies=proxies)
    async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(2)) as client:
        r = await client.get(url)
        await r.aread()
        return r


@pytest.mark.parametrize("user", [pytest.param(None, id="anonymous"),
                                  pytest.param("alice:s3cret", id="with-credentials")])
def test_http_goes_to_the_proxy_in_absolute_form(user: str | None) -> None:
    async def go() -> tuple[httpx.Response, ScriptedProxy]:
        async with ScriptedProxy().running() as p:
            value = p.url.replace("//", f"//{user}@") if user else p.url
            r = await get(f"http://{REGISTRY}/v2/x?n=1", proxies=ProxySettings.of(http=value))
            return r, p

    r, p = asyncio.run(go())
    assert r.status_code == 200 and r.content == b"hello"
    assert len(p.seen) == 1
    assert p.seen[0].startswith(f"GET http://{REGISTRY}/v2/x?n=1 HTTP/1.1\r\n".encode())
    assert header(p.seen[0], b"host") == REGISTRY.encode()
    want = b"Basic " + base64.b64encode(user.encode()) if user else None
    assert header(p.seen[0], b"proxy-authorization") == want


@pytest.mark.parametrize("user", [pytest.param(None, id="anonymous"),
                                  pytest.param("alice:s3cret", id="with-credentials")])
def test_https_goes_through_a_connect_tunnel(tmp_path: Path, user: str | None) -> None:
    tls, cafile = server_tls(tmp_path)

    async def go() -> tuple[httpx.Response, ScriptedProxy]:
        async with ScriptedProxy(tls=tls).running() as p:
            value = p.url.replace("//", f"//{user}@") if user else p.url
            r = await get(f"https://{REGISTRY}/v2/x?n=1", cafile=cafile,
                          proxies=ProxySettings.of(https=value))
            return r, p

    r, p = asyncio.run(go())
    assert r.status_code == 200 and r.content == b"hello"
    connect, inner = p.seen
    assert connect.startswith(f"CONNECT {REGISTRY} HTTP/1.1\r\n".encode())
    assert header(connect, b"host") == REGISTRY.encode()
    want = b"Basic " + base64.b64encode(user.encode()) if user else None
    assert header(connect, b"proxy-authorization") == want
    assert p.names == ["registry.test"]  # TLS with the registry, by its name
    assert inner.startswith(b"GET /v2/x?n=1 HTTP/1.1\r\n")
    assert header(inner, b"host") == REGISTRY.encode()
    assert header(inner, b"proxy-authorization") is None  # not sent to the registry


@pytest.mark.parametrize(
    ("cert_name", "trusted"),
    [pytest.param("registry.test", False, id="default-cas-refuse-it"),
     pytest.param("other.test", True, id="name-mismatch")],
)
def test_tls_inside_the_tunnel_is_verified(tmp_path: Path, cert_name: str,
                                           trusted: bool) -> None:
    tls, cafile = server_tls(tmp_path, cert_name)

    async def go() -> BaseException:
        async with ScriptedProxy(tls=tls).running() as p:
            with pytest.raises(httpx.ConnectError) as e:
                await get(f"https://{REGISTRY}/v2/", cafile=cafile if trusted else None,
                          proxies=ProxySettings.of(https=p.url))
            return e.value

    err = asyncio.run(go())
    assert str(err).startswith(f"{REGISTRY} through proxy http://127.0.0.1:")
    assert "CERTIFICATE_VERIFY_FAILED" in str(err)


@pytest.mark.parametrize(
    ("scheme", "user", "connect_answer", "answer", "refused", "message"),
    [pytest.param("https", "", FORBIDDEN, OK, 403, "CONNECT answered 403 Forbidden",
                  id="403"),
     pytest.param("https", "", AUTH_REQUIRED, OK, 407, "CONNECT answered 407 Proxy"
                  " Authentication Required (no credentials in the proxy URL)", id="407"),
     pytest.param("https", "a:b@", AUTH_REQUIRED, OK, 407, "CONNECT answered 407 Proxy"
                  " Authentication Required (credentials rejected)", id="407-credentials"),
     pytest.param("https", "a:b@", UNAUTHORIZED, OK, 401, "CONNECT answered 401"
                  " Unauthorized (credentials rejected)", id="401-credentials"),
     pytest.param("https", "", BAD_GATEWAY, OK, None, "CONNECT answered 502 Bad Gateway",
                  id="502-is-worth-a-retry"),
     pytest.param("http", "", ESTABLISHED, AUTH_REQUIRED, 407, "GET answered 407 Proxy"
                  " Authentication Required (no credentials in the proxy URL)",
                  id="plain-http-407")],
)
def test_proxy_refusals(scheme: str, user: str, connect_answer: bytes, answer: bytes,
                        refused: int | None, message: str) -> None:
    async def go() -> tuple[BaseException, str]:
        async with ScriptedProxy(connect_answer=connect_answer, answer=answer).running() as p:
            value = p.url.replace("//", f"//{user}")
            with pytest.raises(httpx.ProxyError) as e:
                await get(f"{scheme}://{REGISTRY}/v2/",
                          proxies=ProxySettings.of(http=value, https=value))
            return e.value, p.url

    err, url = asyncio.run(go())
    assert str(err) == f"proxy {url}: {message}"
    assert isinstance(err, ProxyRefused) is (refused is not None)
    if isinstance(err, ProxyRefused):
        assert err.status == refused


def test_unreachable_proxy_is_named() -> None:
    async def go() -> None:
        with pytest.raises(httpx.ProxyError,
                           match=r"^proxy http://127.0.0.1:9: ConnectionRefusedError"):
            await get(f"https://{REGISTRY}/v2/",
                      proxies=ProxySettings.of(https="http://127.0.0.1:9"))

    asyncio.run(go())


def test_unusable_proxy_setting_is_refused() -> None:
    async def go() -> None:
        with pytest.raises(ProxyRefused, match=r"HTTPS_PROXY: socks5://p\.test: unsupported") \
                as e:
            await get(f"https://{REGISTRY}/v2/",
                      proxies=ProxySettings.of(https="socks5://p.test:1080"))
        assert e.value.status is None

    asyncio.run(go())


@pytest.mark.parametrize("no_proxy", [pytest.param("", id="loopback"),
                                      pytest.param("*", id="no-proxy-star")])
def test_bypassed_requests_go_direct(no_proxy: str) -> None:
    async def go() -> tuple[httpx.Response, ScriptedProxy, ScriptedProxy]:
        async with ScriptedProxy().running() as proxy, \
                ScriptedProxy(answer=OK).running() as registry:
            r = await get(f"http://127.0.0.1:{registry.port}/v2/",
                          proxies=ProxySettings.of(http=proxy.url, no_proxy=no_proxy))
            return r, proxy, registry

    r, proxy, registry = asyncio.run(go())
    assert r.status_code == 200 and proxy.seen == []
    assert registry.seen[0].startswith(b"GET /v2/ HTTP/1.1\r\n")


# ---- through a RegistryClient ---------------------------------------------------------

@pytest.mark.parametrize(
    ("connect_answer", "error", "connects", "message"),
    [pytest.param(FORBIDDEN, Unauthorized, 1, "{url}: CONNECT answered 403 Forbidden",
                  id="refusal-not-retried"),
     pytest.param(BAD_GATEWAY, RegistryUnavailable, 3, "manifest 1: ProxyError: proxy {url}:"
                  " CONNECT answered 502 Bad Gateway (gave up after 3 attempts)",
                  id="bad-gateway-retried")],
)
def test_registry_client_names_the_proxy(connect_answer: bytes, error: type[Exception],
                                         connects: int, message: str) -> None:
    async def go() -> tuple[BaseException, ScriptedProxy]:
        async with ScriptedProxy(connect_answer=connect_answer).running() as p:
            async with RegistryClient(proxies=ProxySettings.of(https=p.url),
                                      retry=RetryPolicy(attempts=3, base_delay=0.001)) as c:
                with pytest.raises(error) as e:
                    await pull(f"{REGISTRY}/busybox:1", client=c, store=MemoryContentStore())
            return e.value, p

    err, p = asyncio.run(go())
    want = message.format(url=p.url)
    if error is Unauthorized:
        want = f"pull {REGISTRY}/busybox:1: proxy {want}"
    else:
        want = f"pull {REGISTRY}/busybox:1: {want}"
    assert str(err) == want
    assert [h.split(b"\r\n")[0] for h in p.seen] == \
        [f"CONNECT {REGISTRY} HTTP/1.1".encode()] * connects


def test_registry_client_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    async def go() -> tuple[BaseException, ScriptedProxy]:
        async with ScriptedProxy(connect_answer=FORBIDDEN).running() as p:
            monkeypatch.setenv("https_proxy", p.url)
            monkeypatch.delenv("HTTPS_PROXY", raising=False)
            monkeypatch.setenv("NO_PROXY", "elsewhere.test")
            async with RegistryClient() as c:
                with pytest.raises(Unauthorized) as e:
                    await pull(f"{REGISTRY}/busybox:1", client=c, store=MemoryContentStore())
            return e.value, p

    err, p = asyncio.run(go())
    assert f"proxy {p.url}: CONNECT answered 403" in str(err) and len(p.seen) == 1
