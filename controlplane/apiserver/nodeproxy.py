"""The node proxy: clusterctl's logs, exec and top, relayed to the agent of the pod's node.

::

    NodeProxy.PodLogs / PodExec / NodeStats   (gRPC over TLS, from clusterctl)
        │ gate: get pods/log · create pods/exec · get nodes/stats   (authz.py roles)
        ▼
    resolve (pure functions, below):
        pod  ──► bound_node()        spec.nodeName, else "not scheduled to a node yet"
             ──► resolve_container() the named one, the only one, the default-container
                                     annotation's, else an error listing the containers
        node ──► node_endpoint()     status.addresses[InternalIP] :
                                     status.daemonEndpoints.kubeletEndpoint.Port
        ▼
    NodeDialer: one grpc.aio channel per node, mutual TLS (the kubelet-client certificate,
                the cluster CA, TLS name = the node's name), re-made if the address moves
        ▼
    corral.node.v1.Node on the agent: Logs / Exec / Stats. Streams are relayed both ways;
    a caller that goes away cancels the agent's call, an agent that ends ends the caller's.
    Exec: the end of the caller's requests is not passed on (grpc shows a caller's cancel
    as that end too, so it cannot mean EOF); the RPC's own end cancels the agent's call.
    Agent errors keep their gRPC code and name the node; an agent that cannot be reached
    is UNAVAILABLE "node n2: agent at 10.99.0.3:10250 unreachable: ...".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import grpc  # type: ignore[import-untyped]
from grpc import aio

from api import errors as e
from api.v1 import apiserver_pb2_grpc as pb_grpc
from api.v1 import node_pb2 as node_pb
from api.v1 import node_pb2_grpc as node_grpc
from controlplane.apiserver import pki
from controlplane.apiserver.objects import ObjectService
from controlplane.apiserver.resources import RESOURCES
from controlplane.apiserver.service import AllowAll, Gate, abort

DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
CONNECT_TIMEOUT = 10.0  # seconds to wait for a TCP + TLS connection to an agent
STATS_TIMEOUT = 15.0
_CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.use_local_subchannel_pool", 1),
]


# --- resolution (pure) -------------------------------------------------------------------


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def pod_key(pod: Mapping[str, Any]) -> str:
    meta = _meta(pod)
    return f"{meta.get('namespace') or 'default'}/{meta.get('name') or ''}"


def bound_node(pod: Mapping[str, Any]) -> str:
    """The node POD is bound to; BadRequest when the scheduler has not placed it yet."""
    spec = pod.get("spec")
    node = str(spec.get("nodeName") or "") if isinstance(spec, Mapping) else ""
    if not node:
        raise e.bad_request(f"Pod {pod_key(pod)}: not scheduled to a node yet")
    return node


def _names(pod: Mapping[str, Any], field: str) -> list[str]:
    spec = pod.get("spec")
    items = spec.get(field) if isinstance(spec, Mapping) else None
    return [str(c.get("name")) for c in items or [] if isinstance(c, Mapping) and c.get("name")]


def resolve_container(pod: Mapping[str, Any], requested: str) -> str:
    """The container a logs/exec call means: REQUESTED when the pod has it (init and
    ephemeral containers count); else the only container, or the one the
    kubectl.kubernetes.io/default-container annotation names; else a BadRequest that
    lists the containers, as kubectl's does."""
    containers = _names(pod, "containers")
    others = _names(pod, "initContainers") + _names(pod, "ephemeralContainers")
    choices = f"choose one of: [{' '.join(containers)}]"
    if others:
        choices += f" or one of the init containers: [{' '.join(others)}]"
    who = f"Pod {pod_key(pod)}"
    if requested:
        if requested in containers or requested in others:
            return requested
        raise e.bad_request(f'{who}: container "{requested}" is not valid, {choices}')
    annotations = _meta(pod).get("annotations")
    default = str(annotations.get(DEFAULT_CONTAINER_ANNOTATION) or "") \
        if isinstance(annotations, Mapping) else ""
    if default and default in containers:
        return default
    if len(containers) == 1:
        return containers[0]
    if not containers:
        raise e.bad_request(f"{who}: spec.containers: the pod has no containers")
    raise e.bad_request(f"{who}: a container name must be specified, {choices}")


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def node_endpoint(node: Mapping[str, Any]) -> Endpoint:
    """Where NODE's agent serves its node API: the InternalIP and the kubelet port the
    agent reported; UNAVAILABLE naming the field when the agent has not reported it."""
    name = _meta(node).get("name") or ""
    status = node.get("status")
    status = status if isinstance(status, Mapping) else {}
    host = ""
    for a in status.get("addresses") or []:
        if isinstance(a, Mapping) and a.get("type") == "InternalIP" and a.get("address"):
            host = str(a["address"])
            break
    if not host:
        raise e.unavailable(f"Node {name}: status.addresses: no InternalIP reported by the "
                            "node's agent")
    daemon = status.get("daemonEndpoints")
    kubelet = daemon.get("kubeletEndpoint") if isinstance(daemon, Mapping) else None
    port = kubelet.get("Port") if isinstance(kubelet, Mapping) else None
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise e.unavailable(f"Node {name}: status.daemonEndpoints.kubeletEndpoint.Port: "
                            f"no port reported by the node's agent (got {port!r})")
    return Endpoint(host, port)


