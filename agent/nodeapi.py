"""The agent's node API (corral.node.v1.Node): logs, exec and stats over mutual TLS.

    controlplane ──gRPC, mTLS (client cert O=system:masters)──► NodeServicer
        every call: authorize(peer certificate) -> find the pod among those bound here
        Logs   ─► container instance (current / previous) -> its CRI log file
                  ─► logs.stream_log (since, tail, timestamps, limit, follow)
        Exec   ─► ExecStart -> CRI Exec -> URL -> stream.connect(url): stdin, resize in;
                  stdout, stderr out; the status channel -> exactly one ExecExit, last
        Stats  ─► stats.Sampler windows (sampled every 10 s by run(); sampled at once,
                  twice, when a series has no window yet) -> nanocores and working sets

Lookup errors are gRPC statuses whose message names the pod and container
(`pod default/web-1: container "app" not found`), mapped from NodeAPIError in one place
(`_abort`). Once an exec has started, its failures end it with an ExecExit instead.

The caller's name and groups come from its certificate's subject, read from the DER by
`subject_of` (X.509, RFC 5280 section 4.1): the agent does not load `cryptography` (~9 MB
of RSS) for two attribute types.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

import grpc  # type: ignore[import-untyped]
from grpc import aio

from agent import cri as C
from agent import logs as L
from agent import qos as Q
from agent import stats as ST
from agent.metrics.machine import Machine
from api.v1 import node_pb2 as npb
from api.v1 import node_pb2_grpc as npb_grpc
from runtime.service.cri import api_pb2 as pb
from runtime.service.cri import client as cric

log = logging.getLogger("corral.agent.nodeapi")

ALLOWED_GROUP = "system:masters"
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
REFRESH_PERIOD = 2.0  # seconds between inventory refreshes (new containers for /metrics)


class NodeAPIError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def _not_found(msg: str) -> NodeAPIError:
    return NodeAPIError(grpc.StatusCode.NOT_FOUND, msg)


def _invalid(msg: str) -> NodeAPIError:
    return NodeAPIError(grpc.StatusCode.INVALID_ARGUMENT, msg)


def _precondition(msg: str) -> NodeAPIError:
    return NodeAPIError(grpc.StatusCode.FAILED_PRECONDITION, msg)


# ---- what the servicer needs from the agent ---------------------------------------------


@dataclass(frozen=True)
class BoundPod:
    """A pod bound to this node with a worker, and what the runtime holds for it."""

    pod: Mapping[str, Any]
    runtime: C.PodRuntime

    @property
    def key(self) -> str:
        meta = self.pod["metadata"]
        return f"{meta.get('namespace') or 'default'}/{meta['name']}"


class Pods(Protocol):
    async def get(self, namespace: str, name: str) -> BoundPod | None: ...

    async def all(self) -> list[BoundPod]: ...


class ExecStream(Protocol):
    """A CRI streaming session (runtime/service/cri/stream.py's ChannelStream)."""

    async def send_stdin(self, data: bytes) -> None: ...

    async def close_stdin(self) -> None: ...

    async def resize(self, width: int, height: int) -> None: ...

    async def recv(self) -> tuple[int, bytes] | None: ...

    async def close(self) -> None: ...


Connect = Callable[[str], Awaitable[ExecStream]]
ExitCode = Callable[[bytes], tuple[int, str]]
STDOUT, STDERR, STATUS = 1, 2, 3


# ---- pure helpers -----------------------------------------------------------------------


OID_CN = bytes((0x55, 0x04, 0x03))  # 2.5.4.3 commonName
OID_O = bytes((0x55, 0x04, 0x0A))  # 2.5.4.10 organizationName
# DirectoryString and friends (X.680 universal tags) -> Python codec
STRING_CODECS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1",
                 0x1E: "utf-16-be", 0x1C: "utf-32-be"}


def _tlv(der: bytes, pos: int, *, want: int, what: str) -> tuple[int, int]:
    """(start, end) of the contents of the DER element at POS, which must have tag WANT."""
    if pos + 2 > len(der) or der[pos] != want:
        got = f"tag 0x{der[pos]:02x}" if pos < len(der) else "the end of the data"
        raise ValueError(f"certificate: {what}: expected tag 0x{want:02x}, got {got}")
    length, start = der[pos + 1], pos + 2
    if length & 0x80:  # long form: the next (length & 0x7f) bytes, big-endian
        n = length & 0x7F
        if n == 0 or n > 4:
            raise ValueError(f"certificate: {what}: unsupported length of {n} bytes")
        length, start = int.from_bytes(der[start:start + n], "big"), start + n
    if start + length > len(der):
        raise ValueError(f"certificate: {what}: {length} bytes past the end of the data")
    return start, start + length


