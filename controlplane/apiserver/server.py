"""One API server process: storage, the gRPC service over TLS, and the HTTP endpoints.

    APIServer(options).start()
        store    = EtcdStore(endpoints) [+ EncryptingStore for secrets] + MeasuredStore
        pki      = DATA_DIR/pki (cluster CA, server and admin certificates; made once)
        gRPC     = APIServicer over TLS on --listen (client certificates or bearer tokens)
        HTTP     = /healthz /readyz /metrics on --http-listen (plain, for probes and
                   Prometheus); the primary only: a --workers process (worker_id > 0)
                   serves gRPC and nothing else (workers.py)
        bootstrap: namespaces default, corral-system, corral-node-lease
        DATA_DIR/admin.conf = a clusterctl config for the admin

    init_cluster(DATA_DIR, listen=...)   the PKI and admin.conf of a first start, made
                                         ahead of it (`clusterctl cluster init` runs
                                         `python -m controlplane.apiserver.server init`)

Stateless: any number of these can serve one etcd; nothing here outlives the process but
the PKI and admin.conf, which every process of a cluster shares through DATA_DIR.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc  # type: ignore[import-untyped]
import yaml
from grpc import aio

from api import client as api_client
from api import errors as e
from api.v1 import apiserver_pb2_grpc as pb_grpc
from controlplane.apiserver import metrics
from controlplane.apiserver.objects import ObjectService
from controlplane.apiserver.resources import RESOURCES
from controlplane.apiserver.service import APIServicer, Gate
from controlplane.leaderlease import Timing
from controlplane.storage import EtcdStore, Store, compaction
from controlplane.storage.encryption import EncryptingStore, EncryptionConfig
from controlplane.storage.errors import InvalidArgument

if TYPE_CHECKING:
    from controlplane.apiserver.pki import ClusterPKI

log = logging.getLogger("corral.apiserver")

BOOTSTRAP_NAMESPACES = ("default", "corral-system", "corral-node-lease")


@dataclass
class Options:
    etcd_endpoints: list[str]
    data_dir: str
    listen: str = "127.0.0.1:6443"
    http_listen: str = "127.0.0.1:6444"
    hosts: list[str] = field(default_factory=list)  # extra names in the server certificate
    token_file: str = ""
    # Bearer-token clients connect here (TLS without a client certificate). grpcio can
    # either require and verify client certificates on a port or not ask for them at all,
    # so certificate clients (--listen) and token clients need a port each.
    token_listen: str = ""
    encryption_config: str = ""
    compaction_interval: float = compaction.DEFAULT_INTERVAL
    leader_elect: bool = True  # campaign to run the scheduler and controllers
    # --leader-elect-lease-duration / -renew-deadline / -retry-period (None: the defaults)
    leader_timing: Timing | None = None
    insecure: bool = False  # plain gRPC and no authentication: loopback tests only
    # 0: the primary (HTTP, bootstrap, leader election, compaction, admin.conf); K > 0: an
    # extra gRPC-only process of --workers (workers.py)
    worker_id: int = 0
    reuse_port: bool = False  # SO_REUSEPORT: --workers processes share --listen


def load_encryption_config(path: str) -> EncryptionConfig:
    """Kubernetes' EncryptionConfiguration file: the aesgcm provider's keys for secrets."""
    try:
        with open(path) as f:
            doc = yaml.safe_load(f)
    except OSError as err:
        raise InvalidArgument(f"{path}: {err.strerror}") from None
    keys: list[tuple[str, str]] = []
    for entry in (doc or {}).get("resources") or []:
        if "secrets" not in (entry.get("resources") or []):
            continue
        for provider in entry.get("providers") or []:
            for k in (provider.get("aesgcm") or {}).get("keys") or []:
                keys.append((str(k.get("name", "")), str(k.get("secret", ""))))
    if not keys:
        raise InvalidArgument(f"{path}: resources[secrets].providers[aesgcm].keys: no key "
                              "configured")
    return EncryptionConfig.from_base64(keys)


def split_hostport(value: str, what: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise InvalidArgument(f"{what} {value!r}: want HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


class APIServer:
    def __init__(self, options: Options, *, store: Store | None = None,
                 gate: Gate | None = None) -> None:
        self.options = options
        self._inner_store = store
        self._gate = gate
        self.store: Store | None = None
        self.objects: ObjectService | None = None
        self._grpc: Any = None
        self._http: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self.leading = False
        self.port = 0
        self.token_port = 0
        self.http_port = 0
        self.admin_conf = os.path.join(options.data_dir, "admin.conf")
        # another reason not to be ready yet (the primary waits for its workers)
        self.also_ready: Callable[[], str | None] = lambda: None

    async def start(self) -> None:
        o = self.options
        os.makedirs(o.data_dir, mode=0o700, exist_ok=True)
        store: Store = self._inner_store or EtcdStore(o.etcd_endpoints)
        if o.encryption_config:
            store = EncryptingStore(store, load_encryption_config(o.encryption_config))
        self.store = metrics.MeasuredStore(store)
        self.objects = ObjectService(self.store)
        gate = self._gate
        primary = o.worker_id == 0
        server = aio.server(options=[("grpc.max_receive_message_length", 16 * 1024 * 1024),
                                     ("grpc.so_reuseport", 1 if o.reuse_port else 0)])
        host, port = split_hostport(o.listen, "--listen")
        if o.reuse_port and primary:
            from controlplane.apiserver import workers
            workers.check_port_free(host, port, "--listen")
            if o.token_listen:
                workers.check_port_free(*split_hostport(o.token_listen, "--token-listen"),
                                        "--token-listen")
        if o.insecure:
            self.port = server.add_insecure_port(f"{host}:{port}")
        else:
            from controlplane.apiserver import gate as gates
            from controlplane.apiserver import pki
            bundle = pki.ensure_cluster_pki(o.data_dir, hosts=[host, *o.hosts])
            pair = [(_read(bundle.server_key), _read(bundle.server_cert))]
            creds = grpc.ssl_server_credentials(pair, root_certificates=_read(bundle.ca_cert),
                                                require_client_auth=True)
            self.port = server.add_secure_port(f"{host}:{port}", creds)
            if o.token_file and not o.token_listen:
                raise InvalidArgument("--token-file needs --token-listen HOST:PORT (the port "
                                      "for clients without a client certificate)")
            if o.token_listen:
                thost, tport = split_hostport(o.token_listen, "--token-listen")
                self.token_port = server.add_secure_port(
                    f"{thost}:{tport}", grpc.ssl_server_credentials(pair))
            gate = gate or gates.AuthGate(self.objects, token_file=o.token_file)
        if not self.port:
            raise InvalidArgument(f"--listen {o.listen}: cannot bind")
        pb_grpc.add_APIServicer_to_server(  # type: ignore[no-untyped-call]
            APIServicer(self.objects, gate=gate), server)
        from controlplane.apiserver import nodeproxy  # logs, exec, top: relayed to agents
        pb_grpc.add_NodeProxyServicer_to_server(  # type: ignore[no-untyped-call]
            nodeproxy.NodeProxyServicer(self.objects, gate=gate, dialer=nodeproxy.NodeDialer(
                os.path.join(o.data_dir, "pki"))), server)
        await server.start()
        self._grpc = server
        if not primary:
            log.info("API worker %d serving on %s:%d", o.worker_id, host, self.port)
            return
        hhost, hport = split_hostport(o.http_listen, "--http-listen")
        self._http = await asyncio.start_server(self._serve_http, hhost, hport)
        self.http_port = self._http.sockets[0].getsockname()[1]
        if not o.insecure:
            self._write_admin_conf(host)
        self._tasks.append(asyncio.create_task(self._bootstrap()))
        if o.leader_elect:
            from controlplane import manager
            timing = o.leader_timing or Timing()
            # renewals on their own thread and etcd connection, with a deadline as long as
            # the lease: a busy loop or a slow etcd answer does not cost the leadership
            renew = (None if self._inner_store is not None else
                     lambda: EtcdStore(o.etcd_endpoints, timeout=timing.lease_duration))
            self._tasks.append(asyncio.create_task(manager.run(
                self.store, timing=timing, on_change=self._leading, renew_store=renew)))
        if o.compaction_interval > 0:
            self._tasks.append(asyncio.create_task(
                compaction.compact_periodically(self.store, o.compaction_interval)))
        log.info("serving the API on %s:%d (HTTP on %s:%d)", host, self.port, hhost,
                 self.http_port)

    def _leading(self, leading: bool) -> None:
        self.leading = leading
        metrics.LEADER.set(1 if leading else 0)
        log.info("%s the leader", "became" if leading else "is no longer")

    def _write_admin_conf(self, host: str) -> None:
        from controlplane.apiserver import pki
        bundle = pki.ensure_cluster_pki(self.options.data_dir, hosts=[host])
        write_admin_conf(self.options.data_dir, server=admin_server(host, self.port),
                         bundle=bundle)

    async def _bootstrap(self) -> None:
        """The namespaces every cluster has; retried until etcd answers."""
        assert self.objects is not None
        pending = list(BOOTSTRAP_NAMESPACES)
        while pending:
            name = pending[0]
            try:
                await self.objects.create(RESOURCES["namespaces"], {
                    "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
            except e.APIError as err:
                if err.reason is not e.Reason.ALREADY_EXISTS:
                    await asyncio.sleep(0.5)
                    continue
            pending.pop(0)

    async def ready(self) -> str | None:
        """None when the server can serve, else why not (the /readyz answer)."""
        assert self.store is not None
        try:
            async with asyncio.timeout(2):
                await self.store.current_revision()
        except Exception as err:
            return f"etcd: {err or type(err).__name__}"
        if self._tasks and not self._tasks[0].done():
            return "bootstrap: the default namespaces are not created yet"
        return self.also_ready()

    async def _serve_http(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            parts = line.decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) > 1 else "/"
            status, ctype, body = await self._http_answer(path)
            head = (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _http_answer(self, path: str) -> tuple[str, str, bytes]:
        if path in ("/healthz", "/livez"):
            return "200 OK", "text/plain", b"ok"
        if path == "/readyz":
            why = await self.ready()
            if why:
                return "503 Service Unavailable", "text/plain", why.encode()
            return "200 OK", "text/plain", b"ok"
        if path == "/metrics":
            from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest(metrics.exposed())
        return "404 Not Found", "text/plain", b"not found"

    async def stop(self, grace: float = 1.0) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._grpc is not None:
            await self._grpc.stop(grace)
        if self._http is not None:
            self._http.close()
            await self._http.wait_closed()
        if self.objects is not None:
            await self.objects.close()
        if self.store is not None:
            await self.store.close()


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


# -- the files of a first start, made ahead of it (`clusterctl cluster init`) -------------


def admin_server(host: str, port: int) -> str:
    """The address admin.conf names for a server listening on HOST:PORT."""
    return f"{'127.0.0.1' if host in ('0.0.0.0', '', '::') else host}:{port}"


def write_admin_conf(data_dir: str, *, server: str, bundle: ClusterPKI) -> str:
    """DATA_DIR/admin.conf (0600, written atomically): a clusterctl config for the admin."""
    path = os.path.join(data_dir, "admin.conf")
    doc = api_client.make_config_doc(
        server=server, ca_pem=_read(bundle.ca_cert), cert_pem=_read(bundle.admin_cert),
        key_pem=_read(bundle.admin_key))
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    os.replace(tmp, path)
    return path


def init_cluster(data_dir: str, *, listen: str, hosts: Sequence[str] = (),
                 ca_cert: str = "", ca_key: str = "") -> tuple[ClusterPKI, str]:
    """What corral-controlplane makes at its first start, made now: DATA_DIR/pki (the
    cluster CA, or the one in CA_CERT/CA_KEY; the server certificate for LISTEN's host and
    HOSTS; the admin's) and DATA_DIR/admin.conf naming LISTEN. Running it again changes
    nothing (new HOSTS re-issue the server certificate, keeping its names); a CA_CERT
    other than the cluster's existing CA is a PKIError, and nothing is written."""
    from controlplane.apiserver import pki
    host, port = split_hostport(listen, "--listen")
    if port == 0:
        raise InvalidArgument(f"--listen {listen}: admin.conf needs the real port, not 0")
    if ca_cert or ca_key:
        _adopt_ca(data_dir, cert=ca_cert, key=ca_key)
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    bundle = pki.ensure_cluster_pki(data_dir, hosts=[host, *hosts])
    return bundle, write_admin_conf(data_dir, server=admin_server(host, port), bundle=bundle)


def _adopt_ca(data_dir: str, *, cert: str, key: str) -> None:
    """Put the CA in CERT/KEY in DATA_DIR/pki, unless it holds that very CA already."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from controlplane.apiserver import pki
    if not (cert and key):
        raise InvalidArgument("--ca-cert and --ca-key: give both (the CA's certificate "
                              "and its private key) or neither")
    given = pki.load_keypair(cert_path=cert, key_path=key)
    parsed = x509.load_pem_x509_certificate(given.cert_pem)
    try:
        is_ca = parsed.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise pki.PKIError(f"{cert}: not a CA certificate (basicConstraints CA:TRUE)")
    files = pki.ClusterPKI.at(os.path.join(data_dir, "pki"))
    if os.path.exists(files.ca_cert):
        have = x509.load_pem_x509_certificate(_read(files.ca_cert))
        if have.public_bytes(Encoding.DER) != parsed.public_bytes(Encoding.DER):
            raise pki.PKIError(
                f"{files.ca_cert}: the cluster already has a different CA "
                f"({have.subject.rfc4514_string()}, serial {have.serial_number:x}) than "
                f"{cert}; refusing to replace it (certificates it signed would stop "
                "working); remove the directory to start over")
        return  # the same CA: ensure_cluster_pki checks the key beside it
    signed = [p for p in (files.server_cert, files.admin_cert) if os.path.exists(p)]
    if signed:
        raise pki.PKIError(f"{signed[0]}: exists without the CA that signed it; refusing "
                           f"to put {cert} in its place")
    os.makedirs(files.dir, mode=0o700, exist_ok=True)
    pki.write_keypair(given, cert_path=files.ca_cert, key_path=files.ca_key)


def init_main(argv: list[str]) -> int:
    """`python -m controlplane.apiserver.server init --data-dir DIR [--listen HOST:PORT]
    [--tls-san NAME]... [--ca-cert FILE --ca-key FILE]`: init_cluster() from a command
    line (what `clusterctl cluster init` runs); prints each file, exits 1 on an error."""
    import argparse
    import sys

    from controlplane.apiserver.pki import PKIError
    p = argparse.ArgumentParser(prog="corral-controlplane init", description=init_main.__doc__)
    p.add_argument("--data-dir", required=True, help="the controlplane's --data-dir")
    p.add_argument("--listen", default=Options.listen,
                   help=f"the controlplane's --listen (default {Options.listen})")
    p.add_argument("--tls-san", action="append", default=[],
                   help="another name or IP for the server certificate (repeatable)")
    p.add_argument("--ca-cert", default="", help="use this CA certificate (PEM) ...")
    p.add_argument("--ca-key", default="", help="... and its private key (PEM)")
    args = p.parse_args(argv)
    try:
        bundle, conf = init_cluster(args.data_dir, listen=args.listen, hosts=args.tls_san,
                                    ca_cert=args.ca_cert, ca_key=args.ca_key)
    except (PKIError, InvalidArgument, OSError, ValueError) as err:
        print(f"corral-controlplane init: {err}", file=sys.stderr)
        return 1
    for what, path in (("cluster CA", bundle.ca_cert), ("server certificate",
                       bundle.server_cert), ("admin certificate", bundle.admin_cert),
                       ("admin.conf", conf)):
        print(f"{what}: {path}")
    return 0


if __name__ == "__main__":
    import sys
    if sys.argv[1:2] != ["init"]:
        sys.exit("usage: python -m controlplane.apiserver.server init --data-dir DIR ...")
    sys.exit(init_main(sys.argv[2:]))
