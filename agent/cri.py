"""The agent's thin adapter over CRI: pod spec -> CRI configs, runtime state -> snapshots.

    sandbox_config(pod, log_root=, cgroup_parent=)      -> pb.PodSandboxConfig
        cgroup_parent: the pod's own cgroup (qos.ensure_pod_cgroup: <node parent>/[tier/]
        pod<uid>, holding the pod's limits); the runtime makes each container below it
    container_config(pod, container, attempt=, env=, mounts=)  -> pb.ContainerConfig
    Runtime(cri).observe()  -> {pod uid: PodRuntime(sandboxes, containers)}   one relist
    Runtime(cri).with_made(rt, made) -> rt + what a worker just made, one status call each

Every sandbox and container carries kubelet's labels (io.kubernetes.pod.uid, .name,
.namespace, io.kubernetes.container.name), so a restarted agent finds and adopts what
the runtime already runs. Building configs is pure; only ``Runtime`` does I/O.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from api import quantity
from runtime.service.cri import api_pb2 as pb
from runtime.service.cri import client as cric

POD_UID = "io.kubernetes.pod.uid"
POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
CONTAINER_NAME = "io.kubernetes.container.name"
INIT_LABEL = "corral.io/init-container"
CPU_PERIOD = 100_000  # microseconds, CFS default
MIN_SHARES = 2  # kubelet: a container with no cpu request gets 2 shares
MAX_SHARES = 262_144
MIN_QUOTA = 1_000  # microseconds: kubelet's MinQuotaPeriod


class ConfigError(ValueError):
    """The pod's spec cannot become a container config (CreateContainerConfigError)."""


@dataclass(frozen=True)
class Mount:
    """A host path to bind into a container (the worker makes these from the checked
    mounts of volumes.container_mounts)."""

    container_path: str
    host_path: str
    readonly: bool = False


@dataclass(frozen=True)
class ContainerInfo:
    """One container as the runtime reports it; times are nanoseconds since the epoch."""

    id: str
    name: str
    attempt: int
    state: str  # created | running | exited | unknown
    sandbox_id: str = ""
    init: bool = False
    created_at: int = 0
    started_at: int = 0
    finished_at: int = 0
    exit_code: int = 0
    reason: str = ""
    message: str = ""
    image: str = ""
    image_ref: str = ""


@dataclass(frozen=True)
class SandboxInfo:
    id: str
    attempt: int
    ready: bool
    ip: str = ""
    created_at: int = 0


@dataclass
class PodRuntime:
    """What the runtime holds for one pod uid."""

    uid: str
    namespace: str = ""
    name: str = ""
    sandboxes: list[SandboxInfo] = field(default_factory=list)
    containers: list[ContainerInfo] = field(default_factory=list)

    def sandbox(self) -> SandboxInfo | None:
        """The newest ready sandbox, else the newest one."""
        ready = [s for s in self.sandboxes if s.ready]
        pool = ready or self.sandboxes
        return max(pool, key=lambda s: (s.attempt, s.created_at)) if pool else None

    def latest(self, name: str) -> ContainerInfo | None:
        """The newest attempt of container NAME in the current sandbox."""
        sb = self.sandbox()
        found = [c for c in self.containers
                 if c.name == name and (sb is None or c.sandbox_id == sb.id)]
        return max(found, key=lambda c: (c.attempt, c.created_at)) if found else None

    def previous(self, name: str) -> ContainerInfo | None:
        ordered = sorted((c for c in self.containers if c.name == name),
                         key=lambda c: (c.attempt, c.created_at))
        return ordered[-2] if len(ordered) >= 2 else None


# ---- pure config building -------------------------------------------------------------


def pod_labels(pod: Mapping[str, Any]) -> dict[str, str]:
    meta = pod["metadata"]
    return {POD_UID: str(meta["uid"]), POD_NAME: str(meta["name"]),
            POD_NAMESPACE: str(meta.get("namespace") or "default")}


def log_directory(pod: Mapping[str, Any], log_root: str) -> str:
    """kubelet's /var/log/pods/<namespace>_<name>_<uid>, under LOG_ROOT."""
    meta = pod["metadata"]
    return os.path.join(log_root, f"{meta.get('namespace') or 'default'}_{meta['name']}_"
                        f"{meta['uid']}")