def subject_of(der: bytes) -> list[tuple[bytes, str]]:
    """The subject's attributes of a DER certificate as (OID body, value), in order.
    Certificate = SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serialNumber,
    signature, issuer Name, validity, subject Name, ... }, ... }; Name = SEQUENCE OF SET OF
    SEQUENCE { type OID, value }."""
    start, _ = _tlv(der, 0, want=0x30, what="Certificate")
    pos, _ = _tlv(der, start, want=0x30, what="tbsCertificate")
    if der[pos:pos + 1] == b"\xa0":
        pos = _tlv(der, pos, want=0xA0, what="version")[1]
    for tag, field in ((0x02, "serialNumber"), (0x30, "signature"), (0x30, "issuer"),
                       (0x30, "validity")):
        pos = _tlv(der, pos, want=tag, what=field)[1]
    pos, end = _tlv(der, pos, want=0x30, what="subject")
    out = []
    while pos < end:
        rdn, rdn_end = _tlv(der, pos, want=0x31, what="subject: RelativeDistinguishedName")
        while rdn < rdn_end:
            atv, atv_end = _tlv(der, rdn, want=0x30, what="subject: AttributeTypeAndValue")
            o_start, o_end = _tlv(der, atv, want=0x06, what="subject: attribute type")
            tag = der[o_end] if o_end < atv_end else -1
            codec = STRING_CODECS.get(tag)
            if codec is not None:
                v_start, v_end = _tlv(der, o_end, want=tag, what="subject: attribute value")
                out.append((der[o_start:o_end], der[v_start:v_end].decode(codec, "replace")))
            rdn = atv_end
        pos = rdn_end
    return out


def groups_of(cert_pem: bytes) -> tuple[str, list[str]]:
    """(common name, organizations) of a PEM certificate."""
    try:
        der = ssl.PEM_cert_to_DER_cert(cert_pem.decode("ascii", "replace").strip())
    except ValueError as e:
        raise ValueError(f"certificate: not PEM: {e}") from None
    attrs = subject_of(der)
    cn = [v for oid, v in attrs if oid == OID_CN]
    return (cn[0] if cn else ""), [v for oid, v in attrs if oid == OID_O]


def authorize(auth_context: Mapping[str, Any], *, node: str) -> str:
    """The caller's name if its certificate carries ALLOWED_GROUP; else NodeAPIError."""
    pems = list(auth_context.get("x509_pem_cert") or [])
    if not pems:
        raise NodeAPIError(grpc.StatusCode.UNAUTHENTICATED,
                           f"node {node}: a client certificate is required")
    pem = pems[0] if isinstance(pems[0], bytes) else str(pems[0]).encode()
    try:
        user, groups = groups_of(pem)
    except ValueError as e:
        raise NodeAPIError(grpc.StatusCode.UNAUTHENTICATED, f"node {node}: client {e}"
                           ) from None
    if ALLOWED_GROUP not in groups:
        raise NodeAPIError(grpc.StatusCode.PERMISSION_DENIED,
                           f"node {node}: user {user!r} (groups {groups}) is not allowed: "
                           f"the node API needs group {ALLOWED_GROUP}")
    return user


def container_name(bp: BoundPod, requested: str) -> str:
    """The container a call is about: as requested, else the pod's default (the
    default-container annotation, or its only container)."""
    spec = bp.pod.get("spec") or {}
    names = [str(c["name"]) for c in spec.get("containers") or []]
    init = [str(c["name"]) for c in spec.get("initContainers") or []]
    if requested:
        if requested not in names and requested not in init:
            raise _not_found(f"pod {bp.key}: container \"{requested}\" not found (containers: "
                             f"{', '.join(names + init)})")
        return requested
    default = str(((bp.pod.get("metadata") or {}).get("annotations") or {}).get(
        DEFAULT_CONTAINER_ANNOTATION) or "")
    if default in names:
        return default
    if len(names) == 1:
        return names[0]
    raise _invalid(f"pod {bp.key}: container: a name is required, choose one of: "
                   f"{', '.join(names)}")


