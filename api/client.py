"""The client of the controlplane API, for clusterctl (sync) and the agent (asyncio).

    config = load_config()            --config FILE, else $CORRAL_CONFIG, else ~/.corral/config
    c = Client(config)                TLS to the server, client certificate or bearer token
    c.create("deployments", obj)      every call returns the object (a dict) or raises
    c.watch("pods", namespace="x")    APIError with the server's reason (api/errors.py)
    c.pod_logs("web", namespace="x")  bytes, relayed from the pod's node (nodeproxy.py);
    c.pod_exec(...) / c.node_stats()  an ExecSession (stdin in, output out) / usage:
                                      thin calls into api/nodeclient.py, which has them

The config file has kubeconfig's shape (clusters, users, contexts, current-context), so a
user who knows one knows the other.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Unpack

import grpc  # type: ignore[import-untyped]
from grpc import aio

from api import errors as e
from api.nodeclient import ExecEvent as ExecEvent  # re-exported: callers import it here
from api.nodeclient import ExecOptions, LogOptions, NodeProxy
from api.nodeclient import ExecSession as ExecSession
from api.v1 import apiserver_pb2 as pb
from api.v1 import apiserver_pb2_grpc as pb_grpc

STATUS_TRAILER = "corral-status-bin"
DEFAULT_CONFIG = os.path.join("~", ".corral", "config")
_OPTIONS: list[tuple[str, Any]] = [("grpc.max_receive_message_length", 256 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 2000)]


class ConfigError(ValueError):
    """The client config is missing or wrong; the message names the file and field."""


@dataclass
class ClientConfig:
    server: str  # host:port
    ca_pem: bytes = b""
    cert_pem: bytes = b""
    key_pem: bytes = b""
    token: str = ""
    namespace: str = "default"
    insecure: bool = False  # plain gRPC (tests on loopback only)
    tls_server_name: str = ""
    source: str = field(default="", compare=False)


def config_path(explicit: str | None = None) -> str:
    return os.path.expanduser(explicit or os.environ.get("CORRAL_CONFIG") or DEFAULT_CONFIG)


def _b64(value: Any, where: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except ValueError:
        raise ConfigError(f"{where}: not valid base64") from None


def parse_config(doc: Any, *, source: str, context: str | None = None) -> ClientConfig:
    """A ClientConfig from a kubeconfig-shaped mapping; errors name SOURCE and the field."""
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: not a config (want a mapping with clusters, users, "
                          "contexts)")
    name = context or doc.get("current-context")
    contexts = {c.get("name"): c.get("context") or {} for c in doc.get("contexts") or []}
    if not name or name not in contexts:
        raise ConfigError(f"{source}: current-context: no context {name!r} (have "
                          f"{', '.join(sorted(map(str, contexts))) or 'none'})")
    ctx = contexts[name]
    clusters = {c.get("name"): c.get("cluster") or {} for c in doc.get("clusters") or []}
    users = {u.get("name"): u.get("user") or {} for u in doc.get("users") or []}
    cluster = clusters.get(ctx.get("cluster"))
    if cluster is None:
        raise ConfigError(f"{source}: contexts[{name}].cluster: no cluster "
                          f"{ctx.get('cluster')!r}")
    user = users.get(ctx.get("user"), {})
    server = str(cluster.get("server") or "").removeprefix("https://")
    if not server:
        raise ConfigError(f"{source}: clusters[{ctx.get('cluster')}].server: required")
    out = ClientConfig(server=server, namespace=str(ctx.get("namespace") or "default"),
                       insecure=bool(cluster.get("insecure")), source=source,
                       tls_server_name=str(cluster.get("tls-server-name") or ""))
    where = f"{source}: clusters[{ctx.get('cluster')}]"
    if cluster.get("certificate-authority-data"):
        out.ca_pem = _b64(cluster["certificate-authority-data"],
                          f"{where}.certificate-authority-data")
    elif cluster.get("certificate-authority"):
        out.ca_pem = _read(cluster["certificate-authority"], source)
    where = f"{source}: users[{ctx.get('user')}]"
    if user.get("client-certificate-data"):
        out.cert_pem = _b64(user["client-certificate-data"], f"{where}.client-certificate-data")
        out.key_pem = _b64(user.get("client-key-data", ""), f"{where}.client-key-data")
    elif user.get("client-certificate"):
        out.cert_pem = _read(user["client-certificate"], source)
        out.key_pem = _read(user.get("client-key", ""), source)
    out.token = str(user.get("token") or "")
    if not out.insecure and not out.ca_pem:
        raise ConfigError(f"{source}: clusters[{ctx.get('cluster')}]: "
                          "certificate-authority-data is required for TLS")
    return out


def _read(path: str, source: str) -> bytes:
    full = os.path.join(os.path.dirname(source), os.path.expanduser(str(path)))
    try:
        with open(full, "rb") as f:
            return f.read()
    except OSError as err:
        raise ConfigError(f"{source}: {path}: {err.strerror}") from None


def load_config(path: str | None = None, *, context: str | None = None) -> ClientConfig:
    import yaml  # only when a config is read: keeps `clusterctl --help` fast

    full = config_path(path)
    try:
        with open(full) as f:
            doc = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"no client config at {full}: pass --config FILE, set "
                          "CORRAL_CONFIG, or copy DATA_DIR/admin.conf of the "
                          "controlplane to ~/.corral/config") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{full}: not valid YAML: {err}") from None
    return parse_config(doc, source=full, context=context)


def make_config_doc(*, server: str, ca_pem: bytes, cert_pem: bytes = b"",
                    key_pem: bytes = b"", token: str = "", user: str = "admin",
                    cluster: str = "corral", namespace: str = "default") -> dict[str, Any]:
    """The kubeconfig-shaped document load_config() reads (admin.conf is one)."""
    u: dict[str, Any] = {}
    if cert_pem:
        u["client-certificate-data"] = base64.b64encode(cert_pem).decode()
        u["client-key-data"] = base64.b64encode(key_pem).decode()
    if token:
        u["token"] = token
    ctx = f"{user}@{cluster}"
    return {"apiVersion": "v1", "kind": "Config", "current-context": ctx,
            "clusters": [{"name": cluster, "cluster": {
                "server": server,
                "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
            "users": [{"name": user, "user": u}],
            "contexts": [{"name": ctx, "context": {"cluster": cluster, "user": user,
                                                   "namespace": namespace}}]}


def _credentials(cfg: ClientConfig) -> Any:
    return grpc.ssl_channel_credentials(root_certificates=cfg.ca_pem,
                                        private_key=cfg.key_pem or None,
                                        certificate_chain=cfg.cert_pem or None)


def _options(cfg: ClientConfig) -> list[tuple[str, Any]]:
    opts = list(_OPTIONS)
    if cfg.tls_server_name:
        opts.append(("grpc.ssl_target_name_override", cfg.tls_server_name))
    return opts


def _metadata(cfg: ClientConfig) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {cfg.token}"),) if cfg.token else ()


def error_from_rpc(err: Any, server: str) -> e.APIError:
    """The APIError the server sent (from the Status trailer), or one made from the code."""
    for key, value in (err.trailing_metadata() or ()):
        if key == STATUS_TRAILER:
            try:
                return e.APIError.from_status(json.loads(value))
            except ValueError:
                break
    code = err.code()
    if code == grpc.StatusCode.UNAVAILABLE:
        return e.unavailable(f"cannot reach the controlplane at {server}: {err.details()}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return e.APIError(e.Reason.TIMEOUT, f"the controlplane at {server} did not answer in "
                          "time")
    for r in e.Reason:
        if r.grpc_code == code.name:
            return e.APIError(r, str(err.details()))
    return e.APIError(e.Reason.INTERNAL, str(err.details()))


def _target(resource: str, namespace: str, name: str, subresource: str) -> Any:
    return pb.Target(resource=resource, namespace=namespace, name=name,
                     subresource=subresource)


# The server refuses messages over 16 MiB before any handler sees them, so its answer
# could not name the object: check here.
MAX_BODY = 16 * 1024 * 1024 - 4096


def _encode(obj: Any) -> bytes:
    """Compact JSON (api/jsoncodec.py: orjson, or the standard library for what orjson
    refuses). The codec, and with it orjson, is imported on first use: clusterctl's
    start-up pays for it only when it calls."""
    from api import jsoncodec

    return jsoncodec.dumps(obj)


def _dump(obj: Any) -> bytes:
    data = _encode(obj)
    if len(data) > MAX_BODY:
        meta = obj.get("metadata") if isinstance(obj, dict) else None
        name = (meta or {}).get("name", "") if isinstance(meta, dict) else ""
        who = f"{obj.get('kind', 'object')} {name}".strip() if isinstance(obj, dict) \
            else "object"
        raise e.APIError(e.Reason.TOO_LARGE, f"{who}: the request is {len(data)} bytes; "
                         f"the API accepts at most {MAX_BODY} (and stores at most 1.5 MiB)")
    return data


def _loads(data: bytes) -> dict[str, Any]:
    """json.loads' answer (api/jsoncodec.py: orjson, unless an integer may exceed 64 bits
    or orjson refuses the text), the codec imported on first use as in _encode."""
    from api import jsoncodec

    out: dict[str, Any] = jsoncodec.loads(data)
    return out


def _requests(method: str, resource: str, namespace: str, name: str, subresource: str,
              kw: dict[str, Any]) -> Any:
    """The request message of METHOD (shared by both clients)."""
    t = _target(resource, namespace, name, subresource)
    opts = pb.WriteOptions(dry_run=kw.get("dry_run", False),
                           field_manager=kw.get("field_manager", ""))
    if method == "Get":
        return pb.GetRequest(target=t)
    if method == "List":
        return pb.ListRequest(target=t, label_selector=kw.get("label_selector", ""),
                              field_selector=kw.get("field_selector", ""),
                              limit=kw.get("limit", 0), resource_version=kw.get(
                                  "resource_version", ""), **{"continue": kw.get(
                                      "continue_token", "")})
    if method == "Watch":
        return pb.WatchRequest(target=t, label_selector=kw.get("label_selector", ""),
                               field_selector=kw.get("field_selector", ""),
                               resource_version=kw.get("resource_version", ""),
                               allow_bookmarks=kw.get("bookmarks", False))
    if method in ("Create", "Update"):
        cls = pb.CreateRequest if method == "Create" else pb.UpdateRequest
        return cls(target=t, json=_dump(kw["obj"]), options=opts)
    if method == "Patch":
        return pb.PatchRequest(target=t, patch=kw["patch"], patch_type=kw["patch_type"],
                               options=opts)
    if method == "Apply":
        return pb.ApplyRequest(target=t, json=_dump(kw["obj"]), options=opts,
                               force=kw.get("force", False))
    if method == "Delete":
        req = pb.DeleteRequest(target=t, propagation_policy=kw.get("propagation", ""),
                               precondition_uid=kw.get("uid", ""),
                               precondition_resource_version=kw.get("resource_version", ""),
                               dry_run=kw.get("dry_run", False))
        if kw.get("grace_period") is not None:
            req.grace_period_seconds = kw["grace_period"]
        return req
    if method == "DeleteCollection":
        return pb.DeleteCollectionRequest(target=t, label_selector=kw.get("label_selector",
                                                                          ""),
                                          field_selector=kw.get("field_selector", ""),
                                          propagation_policy=kw.get("propagation", ""))
    raise ValueError(method)


class Client:
    """Blocking client: clusterctl's. Each verb returns dicts or raises APIError."""

    def __init__(self, config: ClientConfig, *, timeout: float = 30) -> None:
        self.config = config
        self.timeout = timeout
        if config.insecure:
            self._channel = grpc.insecure_channel(config.server, options=_OPTIONS)
        else:
            self._channel = grpc.secure_channel(config.server, _credentials(config),
                                                options=_options(config))
        self._stub = pb_grpc.APIStub(self._channel)  # type: ignore[no-untyped-call]
        self._md = _metadata(config)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        try:
            return getattr(self._stub, method)(request, timeout=timeout or self.timeout,
                                               metadata=self._md)
        except grpc.RpcError as err:
            raise error_from_rpc(err, self.config.server) from None

    def _verb(self, method: str, resource: str, *, namespace: str = "", name: str = "",
              subresource: str = "", **kw: Any) -> dict[str, Any]:
        req = _requests(method, resource, namespace, name, subresource, kw)
        return _loads(self._call(method, req).json)

    def discovery(self) -> Any:
        return self._call("Discovery", pb.DiscoveryRequest())

    def get(self, resource: str, name: str, *, namespace: str = "", subresource: str = "",
            ) -> dict[str, Any]:
        return self._verb("Get", resource, namespace=namespace, name=name,
                          subresource=subresource)

    def list(self, resource: str, *, namespace: str = "", **kw: Any) -> dict[str, Any]:
        return self._verb("List", resource, namespace=namespace, **kw)

    def create(self, resource: str, obj: dict[str, Any], *, namespace: str = "",
               **kw: Any) -> dict[str, Any]:
        return self._verb("Create", resource, namespace=namespace, obj=obj, **kw)

    def update(self, resource: str, obj: dict[str, Any], *, namespace: str = "",
               **kw: Any) -> dict[str, Any]:
        return self._verb("Update", resource, namespace=namespace,
                          name=obj["metadata"]["name"], obj=obj, **kw)

    def patch(self, resource: str, name: str, patch: bytes, *, patch_type: str,
              namespace: str = "", **kw: Any) -> dict[str, Any]:
        return self._verb("Patch", resource, namespace=namespace, name=name, patch=patch,
                          patch_type=patch_type, **kw)

    def apply(self, resource: str, obj: dict[str, Any], *, namespace: str = "",
              field_manager: str = "clusterctl", **kw: Any) -> dict[str, Any]:
        return self._verb("Apply", resource, namespace=namespace,
                          name=obj["metadata"]["name"], obj=obj,
                          field_manager=field_manager, **kw)

    def delete(self, resource: str, name: str, *, namespace: str = "", **kw: Any,
               ) -> dict[str, Any]:
        return self._verb("Delete", resource, namespace=namespace, name=name, **kw)

    def delete_collection(self, resource: str, *, namespace: str = "", **kw: Any,
                          ) -> dict[str, Any]:
        return self._verb("DeleteCollection", resource, namespace=namespace, **kw)

    @property
    def _node(self) -> NodeProxy:
        stub = pb_grpc.NodeProxyStub(self._channel)  # type: ignore[no-untyped-call]
        return NodeProxy(stub=stub, metadata=self._md, server=self.config.server,
                         timeout=self.timeout, error=error_from_rpc)

    def pod_logs(self, pod: str, *, namespace: str,
                 **options: Unpack[LogOptions]) -> Generator[bytes, None, None]:
        """The container's log from its node (api.nodeclient.LogOptions: container,
        follow, previous, tail_lines, since_seconds, timestamps, limit_bytes)."""
        return self._node.pod_logs(pod, namespace=namespace, **options)

    def pod_exec(self, pod: str, command: Sequence[str], *, namespace: str,
                 **options: Unpack[ExecOptions]) -> ExecSession:
        """Start COMMAND in the container (options: container, stdin, tty)."""
        return self._node.pod_exec(pod, command, namespace=namespace, **options)

    def node_stats(self, node: str, *, namespace: str = "", pod: str = "") -> Any:
        """The node's usage and its pods': a corral.node.v1.StatsResponse."""
        return self._node.node_stats(node, namespace=namespace, pod=pod)

    def watch(self, resource: str, *, namespace: str = "", timeout: float | None = None,
              **kw: Any) -> Iterator[dict[str, Any]]:
        """Events {"type", "object"} until the caller stops iterating (or TIMEOUT)."""
        req = _requests("Watch", resource, namespace, "", "", kw)
        stream = self._stub.Watch(req, timeout=timeout, metadata=self._md)
        try:
            for ev in stream:
                yield {"type": ev.type, "object": _loads(ev.object)}
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.CANCELLED:
                return
            raise error_from_rpc(err, self.config.server) from None
        finally:
            stream.cancel()


