"""CRI RuntimeService: protobuf in, cri/service.py and sandboxes.py, protobuf out.

Each call converts its request to plain data, runs the blocking work in a thread and
converts the answer; no decisions are made here. Errors propagate as raised and are
mapped to gRPC codes in cri/server.py.

ListContainers and ListPodSandbox (the agent's relist) build each item message directly,
keep it (ListMemo) while its record and state are unchanged, and match labels only when
the filter has a selector.

Exec, Attach and PortForward check their request (the container running, a command, a
stream), resolve it to a plain spec (runtime command line, OCI process, log path, netns)
and answer with a one-use URL on the daemon's streaming server (streaming.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from runtime.service import bundle as B
from runtime.service import sandboxes as S
from runtime.service.cri import api_pb2 as pb
from runtime.service.cri import api_pb2_grpc as pb_grpc
from runtime.service.cri.service import (
    ContainerRequest,
    ContainerView,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Service,
)
from runtime.service.events import EventBus
from runtime.service.streaming import AttachSpec, ExecSpec, PortForwardSpec, StreamServer
from runtime.service.tasks import TaskState

VERSION = "0.1.0"
RUNTIME_NAME = "corral"
RUNTIME_VERSION = "0.1.0"
STANDALONE = "io.corral.sandbox/standalone"  # annotation: no pause, no pod network

_STATE = {TaskState.CREATED: pb.CONTAINER_CREATED, TaskState.RUNNING: pb.CONTAINER_RUNNING,
          TaskState.STOPPED: pb.CONTAINER_EXITED, TaskState.UNKNOWN: pb.CONTAINER_UNKNOWN}


def sandbox_spec(cfg: pb.PodSandboxConfig, runtime_handler: str) -> S.SandboxSpec:
    ns = cfg.linux.security_context.namespace_options
    ports = tuple({"hostPort": p.host_port, "containerPort": p.container_port,
                   "protocol": pb.Protocol.Name(p.protocol).lower(), "hostIP": p.host_ip}
                  for p in cfg.port_mappings if p.host_port)
    return S.SandboxSpec(
        name=cfg.metadata.name, uid=cfg.metadata.uid, namespace=cfg.metadata.namespace,
        attempt=cfg.metadata.attempt, hostname=cfg.hostname, log_directory=cfg.log_directory,
        labels=dict(cfg.labels), annotations=dict(cfg.annotations),
        cgroup_parent=cfg.linux.cgroup_parent, host_network=ns.network == pb.NODE,
        port_mappings=ports, runtime_handler=runtime_handler, share_pid=ns.pid == pb.POD,
        standalone=cfg.annotations.get(STANDALONE) == "true")


def resources(r: pb.LinuxContainerResources) -> B.Resources:
    return B.Resources(cpu_shares=r.cpu_shares, cpu_quota=r.cpu_quota,
                       cpu_period=r.cpu_period, memory_limit_bytes=r.memory_limit_in_bytes)


def container_request(cfg: pb.ContainerConfig) -> ContainerRequest:
    sec = cfg.linux.security_context
    seccomp = "" if sec.seccomp.profile_type == sec.seccomp.Unconfined or \
        not sec.HasField("seccomp") else B.SECCOMP_DEFAULT
    security = B.SecurityContext(
        privileged=sec.privileged, add_capabilities=tuple(sec.capabilities.add_capabilities),
        drop_capabilities=tuple(sec.capabilities.drop_capabilities),
        readonly_rootfs=sec.readonly_rootfs,
        run_as_user=sec.run_as_user.value if sec.HasField("run_as_user") else None,
        run_as_username=sec.run_as_username,
        run_as_group=sec.run_as_group.value if sec.HasField("run_as_group") else None,
        supplemental_groups=tuple(sec.supplemental_groups), no_new_privs=sec.no_new_privs,
        seccomp=seccomp)
    config = B.ContainerConfig(
        name=cfg.metadata.name, command=tuple(cfg.command), args=tuple(cfg.args),
        env=tuple((e.key, e.value) for e in cfg.envs), working_dir=cfg.working_dir,
        mounts=tuple(B.MountSpec(container_path=m.container_path, host_path=m.host_path,
                                 readonly=m.readonly) for m in cfg.mounts),
        resources=resources(cfg.linux.resources), security=security,
        annotations=tuple(sorted(cfg.annotations.items())), stdin=cfg.stdin,
        stdin_once=cfg.stdin_once, tty=cfg.tty)
    return ContainerRequest(name=cfg.metadata.name, attempt=cfg.metadata.attempt,
                            image=cfg.image.image, config=config, labels=dict(cfg.labels),
                            annotations=dict(cfg.annotations), log_path=cfg.log_path)


def sandbox_status(sb: S.Sandbox) -> pb.PodSandboxStatus:
    state = _sandbox_state(sb)
    net = pb.PodSandboxNetworkStatus(ip=sb.ips[0] if sb.ips else "",
                                     additional_ips=[pb.PodIP(ip=i) for i in sb.ips[1:]])
    mode = pb.NODE if sb.spec.host_network else pb.POD
    return pb.PodSandboxStatus(
        id=sb.id, metadata=_sandbox_meta(sb), state=state, created_at=sb.created_at_ns,
        network=net, labels=dict(sb.spec.labels), annotations=dict(sb.spec.annotations),
        runtime_handler=sb.spec.runtime_handler,
        linux=pb.LinuxPodSandboxStatus(namespaces=pb.Namespace(options=pb.NamespaceOption(
            network=mode, pid=pb.POD if sb.spec.share_pid else pb.CONTAINER,
            ipc=pb.POD))))


def _sandbox_meta(sb: S.Sandbox) -> pb.PodSandboxMetadata:
    return pb.PodSandboxMetadata(name=sb.spec.name, uid=sb.spec.uid,
                                 namespace=sb.spec.namespace, attempt=sb.spec.attempt)


def container_status(v: ContainerView) -> pb.ContainerStatus:
    cri, c, task = v.cri, v.record, v.task
    st = pb.ContainerStatus(
        id=c.id, metadata=pb.ContainerMetadata(name=cri["name"], attempt=cri["attempt"]),
        state=_STATE[task.state] if task else pb.CONTAINER_UNKNOWN, created_at=c.created_at_ns,
        started_at=cri.get("started_at", 0), image=pb.ImageSpec(image=cri["image"]),
        image_ref=cri["image_id"], image_id=cri["image_id"], labels=dict(c.labels),
        annotations=dict(cri.get("annotations") or {}), log_path=cri["log_path"])
    r = cri.get("resources") or {}
    st.resources.linux.CopyFrom(pb.LinuxContainerResources(
        cpu_shares=r.get("cpu_shares", 0), cpu_quota=r.get("cpu_quota", 0),
        cpu_period=r.get("cpu_period", 0), memory_limit_in_bytes=r.get(
            "memory_limit_bytes", 0)))
    if task is not None and task.exit is not None:
        st.exit_code = task.exit.code
        st.finished_at = task.exit.exited_at_ns
        st.reason = task.exit.reason
        if task.state is TaskState.STOPPED and not st.started_at:
            st.started_at = st.finished_at
    elif task is None:
        st.reason, st.message = "Unknown", "the container's task is gone"
    return st


def container_message(v: ContainerView) -> pb.Container:
    """ListContainers' item, built directly (not a ContainerStatus copied: a List call
    with many containers spent most of its CPU on that)."""
    cri, c, task = v.cri, v.record, v.task
    return pb.Container(
        id=c.id, pod_sandbox_id=cri["sandbox_id"],
        metadata=pb.ContainerMetadata(name=cri["name"], attempt=cri["attempt"]),
        image=pb.ImageSpec(image=cri["image"]), image_ref=cri["image_id"],
        image_id=cri["image_id"], state=_STATE[task.state] if task else pb.CONTAINER_UNKNOWN,
        created_at=c.created_at_ns, labels=c.labels, annotations=cri.get("annotations") or {})


def sandbox_message(sb: S.Sandbox) -> pb.PodSandbox:
    """ListPodSandbox's item, built directly (as container_message)."""
    spec = sb.spec
    return pb.PodSandbox(
        id=sb.id, metadata=_sandbox_meta(sb), state=_sandbox_state(sb),
        created_at=sb.created_at_ns, labels=spec.labels, annotations=spec.annotations,
        runtime_handler=spec.runtime_handler)