_REASON_BY_CODE: dict[str, e.Reason] = {}
for _r in e.Reason:
    _REASON_BY_CODE.setdefault(_r.grpc_code, _r)


def agent_error(code: Any, details: str, *, node: str, endpoint: Endpoint) -> e.APIError:
    """The APIError for an agent call that failed with gRPC CODE: the same code (as a
    Kubernetes reason), the node named; an agent that cannot be reached is UNAVAILABLE."""
    name = getattr(code, "name", str(code))
    if name == "UNAVAILABLE":
        return e.unavailable(f"node {node}: agent at {endpoint} unreachable: {details}")
    if name == "DEADLINE_EXCEEDED":
        return e.APIError(e.Reason.TIMEOUT, f"node {node}: agent at {endpoint} did not "
                          f"answer in time: {details}")
    if name == "CANCELLED":
        return e.APIError(e.Reason.UNAVAILABLE, f"node {node}: the agent's call was "
                          f"cancelled: {details}")
    reason = _REASON_BY_CODE.get(name, e.Reason.INTERNAL)
    return e.APIError(reason, f"node {node}: {details}")


# --- dialing agents ----------------------------------------------------------------------


class NodeDialer:
    """One mutual-TLS channel per node, made on first use from the kubelet-client
    certificate in PKI_DIR (read once)."""

    def __init__(self, pki_dir: str, *, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.paths = pki.ClusterPKI.at(pki_dir)
        self.connect_timeout = connect_timeout
        self._credentials: Any = None
        self._channels: dict[str, tuple[Endpoint, Any]] = {}

    def _creds(self) -> Any:
        if self._credentials is None:
            p = self.paths
            try:
                pair = pki.load_keypair(cert_path=p.kubelet_client_cert,
                                        key_path=p.kubelet_client_key)
                pki.load_certificate(p.ca_cert)  # a clear error if it is not a certificate
                with open(p.ca_cert, "rb") as f:
                    ca_pem = f.read()
            except (pki.PKIError, OSError) as err:
                raise e.unavailable(f"controlplane: no kubelet-client credentials to dial "
                                    f"agents with: {err}") from None
            self._credentials = grpc.ssl_channel_credentials(
                root_certificates=ca_pem, private_key=pair.key_pem,
                certificate_chain=pair.cert_pem)
        return self._credentials

    def channel(self, node: str, endpoint: Endpoint) -> Any:
        cached = self._channels.get(node)
        if cached is not None and cached[0] == endpoint:
            return cached[1]
        if cached is not None:  # the node moved: close the old channel in the background
            _background(cached[1].close(grace=None))
        ch = aio.secure_channel(str(endpoint), self._creds(),
                                options=[*_CHANNEL_OPTIONS,
                                         ("grpc.ssl_target_name_override", node)])
        self._channels[node] = (endpoint, ch)
        return ch

    async def connected(self, node: str, endpoint: Endpoint) -> Any:
        """The node's channel once it is connected or has failed (the call then says why);
        UNAVAILABLE if it is still connecting after connect_timeout."""
        ch = self.channel(node, endpoint)
        deadline = time.monotonic() + self.connect_timeout
        done = (grpc.ChannelConnectivity.READY, grpc.ChannelConnectivity.TRANSIENT_FAILURE,
                grpc.ChannelConnectivity.SHUTDOWN)
        state = ch.get_state(try_to_connect=True)
        while state not in done:
            left = deadline - time.monotonic()
            try:
                async with asyncio.timeout(max(left, 0)):
                    await ch.wait_for_state_change(state)
            except TimeoutError:
                raise e.unavailable(f"node {node}: agent at {endpoint} unreachable: no "
                                    f"connection in {self.connect_timeout:g}s") from None
            state = ch.get_state(try_to_connect=True)
        return ch

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for _, ch in channels:
            await ch.close(grace=None)


_BACKGROUND: set[asyncio.Task[Any]] = set()


def _background(coro: Any) -> None:
    task = asyncio.ensure_future(coro)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


# --- the servicer ------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A resolved logs/exec target: the node to dial and the full container reference."""

    node: str
    endpoint: Endpoint
    ref: Any  # node_pb.ContainerRef


class NodeProxyServicer(pb_grpc.NodeProxyServicer):
    def __init__(self, objects: ObjectService, *, dialer: NodeDialer,
                 gate: Gate | None = None) -> None:
        self.objects = objects
        self.dialer = dialer
        self.gate: Gate = gate or AllowAll()

    async def _node(self, name: str, *, why: str) -> Endpoint:
        try:
            node = await self.objects.get(RESOURCES["nodes"], namespace="", name=name)
        except e.APIError as err:
            if err.reason is e.Reason.NOT_FOUND:
                raise e.APIError(e.Reason.NOT_FOUND, f"{why}node {name} not found",
                                 kind="Node", name=name) from None
            raise
        return node_endpoint(node)

    async def _target(self, context: Any, ref: Any, *, verb: str, subresource: str) -> Target:
        namespace = ref.namespace or "default"
        if not ref.pod:
            raise e.bad_request(f"pods/{subresource}: ref.pod: a pod name is required")
        await self.gate.check(context, verb=verb, resource=RESOURCES["pods"],
                              namespace=namespace, name=ref.pod, subresource=subresource,
                              obj=None)
        pod = await self.objects.get(RESOURCES["pods"], namespace=namespace, name=ref.pod)
        node = bound_node(pod)
        container = resolve_container(pod, ref.container)
        endpoint = await self._node(node, why=f"Pod {pod_key(pod)}: bound to ")
        return Target(node, endpoint, node_pb.ContainerRef(
            namespace=namespace, pod=ref.pod, container=container))

    def _stub(self, channel: Any) -> Any:
        return node_grpc.NodeStub(channel)  # type: ignore[no-untyped-call]

    async def PodLogs(self, request: Any, context: Any) -> AsyncIterator[Any]:
        call: Any = None
        t: Target | None = None
        try:
            t = await self._target(context, request.ref, verb="get", subresource="log")
            forward = node_pb.LogsRequest()
            forward.CopyFrom(request)
            forward.ref.CopyFrom(t.ref)
            channel = await self.dialer.connected(t.node, t.endpoint)
            call = self._stub(channel).Logs(forward)
            async for chunk in call:
                yield chunk
        except aio.AioRpcError as err:
            assert t is not None
            await abort(context, agent_error(err.code(), str(err.details()), node=t.node,
                                             endpoint=t.endpoint))
        except e.APIError as err:
            await abort(context, err)
        finally:
            if call is not None:
                call.cancel()  # the caller went away: so does the agent's stream

    async def PodExec(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
        call: Any = None
        t: Target | None = None
        finished = asyncio.Event()
        try:
            first = await _first(request_iterator)
            if first is None or first.WhichOneof("input") != "start":
                raise e.bad_request("pods/exec: the first message must be a start")
            start = first.start
            if not start.command:
                raise e.bad_request(f"pods/exec {start.ref.namespace or 'default'}/"
                                    f"{start.ref.pod}: command: must not be empty")
            t = await self._target(context, start.ref, verb="create", subresource="exec")
            opening = node_pb.ExecInput()
            opening.start.CopyFrom(start)
            opening.start.ref.CopyFrom(t.ref)
            channel = await self.dialer.connected(t.node, t.endpoint)
            call = self._stub(channel).Exec(_relay(opening, request_iterator, finished))
            # the RPC's end cancels the agent's call however it comes: grpc cancels this
            # handler when the caller cancels, but when a write to the caller fails it
            # drops the handler at its yield: the finally below runs when it is collected
            context.add_done_callback(lambda _ctx, c=call: c.cancel())
            async for out in call:
                yield out
        except aio.AioRpcError as err:
            assert t is not None
            await abort(context, agent_error(err.code(), str(err.details()), node=t.node,
                                             endpoint=t.endpoint))
        except e.APIError as err:
            await abort(context, err)
        finally:
            finished.set()
            if call is not None:
                call.cancel()

    async def NodeStats(self, request: Any, context: Any) -> Any:
        endpoint: Endpoint | None = None
        try:
            if not request.node:
                raise e.bad_request("nodes/stats: node: required")
            await self.gate.check(context, verb="get", resource=RESOURCES["nodes"],
                                  namespace="", name=request.node, subresource="stats",
                                  obj=None)
            endpoint = await self._node(request.node, why="")
            channel = await self.dialer.connected(request.node, endpoint)
            return await self._stub(channel).Stats(
                node_pb.StatsRequest(namespace=request.namespace, pod=request.pod),
                timeout=STATS_TIMEOUT)
        except aio.AioRpcError as err:
            assert endpoint is not None
            await abort(context, agent_error(err.code(), str(err.details()),
                                             node=request.node, endpoint=endpoint))
        except e.APIError as err:
            await abort(context, err)


async def _first(requests: Any) -> Any:
    async for item in requests:
        return item
    return None


async def _relay(first: Any, requests: Any, finished: asyncio.Event) -> AsyncIterator[Any]:
    """FIRST, then the caller's inputs as they come. The end of the caller's inputs is
    not passed on as a half-close: stdin_close is the process's EOF, and grpc's server ends
    REQUESTS both when the caller half-closes and when it cancels (the cancel reaches the
    handler separately, and may come second). The agent's side stays open until FINISHED,
    when the exec has ended, or until the agent's call is cancelled."""
    yield first
    async for item in requests:
        yield item
    await finished.wait()