def sandbox_config(pod: Mapping[str, Any], *, log_root: str, cgroup_parent: str = "",
                   attempt: int = 0) -> pb.PodSandboxConfig:
    """CRI's sandbox config; CGROUP_PARENT becomes linux.cgroup_parent as it is: the pod's
    cgroup from qos.ensure_pod_cgroup (both RunPodSandbox and CreateContainer are given
    the same one), or "" for the runtime's default."""
    meta, spec = pod["metadata"], pod.get("spec") or {}
    ports = []
    for c in spec.get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                ports.append(pb.PortMapping(
                    protocol=pb.Protocol.Name(pb.Protocol.Value(str(p.get("protocol") or "TCP"))),
                    container_port=int(p["containerPort"]), host_port=int(p["hostPort"]),
                    host_ip=str(p.get("hostIP") or "")))
    network = pb.NODE if spec.get("hostNetwork") else pb.POD
    # as kubelet: each container its own PID namespace unless the pod asks to share one
    # (left unset, pid is POD, proto3's zero: a shared one, whose init is a pause
    # container the runtime then has to run for every pod)
    pid = pb.NODE if spec.get("hostPID") else \
        pb.POD if spec.get("shareProcessNamespace") else pb.CONTAINER
    ipc = pb.NODE if spec.get("hostIPC") else pb.POD
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=str(meta["name"]), uid=str(meta["uid"]),
                                       namespace=str(meta.get("namespace") or "default"),
                                       attempt=attempt),
        hostname=str(spec.get("hostname") or meta["name"])[:63],
        log_directory=log_directory(pod, log_root), port_mappings=ports,
        labels={**{k: str(v) for k, v in (meta.get("labels") or {}).items()},
                **pod_labels(pod)},
        annotations={k: str(v) for k, v in (meta.get("annotations") or {}).items()},
        linux=pb.LinuxPodSandboxConfig(
            cgroup_parent=cgroup_parent,
            security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=pb.NamespaceOption(network=network, pid=pid, ipc=ipc))))


def container_log_path(name: str, attempt: int) -> str:
    """Relative to the sandbox's log directory, as kubelet writes it."""
    return os.path.join(name, f"{attempt}.log")


def milli_of(value: Any) -> int:
    """A cpu quantity ("250m", 2) in millicores; 0 when unset."""
    return quantity.parse(value).milli_value() if value is not None else 0


def bytes_of(value: Any) -> int:
    """A memory quantity ("64Mi") in bytes; 0 when unset."""
    return quantity.parse(value).value() if value is not None else 0