def instance(bp: BoundPod, name: str, *, previous: bool) -> C.ContainerInfo:
    rt = bp.runtime
    if previous:
        prev = rt.previous(name)
        if prev is None:
            raise _not_found(f"pod {bp.key}: container \"{name}\": no previous instance "
                             "(it has not been restarted)")
        return prev
    cur = rt.latest(name)
    if cur is None:
        raise _precondition(f"pod {bp.key}: container \"{name}\" is waiting to start")
    return cur


def log_options(req: npb.LogsRequest, *, where: str, now_ns: int) -> L.LogOptions:
    def opt(field: str, minimum: int) -> int | None:
        if not req.HasField(field):
            return None
        value = int(getattr(req, field))
        if value < minimum:
            raise _invalid(f"logs of {where}: {field}: must be >= {minimum}, got {value}")
        return value

    since = opt("since_seconds", 1)
    return L.LogOptions(follow=req.follow, tail_lines=opt("tail_lines", 0),
                        since_ns=L.LogOptions.since(since, now_ns=now_ns),
                        timestamps=req.timestamps, limit_bytes=opt("limit_bytes", 1))


def running_of(pods: list[BoundPod], *, cgroup_parent: str = "") -> list[ST.Running]:
    """The running containers of the pods' current sandboxes (with their pods' cgroups
    under CGROUP_PARENT, qos.py)."""
    out = []
    for bp in pods:
        sb = bp.runtime.sandbox()
        meta = bp.pod["metadata"]
        pod_cgroup = Q.pod_cgroup(bp.pod, cgroup_parent)  # "" without a parent
        for c in bp.runtime.containers:
            if c.state == "running" and (sb is None or c.sandbox_id == sb.id):
                out.append(ST.Running(namespace=str(meta.get("namespace") or "default"),
                                      pod=str(meta["name"]), container=c.name,
                                      container_id=c.id, image=c.image,
                                      started_at_ns=c.started_at, pod_cgroup=pod_cgroup))
    return out


# ---- the servicer -----------------------------------------------------------------------