class AsyncClient:
    """The same verbs over grpc.aio: for the agent and the controllers.

    CONNECTIONS > 1 opens that many TCP connections: a controlplane with --workers serves
    each connection from one of its processes, so a busy client spreads its calls over all
    of them (one connection uses one). Calls on one object keep to one connection, so they
    reach the process that wrote it last (which then need not read it back); the others
    take turns."""

    def __init__(self, config: ClientConfig, *, timeout: float = 30,
                 connections: int = 1) -> None:
        self.config = config
        self.timeout = timeout
        # gRPC shares one connection among channels with equal arguments unless each
        # channel keeps its own subchannel pool
        opts = (_OPTIONS if config.insecure else _options(config)) + (
            [("grpc.use_local_subchannel_pool", 1)] if connections > 1 else [])
        self._channels = [
            aio.insecure_channel(config.server, options=opts) if config.insecure else
            aio.secure_channel(config.server, _credentials(config), options=opts)
            for _ in range(max(connections, 1))]
        self._stubs = [pb_grpc.APIStub(c)  # type: ignore[no-untyped-call]
                       for c in self._channels]
        self._turn = itertools.cycle(self._stubs)
        self._md = _metadata(config)

    @property
    def _stub(self) -> Any:
        return next(self._turn)

    def _stub_for(self, namespace: str, name: str) -> Any:
        if len(self._stubs) == 1 or not name:
            return self._stub
        return self._stubs[hash((namespace, name)) % len(self._stubs)]

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()

    async def _verb(self, method: str, resource: str, *, namespace: str = "", name: str = "",
                    subresource: str = "", **kw: Any) -> dict[str, Any]:
        req = _requests(method, resource, namespace, name, subresource, kw)
        obj = kw.get("obj")
        if not name and isinstance(obj, dict) and isinstance(obj.get("metadata"), dict):
            name = str(obj["metadata"].get("name") or "")  # a create names it in the body
        stub = self._stub_for(namespace, name)
        try:
            reply = await getattr(stub, method)(req, timeout=self.timeout,
                                                metadata=self._md)
        except grpc.RpcError as err:
            raise error_from_rpc(err, self.config.server) from None
        return _loads(reply.json)

    async def get(self, resource: str, name: str, *, namespace: str = "",
                  subresource: str = "") -> dict[str, Any]:
        return await self._verb("Get", resource, namespace=namespace, name=name,
                                subresource=subresource)

    async def list(self, resource: str, *, namespace: str = "", **kw: Any) -> dict[str, Any]:
        return await self._verb("List", resource, namespace=namespace, **kw)

    async def create(self, resource: str, obj: dict[str, Any], *, namespace: str = "",
                     **kw: Any) -> dict[str, Any]:
        return await self._verb("Create", resource, namespace=namespace, obj=obj, **kw)

    async def update(self, resource: str, obj: dict[str, Any], *, namespace: str = "",
                     **kw: Any) -> dict[str, Any]:
        return await self._verb("Update", resource, namespace=namespace,
                                name=obj["metadata"]["name"], obj=obj, **kw)

    async def patch(self, resource: str, name: str, patch: bytes, *, patch_type: str,
                    namespace: str = "", **kw: Any) -> dict[str, Any]:
        return await self._verb("Patch", resource, namespace=namespace, name=name,
                                patch=patch, patch_type=patch_type, **kw)

    async def delete(self, resource: str, name: str, *, namespace: str = "", **kw: Any,
                     ) -> dict[str, Any]:
        return await self._verb("Delete", resource, namespace=namespace, name=name, **kw)

    async def watch(self, resource: str, *, namespace: str = "", **kw: Any,
                    ) -> AsyncIterator[dict[str, Any]]:
        req = _requests("Watch", resource, namespace, "", "", kw)
        call = self._stub.Watch(req, metadata=self._md)
        try:
            async for ev in call:
                yield {"type": ev.type, "object": _loads(ev.object)}
        except grpc.RpcError as err:
            raise error_from_rpc(err, self.config.server) from None
        finally:
            call.cancel()