def milli_to_shares(milli: int) -> int:
    """kubelet's MilliCPUToShares: 1024 per CPU, at least 2, at most 262144."""
    if milli == 0:
        return MIN_SHARES
    return min(MAX_SHARES, max(MIN_SHARES, milli * 1024 // 1000))


def milli_to_quota(milli: int, period: int = CPU_PERIOD) -> int:
    """kubelet's MilliCPUToQuota: 0 (no limit) or at least 1 ms per period."""
    return 0 if milli == 0 else max(MIN_QUOTA, milli * period // 1000)


def linux_resources(container: Mapping[str, Any]) -> pb.LinuxContainerResources:
    """cpu request -> shares, cpu limit -> CFS quota, memory limit -> bytes (kubelet's)."""
    res = container.get("resources") or {}
    requests, limits = res.get("requests") or {}, res.get("limits") or {}
    shares = milli_to_shares(milli_of(requests.get("cpu", limits.get("cpu"))))
    quota = milli_to_quota(milli_of(limits.get("cpu")))
    return pb.LinuxContainerResources(
        cpu_shares=shares, cpu_quota=quota, cpu_period=CPU_PERIOD if quota else 0,
        memory_limit_in_bytes=bytes_of(limits.get("memory")))


def security_context(pod: Mapping[str, Any], container: Mapping[str, Any],
                     ) -> pb.LinuxContainerSecurityContext:
    """The container's securityContext over the pod's (runAsUser, runAsGroup)."""
    pod_sc = (pod.get("spec") or {}).get("securityContext") or {}
    sc = {**{k: v for k, v in pod_sc.items() if k in ("runAsUser", "runAsGroup")},
          **(container.get("securityContext") or {})}
    caps = sc.get("capabilities") or {}
    out = pb.LinuxContainerSecurityContext(
        privileged=bool(sc.get("privileged")),
        readonly_rootfs=bool(sc.get("readOnlyRootFilesystem")),
        no_new_privs=sc.get("allowPrivilegeEscalation") is False,
        capabilities=pb.Capability(add_capabilities=list(caps.get("add") or []),
                                   drop_capabilities=list(caps.get("drop") or [])),
        supplemental_groups=[int(g) for g in pod_sc.get("supplementalGroups") or []])
    if sc.get("runAsUser") is not None:
        out.run_as_user.value = int(sc["runAsUser"])
    if sc.get("runAsGroup") is not None:
        out.run_as_group.value = int(sc["runAsGroup"])
    return out


def container_config(pod: Mapping[str, Any], container: Mapping[str, Any], *, attempt: int,
                     env: Sequence[tuple[str, str]] = (), mounts: Sequence[Mount] = (),
                     init: bool = False) -> pb.ContainerConfig:
    name = str(container["name"])
    working_dir = str(container.get("workingDir") or "")
    if working_dir and not working_dir.startswith("/"):
        raise ConfigError(f"container {name}: workingDir: must be an absolute path, got "
                          f"{working_dir!r}")
    labels = {**pod_labels(pod), CONTAINER_NAME: name}
    if init:
        labels[INIT_LABEL] = "true"
    return pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name=name, attempt=attempt),
        image=pb.ImageSpec(image=str(container["image"])),
        command=[str(a) for a in container.get("command") or []],
        args=[str(a) for a in container.get("args") or []],
        working_dir=working_dir,
        envs=[pb.KeyValue(key=k, value=v) for k, v in env],
        mounts=[pb.Mount(container_path=m.container_path, host_path=m.host_path,
                         readonly=m.readonly) for m in mounts],
        labels=labels, log_path=container_log_path(name, attempt),
        stdin=bool(container.get("stdin")), stdin_once=bool(container.get("stdinOnce")),
        tty=bool(container.get("tty")),
        linux=pb.LinuxContainerConfig(resources=linux_resources(container),
                                      security_context=security_context(pod, container)))


def plain_env(container: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Environment variables with literal values; valueFrom needs the env hook."""
    out = []
    for e in container.get("env") or []:
        if e.get("valueFrom") is not None:
            raise ConfigError(f"container {container['name']}: env {e['name']}: valueFrom "
                              "is not supported by this agent build")
        out.append((str(e["name"]), str(e.get("value") or "")))
    return out


# ---- observing the runtime ------------------------------------------------------------

_STATES = {pb.CONTAINER_CREATED: "created", pb.CONTAINER_RUNNING: "running",
           pb.CONTAINER_EXITED: "exited", pb.CONTAINER_UNKNOWN: "unknown"}


class Runtime:
    """The CRI calls the agent makes, with a cache of container statuses and sandbox IPs so
    that a relist costs two list calls plus one status call per container that changed
    state and one per sandbox that became ready.

    A relist and a worker that just made a sandbox or started a container share the cache:
    whichever asks first, the other reuses the answer (a relist during a burst of pod
    starts otherwise asks twice for each). A created container costs no status call: the
    list entry holds all it has (no start, no exit)."""

    def __init__(self, cri: cric.CRIClient) -> None:
        self.cri = cri
        self._cache: dict[str, tuple[int, ContainerInfo]] = {}  # id -> (state, info)
        self._ips: dict[str, tuple[str, int]] = {}  # ready sandbox id -> (IP, created_at)

    async def observe(self) -> dict[str, PodRuntime]:
        sandboxes = await self.cri.list_pod_sandbox()
        containers = await self.cri.list_containers()
        pods: dict[str, PodRuntime] = {}
        live: set[str] = set()
        for sb in sandboxes:
            uid = sb.labels.get(POD_UID)
            if not uid:
                continue
            pr = pods.setdefault(uid, PodRuntime(uid, sb.metadata.namespace, sb.metadata.name))
            ip = ""
            if sb.state == pb.SANDBOX_READY:
                live.add(sb.id)
                known = self._ips.get(sb.id)
                if known is None:  # a sandbox's IP never changes: asked once per sandbox
                    try:
                        ip = (await self.cri.pod_sandbox_status(sb.id)).status.network.ip
                    except cric.NotFound:
                        continue
                    self._ips[sb.id] = (ip, sb.created_at)
                else:
                    ip = known[0]
            pr.sandboxes.append(SandboxInfo(sb.id, sb.metadata.attempt,
                                            sb.state == pb.SANDBOX_READY, ip, sb.created_at))
        seen = set()
        for c in containers:
            uid = c.labels.get(POD_UID)
            if not uid:
                continue
            seen.add(c.id)
            cached = self._cache.get(c.id)
            if cached is None and c.state == pb.CONTAINER_CREATED:
                cached = self._cache[c.id] = (c.state, _created_info(c))
            elif cached is None or cached[0] != c.state:
                try:
                    st = (await self.cri.container_status(c.id)).status
                except cric.NotFound:
                    continue
                info = _container_info(c.id, c.pod_sandbox_id, st,
                                       init=c.labels.get(INIT_LABEL) == "true")
                self._cache[c.id] = (st.state, info)
                cached = self._cache[c.id]
            pods.setdefault(uid, PodRuntime(uid, c.labels.get(POD_NAMESPACE, ""),
                                            c.labels.get(POD_NAME, ""))).containers.append(
                cached[1])
        for cid in set(self._cache) - seen:
            del self._cache[cid]
        for sid in set(self._ips) - live:
            del self._ips[sid]
        return pods

    async def sandbox(self, sandbox_id: str, attempt: int) -> SandboxInfo | None:
        """One sandbox, by one PodSandboxStatus call (None if it is gone): what a worker
        that just ran it needs, without a relist (two list calls over every pod of the
        node); its IP is kept for the next relist, or taken from a relist that asked."""
        known = self._ips.get(sandbox_id)
        if known is not None:
            return SandboxInfo(sandbox_id, attempt, True, known[0], known[1])
        try:
            st = (await self.cri.pod_sandbox_status(sandbox_id)).status
        except cric.NotFound:
            return None
        ready = st.state == pb.SANDBOX_READY
        if ready:
            self._ips[sandbox_id] = (st.network.ip, st.created_at)
        return SandboxInfo(sandbox_id, attempt, ready, st.network.ip if ready else "",
                           st.created_at)

    async def container(self, container_id: str, sandbox_id: str) -> ContainerInfo | None:
        """One container, by one ContainerStatus call (None if it is gone), as sandbox()
        for a container the worker just started; the next relist reuses the answer, and a
        relist that saw it running already answered it."""
        cached = self._cache.get(container_id)
        if cached is not None and cached[0] == pb.CONTAINER_RUNNING:
            return cached[1]
        try:
            st = (await self.cri.container_status(container_id)).status
        except cric.NotFound:
            return None
        info = _container_info(container_id, sandbox_id, st,
                               init=st.labels.get(INIT_LABEL) == "true")
        self._cache[container_id] = (st.state, info)
        return info

    async def with_made(self, rt: PodRuntime, made: Sequence[tuple[str, str, str]]
                        ) -> PodRuntime | None:
        """RT plus MADE ((kind "sandbox" or "container", id, sandbox id): what a worker
        just ran, the pod's first sandbox or containers new to it) as one status call
        each says; None if one is gone."""
        sandboxes, containers = list(rt.sandboxes), list(rt.containers)
        for kind, ident, sandbox_id in made:
            if kind == "sandbox":
                sb = await self.sandbox(ident, attempt=0)
                if sb is None:
                    return None
                sandboxes.append(sb)
            else:
                c = await self.container(ident, sandbox_id)
                if c is None:
                    return None
                containers.append(c)
        return PodRuntime(rt.uid, rt.namespace, rt.name, sandboxes=sandboxes,
                          containers=containers)

    def forget(self, container_id: str) -> None:
        self._cache.pop(container_id, None)


def _created_info(c: pb.Container) -> ContainerInfo:
    """A created container from its list entry: not started, not exited."""
    return ContainerInfo(
        id=c.id, name=c.metadata.name, attempt=c.metadata.attempt, state="created",
        sandbox_id=c.pod_sandbox_id, init=c.labels.get(INIT_LABEL) == "true",
        created_at=c.created_at, image=c.image.image, image_ref=c.image_ref)


def _container_info(cid: str, sandbox_id: str, st: pb.ContainerStatus, *,
                    init: bool) -> ContainerInfo:
    return ContainerInfo(
        id=cid, name=st.metadata.name, attempt=st.metadata.attempt,
        state=_STATES.get(st.state, "unknown"), sandbox_id=sandbox_id, init=init,
        created_at=st.created_at, started_at=st.started_at, finished_at=st.finished_at,
        exit_code=st.exit_code, reason=st.reason, message=st.message,
        image=st.image.image, image_ref=st.image_ref)