class NodeServicer(npb_grpc.NodeServicer):
    def __init__(self, *, node: str, pods: Pods, cri: cric.CRIClient, log_root: str,
                 inventory: ST.Inventory, sampler: ST.Sampler, machine: Machine,
                 connect: Connect | None = None, exit_code: ExitCode | None = None) -> None:
        self.node = node
        self.pods = pods
        self.cri = cri
        self.log_root = log_root
        self.inventory = inventory
        self.sampler = sampler
        self.machine = machine
        self.connect = connect
        self.exit_code = exit_code
        self._sample_lock = asyncio.Lock()

    async def _abort(self, context: Any, err: NodeAPIError) -> NoReturn:
        await context.abort(err.code, str(err))
        raise AssertionError("unreachable")  # context.abort raises

    async def _pod(self, context: Any, ref: npb.ContainerRef) -> BoundPod:
        authorize(context.auth_context() or {}, node=self.node)
        namespace = ref.namespace or "default"
        if not ref.pod:
            raise _invalid(f"node {self.node}: ref.pod: a pod name is required")
        bp = await self.pods.get(namespace, ref.pod)
        if bp is None:
            raise _not_found(f"pod {namespace}/{ref.pod}: not found on node {self.node}")
        return bp

    # ---- Logs ---------------------------------------------------------------------------

    async def Logs(self, request: npb.LogsRequest, context: Any
                   ) -> AsyncIterator[npb.LogChunk]:
        try:
            bp = await self._pod(context, request.ref)
            name = container_name(bp, request.ref.container)
            c = instance(bp, name, previous=request.previous)
            options = log_options(request, where=f"pod {bp.key}: container \"{name}\"",
                                  now_ns=time.time_ns())
        except NodeAPIError as err:
            await self._abort(context, err)
        path = await self._log_path(bp, c)

        async def alive() -> bool:
            try:
                st = (await self.cri.container_status(c.id)).status
            except cric.NotFound:
                return False
            return bool(st.state == pb.CONTAINER_RUNNING)

        follow = options.follow and c.state in ("running", "created")
        opts = L.LogOptions(follow=follow, tail_lines=options.tail_lines,
                            since_ns=options.since_ns, timestamps=options.timestamps,
                            limit_bytes=options.limit_bytes)
        async for chunk in L.stream_log(path, opts, alive=alive):
            yield npb.LogChunk(data=chunk)

    async def _log_path(self, bp: BoundPod, c: C.ContainerInfo) -> str:
        """Where the runtime says it writes the log, else kubelet's layout."""
        try:
            st = (await self.cri.container_status(c.id)).status
            if st.log_path:
                return str(st.log_path)
        except cric.CRIError:
            pass
        return os.path.join(C.log_directory(bp.pod, self.log_root),
                            C.container_log_path(c.name, c.attempt))

    # ---- Stats --------------------------------------------------------------------------

    async def refresh(self) -> list[BoundPod]:
        pods = await self.pods.all()
        await self.inventory.refresh(
            running_of(pods, cgroup_parent=self.inventory.cgroup_parent))
        return pods

    async def sample(self) -> None:
        async with self._sample_lock:
            await asyncio.to_thread(self.sampler.sample, self.inventory.containers())

    async def Stats(self, request: npb.StatsRequest, context: Any) -> npb.StatsResponse:
        try:
            authorize(context.auth_context() or {}, node=self.node)
            if request.pod and not request.namespace:
                raise _invalid(f"node {self.node}: stats: namespace: required with a pod")
            pods = await self.refresh()
            chosen = [bp for bp in pods
                      if (not request.namespace or bp.key.split("/")[0] == request.namespace)
                      and (not request.pod or bp.key.split("/")[1] == request.pod)]
            if request.pod and not chosen:
                raise _not_found(f"pod {request.namespace}/{request.pod}: not found on node "
                                 f"{self.node}")
        except NodeAPIError as err:
            await self._abort(context, err)
        running = running_of(chosen)
        keys = [ST.NODE, *(r.container_id for r in running)]
        if not self.sampler.has_windows(keys):
            await self.sample()
            if not self.sampler.has_windows(keys):
                await asyncio.sleep(ST.MIN_WINDOW)
                await self.sample()
        return self.stats_response(chosen, running)

    def stats_response(self, pods: list[BoundPod], running: list[ST.Running]
                       ) -> npb.StatsResponse:
        by_pod: dict[str, list[npb.ContainerUsage]] = {}
        for r in running:
            u = ST.usage(self.sampler, r.container_id)
            if u is None:  # gone between the listing and the read
                continue
            by_pod.setdefault(f"{r.namespace}/{r.pod}", []).append(npb.ContainerUsage(
                name=r.container, cpu_nano_cores=u.cpu_nano_cores,
                memory_working_set_bytes=u.memory_working_set))
        node_usage = ST.usage(self.sampler, ST.NODE) or ST.Usage(0, 0)
        window = self.sampler.window(ST.NODE)
        out = npb.StatsResponse(
            node=npb.NodeUsage(cpu_nano_cores=node_usage.cpu_nano_cores,
                               memory_working_set_bytes=node_usage.memory_working_set,
                               cpu_capacity_milli=self.machine.cpu_cores * 1000,
                               memory_capacity_bytes=self.machine.memory_bytes),
            timestamp_unix_nano=window[1].at_ns if window else time.time_ns(),
            window_nanos=(window[1].at_ns - window[0].at_ns) if window else 0)
        for bp in sorted(pods, key=lambda p: p.key):
            ns, name = bp.key.split("/", 1)
            out.pods.append(npb.PodUsage(namespace=ns, name=name,
                                         containers=by_pod.get(bp.key, [])))
        return out

    async def run(self) -> None:
        """Refresh the inventory every REFRESH_PERIOD, sample every SAMPLE_PERIOD."""
        last_sample = 0.0
        while True:
            try:
                await self.refresh()
                if time.monotonic() - last_sample >= ST.SAMPLE_PERIOD:
                    last_sample = time.monotonic()
                    await self.sample()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # the runtime may be restarting
                log.warning("node api: stats: %s", err)
            await asyncio.sleep(REFRESH_PERIOD)

    # ---- Exec ---------------------------------------------------------------------------

    async def Exec(self, request_iterator: AsyncIterator[npb.ExecInput], context: Any
                   ) -> AsyncIterator[npb.ExecOutput]:
        try:
            authorize(context.auth_context() or {}, node=self.node)
            first = await anext(aiter(request_iterator), None)
            if first is None or not first.HasField("start"):
                raise _invalid(f"node {self.node}: exec: the first message must be a start")
            start = first.start
            bp = await self._pod(context, start.ref)
            name = container_name(bp, start.ref.container)
            c = instance(bp, name, previous=False)
            if c.state != "running":
                raise _precondition(f"pod {bp.key}: container \"{name}\" is not running "
                                    f"({c.state})")
            if not start.command:
                raise _invalid(f"pod {bp.key}: container \"{name}\": exec: command: required")
        except NodeAPIError as err:
            await self._abort(context, err)
        # closed with this generator: grpc closes it, not cancels it, when the call ends
        # while an output is being written (the caller went away), and the session must end
        # then too, not when the garbage collector gets to the inner generator
        async with contextlib.aclosing(self._exec(bp, c, start, request_iterator)) as outs:
            async for out in outs:
                yield out

    async def _exec(self, bp: BoundPod, c: C.ContainerInfo, start: npb.ExecStart,
                    inputs: AsyncIterator[npb.ExecInput]
                    ) -> AsyncGenerator[npb.ExecOutput, None]:
        where = f"pod {bp.key}: container \"{c.name}\": exec"
        if self.connect is None or self.exit_code is None:
            yield _exit(-1, f"{where}: this agent has no CRI streaming client")
            return
        try:
            url = await self.cri.exec(c.id, list(start.command), tty=start.tty,
                                      stdin=start.stdin)
            stream = await self.connect(url)
        except Exception as err:
            yield _exit(-1, f"{where}: {err}")
            return
        pump = asyncio.create_task(_pump(inputs, stream, stdin=start.stdin))
        code, message, status_seen = 0, "", False
        try:
            while True:
                try:
                    got = await stream.recv()
                except Exception as err:
                    code, message = -1, f"{where}: stream: {err}"
                    break
                if got is None:
                    break
                channel, data = got
                if channel == STDOUT and data:
                    yield npb.ExecOutput(stdout=data)
                elif channel == STDERR and data:
                    yield npb.ExecOutput(stderr=data)
                elif channel == STATUS:
                    code, message = self.exit_code(data)
                    status_seen = True
            if not status_seen and not message:
                code, message = -1, f"{where}: the stream ended without an exit status"
            yield _exit(code, message)
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump
            with contextlib.suppress(Exception):
                await stream.close()