def _sandbox_state(sb: S.Sandbox) -> pb.PodSandboxState:
    return pb.SANDBOX_READY if sb.state is S.SandboxState.READY else pb.SANDBOX_NOTREADY


class ListMemo:
    """The last List call's item messages, each kept with what it was built from: a
    container's record (the store shares an unchanged row's object) and task state, a
    sandbox's spec object, state and creation time. A relist that finds the same object
    in the same state reuses the message (the response copies it, in C); entries not
    listed again are dropped. Only the event loop uses it (no lock)."""

    def __init__(self) -> None:
        self._containers: dict[str, tuple[object, pb.ContainerState, pb.Container]] = {}
        self._sandboxes: dict[str, tuple[object, pb.PodSandboxState, int,
                                         pb.PodSandbox]] = {}

    def containers(self, views: list[ContainerView]
                   ) -> list[tuple[ContainerView, pb.ContainerState, pb.Container]]:
        """(view, CRI state, message) of each of VIEWS."""
        old = self._containers
        new: dict[str, tuple[object, pb.ContainerState, pb.Container]] = {}
        out = []
        for v in views:
            c = v.record
            state = _STATE[v.task.state] if v.task else pb.CONTAINER_UNKNOWN
            hit = old.get(c.id)
            msg = hit[2] if hit is not None and hit[0] is c and hit[1] == state \
                else container_message(v)
            new[c.id] = (c, state, msg)
            out.append((v, state, msg))
        self._containers = new
        return out

    def sandboxes(self, sbs: list[S.Sandbox]
                  ) -> list[tuple[S.Sandbox, pb.PodSandboxState, pb.PodSandbox]]:
        """(sandbox, CRI state, message) of each of SBS."""
        old = self._sandboxes
        new: dict[str, tuple[object, pb.PodSandboxState, int, pb.PodSandbox]] = {}
        out = []
        for sb in sbs:
            state = _sandbox_state(sb)
            hit = old.get(sb.id)
            msg = hit[3] if hit is not None and hit[0] is sb.spec and hit[1] == state and \
                hit[2] == sb.created_at_ns else sandbox_message(sb)
            new[sb.id] = (sb.spec, state, sb.created_at_ns, msg)
            out.append((sb, state, msg))
        self._sandboxes = new
        return out