def _exit(code: int, message: str) -> npb.ExecOutput:
    return npb.ExecOutput(exit=npb.ExecExit(exit_code=code, message=message))


async def _pump(inputs: AsyncIterator[npb.ExecInput], stream: ExecStream, *,
                stdin: bool) -> None:
    """The caller's stdin and resizes into the session; its half-close is stdin's EOF.
    grpc also ends INPUTS when the caller cancels: the call's cancellation (of _exec) then
    ends the session; closing stdin first does no harm."""
    closed = False
    async for msg in inputs:
        kind = msg.WhichOneof("input")
        if kind == "stdin" and stdin and not closed:
            await stream.send_stdin(msg.stdin)
        elif kind == "stdin_close" and stdin and not closed:
            closed = True
            await stream.close_stdin()
        elif kind == "resize":
            await stream.resize(msg.resize.width, msg.resize.height)
    if stdin and not closed:
        await stream.close_stdin()


# ---- the server -------------------------------------------------------------------------


@dataclass(frozen=True)
class TLS:
    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes


async def serve(servicer: NodeServicer, *, listen: str, tls: TLS) -> tuple[aio.Server, int]:
    """Start the gRPC server on LISTEN (HOST:PORT; port 0: any), mutual TLS required."""
    host, _, port = listen.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"--listen: want HOST:PORT, got {listen!r}")
    server = aio.server()
    npb_grpc.add_NodeServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    creds = grpc.ssl_server_credentials([(tls.key_pem, tls.cert_pem)],
                                        root_certificates=tls.ca_pem,
                                        require_client_auth=True)
    bound = server.add_secure_port(f"{host or '0.0.0.0'}:{port}", creds)
    await server.start()
    return server, int(bound)