def _labels_match(have: Mapping[str, str], want: Mapping[str, str]) -> bool:
    return all(have.get(k) == v for k, v in want.items())


class RuntimeServicer(pb_grpc.RuntimeServiceServicer):
    def __init__(self, service: Service, sandboxes: S.SandboxManager, bus: EventBus, *,
                 tenant_of: Any, config_info: dict[str, Any],
                 streams: StreamServer | None = None) -> None:
        self.svc = service
        self.sandboxes = sandboxes
        self.bus = bus
        self.tenant_of = tenant_of
        self.config_info = config_info
        self.streams = streams
        self.memo = ListMemo()

    async def Version(self, request: pb.VersionRequest, context: Any) -> pb.VersionResponse:
        return pb.VersionResponse(version=VERSION, runtime_name=RUNTIME_NAME,
                                  runtime_version=RUNTIME_VERSION, runtime_api_version="v1")

    async def Status(self, request: pb.StatusRequest, context: Any) -> pb.StatusResponse:
        ready, why = await asyncio.to_thread(self.sandboxes.network.ready)
        conds = [pb.RuntimeCondition(type="RuntimeReady", status=True),
                 pb.RuntimeCondition(type="NetworkReady", status=ready,
                                     reason="" if ready else "NetworkPluginNotReady",
                                     message=why)]
        info = {"config": json.dumps(self.config_info)} if request.verbose else {}
        return pb.StatusResponse(status=pb.RuntimeStatus(conditions=conds), info=info)

    # ---- sandboxes ----------------------------------------------------------------------

    async def RunPodSandbox(self, request: pb.RunPodSandboxRequest, context: Any
                            ) -> pb.RunPodSandboxResponse:
        tenant = self.tenant_of(context)
        spec = sandbox_spec(request.config, request.runtime_handler)
        sb = await asyncio.to_thread(self.sandboxes.run, tenant, spec)
        return pb.RunPodSandboxResponse(pod_sandbox_id=sb.id)

    async def _stop_sandbox_containers(self, tenant: str, sid: str) -> None:
        for cid in await asyncio.to_thread(self.svc.ids_in_sandbox, tenant, sid):
            try:
                v = await asyncio.to_thread(self.svc.get, tenant, cid)
            except NotFound:
                continue
            if v.task and v.task.state in (TaskState.RUNNING, TaskState.CREATED):
                await asyncio.to_thread(self.svc.stop, tenant, v.record.id, grace=0)

    async def StopPodSandbox(self, request: pb.StopPodSandboxRequest, context: Any
                             ) -> pb.StopPodSandboxResponse:
        tenant = self.tenant_of(context)
        sb = await asyncio.to_thread(self.sandboxes.get, tenant, request.pod_sandbox_id)
        await self._stop_sandbox_containers(tenant, sb.id)
        await asyncio.to_thread(self.sandboxes.stop, tenant, sb.id)
        return pb.StopPodSandboxResponse()

    async def RemovePodSandbox(self, request: pb.RemovePodSandboxRequest, context: Any
                               ) -> pb.RemovePodSandboxResponse:
        tenant = self.tenant_of(context)
        try:
            sb = await asyncio.to_thread(self.sandboxes.get, tenant, request.pod_sandbox_id)
        except S.NotFound:
            return pb.RemovePodSandboxResponse()  # removed already: not an error (CRI)
        for cid in await asyncio.to_thread(self.svc.ids_in_sandbox, tenant, sb.id):
            await asyncio.to_thread(self.svc.remove, tenant, cid)
        await asyncio.to_thread(self.sandboxes.remove, tenant, sb.id)
        return pb.RemovePodSandboxResponse()

    async def PodSandboxStatus(self, request: pb.PodSandboxStatusRequest, context: Any
                               ) -> pb.PodSandboxStatusResponse:
        tenant = self.tenant_of(context)
        sb = await asyncio.to_thread(self.sandboxes.get, tenant, request.pod_sandbox_id)
        info = {"info": json.dumps({"pid": sb.pause_pid, "netns": sb.netns,
                                    "tenant": tenant})} if request.verbose else {}
        return pb.PodSandboxStatusResponse(status=sandbox_status(sb), info=info,
                                           timestamp=time.time_ns())

    async def ListPodSandbox(self, request: pb.ListPodSandboxRequest, context: Any
                             ) -> pb.ListPodSandboxResponse:
        tenant = self.tenant_of(context)
        f = request.filter
        prefix, selector = f.id, f.label_selector
        want = f.state.state if f.HasField("state") else None
        sbs = await asyncio.to_thread(self.sandboxes.list, tenant)
        return pb.ListPodSandboxResponse(items=[
            msg for sb, state, msg in self.memo.sandboxes(sbs)
            if (not prefix or sb.id.startswith(prefix)) and (want is None or state == want)
            and (not selector or _labels_match(sb.spec.labels, selector))])

    # ---- containers ---------------------------------------------------------------------

    async def CreateContainer(self, request: pb.CreateContainerRequest, context: Any
                              ) -> pb.CreateContainerResponse:
        tenant = self.tenant_of(context)
        req = container_request(request.config)
        sb = await asyncio.to_thread(self.sandboxes.get, tenant, request.pod_sandbox_id)
        cid = await asyncio.to_thread(self.svc.create, tenant, sb, req)
        return pb.CreateContainerResponse(container_id=cid)

    async def StartContainer(self, request: pb.StartContainerRequest, context: Any
                             ) -> pb.StartContainerResponse:
        await asyncio.to_thread(self.svc.start, self.tenant_of(context), request.container_id)
        return pb.StartContainerResponse()

    async def StopContainer(self, request: pb.StopContainerRequest, context: Any
                            ) -> pb.StopContainerResponse:
        await asyncio.to_thread(self.svc.stop, self.tenant_of(context), request.container_id,
                                grace=float(request.timeout))
        return pb.StopContainerResponse()

    async def RemoveContainer(self, request: pb.RemoveContainerRequest, context: Any
                              ) -> pb.RemoveContainerResponse:
        await asyncio.to_thread(self.svc.remove, self.tenant_of(context), request.container_id)
        return pb.RemoveContainerResponse()

    async def ListContainers(self, request: pb.ListContainersRequest, context: Any
                             ) -> pb.ListContainersResponse:
        f = request.filter
        prefix, pod, selector = f.id, f.pod_sandbox_id, f.label_selector
        want = f.state.state if f.HasField("state") else None
        views = await asyncio.to_thread(self.svc.list, self.tenant_of(context))
        return pb.ListContainersResponse(containers=[
            msg for v, state, msg in self.memo.containers(views)
            if (not prefix or v.record.id.startswith(prefix))
            and (not pod or v.cri["sandbox_id"].startswith(pod))
            and (want is None or state == want)
            and (not selector or _labels_match(v.record.labels, selector))])

    async def ContainerStatus(self, request: pb.ContainerStatusRequest, context: Any
                              ) -> pb.ContainerStatusResponse:
        v = await asyncio.to_thread(self.svc.get, self.tenant_of(context),
                                    request.container_id)
        info = {"info": json.dumps({"pid": v.task.pid if v.task else 0,
                                    "sandboxID": v.cri["sandbox_id"],
                                    "runtime": v.record.runtime})} if request.verbose else {}
        return pb.ContainerStatusResponse(status=container_status(v), info=info)

    async def UpdateContainerResources(self, request: pb.UpdateContainerResourcesRequest,
                                       context: Any) -> pb.UpdateContainerResourcesResponse:
        await asyncio.to_thread(self.svc.update_resources, self.tenant_of(context),
                                request.container_id, resources(request.linux))
        return pb.UpdateContainerResourcesResponse()

    async def ReopenContainerLog(self, request: pb.ReopenContainerLogRequest, context: Any
                                 ) -> pb.ReopenContainerLogResponse:
        await asyncio.to_thread(self.svc.reopen_log, self.tenant_of(context),
                                request.container_id)
        return pb.ReopenContainerLogResponse()

    async def ExecSync(self, request: pb.ExecSyncRequest, context: Any) -> pb.ExecSyncResponse:
        out, err, code = await asyncio.to_thread(
            self.svc.exec_sync, self.tenant_of(context), request.container_id,
            list(request.cmd), float(request.timeout))
        return pb.ExecSyncResponse(stdout=out, stderr=err, exit_code=code)

    # ---- streaming: exec, attach, port-forward ---------------------------------------------

    def _streams(self, where: str) -> StreamServer:
        if self.streams is None:
            raise NotImplementedError(f"{where}: this daemon runs no streaming server")
        return self.streams

    def _running(self, tenant: str, cid: str) -> ContainerView:
        v = self.svc.get(tenant, cid)
        state = v.task.state.value if v.task else "unknown"
        if v.task is None or v.task.state is not TaskState.RUNNING:
            raise FailedPrecondition(f"Container {v.record.id[:13]}: is {state}, not running")
        return v

    def exec_spec(self, tenant: str, req: pb.ExecRequest) -> ExecSpec:
        """Exec's checks, and what the session runs (blocking: reads the bundle)."""
        v = self._running(tenant, req.container_id)
        cid, runtime = v.record.id, v.record.runtime
        where = f"Container {cid[:13]}"
        if not req.cmd:
            raise InvalidArgument(f"{where}: cmd: must not be empty")
        if not (req.stdin or req.stdout or req.stderr):
            raise InvalidArgument(f"{where}: stdin, stdout, stderr: at least one must be set")
        with open(os.path.join(self.svc.tasks.task_dir(tenant, cid), "bundle",
                               "config.json")) as f:
            process = dict(json.load(f)["process"])
        process["args"] = list(req.cmd)
        runtime_root = os.path.join(self.svc.tasks.state_dir, "runtime", runtime)
        return ExecSpec(what=where, runtime=(*self.svc.runtimes[runtime], "--root",
                                             runtime_root),
                        container_id=cid, process=process, tty=req.tty, stdin=req.stdin,
                        stdout=req.stdout, stderr=req.stderr and not req.tty)

    def attach_spec(self, tenant: str, req: pb.AttachRequest) -> AttachSpec:
        v = self._running(tenant, req.container_id)
        cid = v.record.id
        where = f"Container {cid[:13]}"
        if not (req.stdin or req.stdout or req.stderr):
            raise InvalidArgument(f"{where}: stdin, stdout, stderr: at least one must be set")
        io = self.svc.tasks.stdio(tenant, cid)
        if req.stdin and not io["stdin"]:
            raise FailedPrecondition(f"{where}: stdin: the container was created without "
                                     "stdin (ContainerConfig.stdin false): attach without it")
        assert v.task is not None

        def open_stdin() -> tuple[int, bool]:
            return self.svc.tasks.attach(tenant, cid)

        def running() -> bool:
            try:
                return self.svc.tasks.get(tenant, cid).state is TaskState.RUNNING
            except Exception:
                return False
        return AttachSpec(what=where, log_path=v.task.log_path, running=running, tty=req.tty,
                          stdout=req.stdout, stderr=req.stderr,
                          open_stdin=open_stdin if req.stdin else None,
                          stdin_once=io["stdin_once"])

    def port_forward_spec(self, tenant: str, req: pb.PortForwardRequest) -> PortForwardSpec:
        sb = self.sandboxes.get(tenant, req.pod_sandbox_id)
        where = f"Sandbox {sb.id[:13]}"
        if sb.state is not S.SandboxState.READY:
            raise FailedPrecondition(f"{where}: is {sb.state.value}, not ready")
        if not req.port:
            raise InvalidArgument(f"{where}: port: at least one port is needed")
        for i, port in enumerate(req.port):
            if not 1 <= port <= 65535:
                raise InvalidArgument(f"{where}: port[{i}]: must be 1..65535, got {port}")
        if len(set(req.port)) != len(req.port):
            raise InvalidArgument(f"{where}: port: each port at most once, got "
                                  f"{list(req.port)}")
        netns = "" if sb.spec.host_network or sb.spec.standalone else \
            dict(sb.join_namespaces())["network"]  # through the pause: it holds the netns
        return PortForwardSpec(what=where, netns=netns, ports=tuple(req.port))

    async def Exec(self, request: pb.ExecRequest, context: Any) -> pb.ExecResponse:
        streams = self._streams(f"Container {request.container_id[:13]}")
        spec = await asyncio.to_thread(self.exec_spec, self.tenant_of(context), request)
        return pb.ExecResponse(url=streams.url(spec))

    async def Attach(self, request: pb.AttachRequest, context: Any) -> pb.AttachResponse:
        streams = self._streams(f"Container {request.container_id[:13]}")
        spec = await asyncio.to_thread(self.attach_spec, self.tenant_of(context), request)
        return pb.AttachResponse(url=streams.url(spec))

    async def PortForward(self, request: pb.PortForwardRequest, context: Any
                          ) -> pb.PortForwardResponse:
        streams = self._streams(f"Sandbox {request.pod_sandbox_id[:13]}")
        spec = await asyncio.to_thread(self.port_forward_spec, self.tenant_of(context),
                                       request)
        return pb.PortForwardResponse(url=streams.url(spec))

    # ---- stats and events ---------------------------------------------------------------

    def _stats(self, tenant: str, v: ContainerView) -> pb.ContainerStats:
        s = self.svc.tasks.stats(tenant, v.record.id)
        attrs = pb.ContainerAttributes(id=v.record.id, metadata=pb.ContainerMetadata(
            name=v.cri["name"], attempt=v.cri["attempt"]), labels=dict(v.record.labels),
            annotations=dict(v.cri.get("annotations") or {}))
        return pb.ContainerStats(
            attributes=attrs,
            cpu=pb.CpuUsage(timestamp=s.timestamp_ns, usage_core_nano_seconds=pb.UInt64Value(
                value=s.cpu_usage_ns)),
            memory=pb.MemoryUsage(timestamp=s.timestamp_ns, working_set_bytes=pb.UInt64Value(
                value=s.memory_working_set_bytes), usage_bytes=pb.UInt64Value(
                value=s.memory_usage_bytes)))

    async def ContainerStats(self, request: pb.ContainerStatsRequest, context: Any
                             ) -> pb.ContainerStatsResponse:
        tenant = self.tenant_of(context)
        v = await asyncio.to_thread(self.svc.get, tenant, request.container_id)
        return pb.ContainerStatsResponse(stats=await asyncio.to_thread(self._stats, tenant, v))

    async def ListContainerStats(self, request: pb.ListContainerStatsRequest, context: Any
                                 ) -> pb.ListContainerStatsResponse:
        tenant = self.tenant_of(context)
        f = request.filter

        def collect() -> list[pb.ContainerStats]:
            out = []
            for v in self.svc.list(tenant):
                if v.task is None or v.task.state is not TaskState.RUNNING:
                    continue
                if f.id and not v.record.id.startswith(f.id):
                    continue
                if f.pod_sandbox_id and not v.cri["sandbox_id"].startswith(f.pod_sandbox_id):
                    continue
                if f.label_selector and not _labels_match(v.record.labels, f.label_selector):
                    continue
                out.append(self._stats(tenant, v))
            return out
        return pb.ListContainerStatsResponse(stats=await asyncio.to_thread(collect))

    async def GetContainerEvents(self, request: pb.GetEventsRequest, context: Any
                                 ) -> AsyncIterator[pb.ContainerEventResponse]:
        tenant = self.tenant_of(context)
        async for ev in self.bus.subscribe(tenant):
            msg = pb.ContainerEventResponse(container_id=ev.container_id,
                                            created_at=ev.at_ns)
            msg.container_event_type = ev.type.value  # type: ignore[assignment]
            try:
                v = await asyncio.to_thread(self.svc.get, tenant, ev.container_id)
                msg.containers_statuses.append(container_status(v))
            except NotFound:
                pass
            try:
                sb = await asyncio.to_thread(self.sandboxes.get, tenant, ev.sandbox_id)
                msg.pod_sandbox_status.CopyFrom(sandbox_status(sb))
            except S.NotFound:
                pass
            yield msg
