"""The node's own object: registration and status.

    facts = probe_host(...)            /proc/cpuinfo, /proc/meminfo, the agent's cgroup
                                       limits, uname, os-release, machine-id, boot_id
    node_object(name, facts)           metadata (labels) + spec
    node_status(facts, ready, old,     capacity, allocatable, addresses, nodeInfo,
                pressure, reserve)     conditions: Ready + the pressures
    parse_reserved(flag, text)         --system-reserved / --kube-reserved: "cpu=500m,
                                       memory=1Gi,pid=1000" -> Reserved (ReservedError
                                       names the flag and the bad part)
    Reservation(system, kube, ...)     kubelet's Node Allocatable:
        .allocatable(facts)            status: capacity - system - kube - the hard
                                       eviction threshold (memory.available 100Mi)
        .check(facts)                  a reservation above capacity: ReservedError
        .pods_limits(facts)            the pods' parent cgroup (qos.ensure_node_cgroup):
                                       capacity - system - kube with "pods" enforced
                                       (no eviction threshold), else capacity
    enforce_reservation(reserve, facts, cgroup_parent=)   at start: check, then enforce
    read_pressure(fs_path)             kubelet's default hard-eviction signals, read now:
                                       MemoryPressure  memory.available < 100Mi
                                                       (MemFree + Inactive(file), as the
                                                       working set leaves it)
                                       DiskPressure    nodefs.available < 10% or
                                                       nodefs.inodesFree < 5% (FS_PATH's
                                                       filesystem: the agent's root)
                                       PIDPressure     kubelet sets no default threshold:
                                                       False (nothing is evicted either)
    NodeRegistration.register()        get-or-create the Node, then patch nodes/status
    NodeRegistration.run()             status again every 30 s and when readiness changes
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from agent import cgroupfs, qos
from agent.lease import micro_time
from agent.stats import parse_meminfo
from api import errors
from api import quantity as Qty

log = logging.getLogger("corral.agent.node")
MAX_PODS = 110
MERGE_PATCH = "application/merge-patch+json"
AGENT_VERSION = "corral-agent/0.1"
T = TypeVar("T")
ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
        "s390x": "s390x", "riscv64": "riscv64"}


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def cpu_count(cpuinfo: str, cpu_max: str = "") -> int:
    """Processors in /proc/cpuinfo, lowered by a cgroup v2 cpu.max quota (ceil)."""
    n = sum(1 for line in cpuinfo.splitlines() if line.split(":")[0].strip() == "processor")
    n = n or os.cpu_count() or 1
    parts = cpu_max.split()
    if len(parts) == 2 and parts[0] != "max":
        quota, period = int(parts[0]), int(parts[1]) or 100000
        n = min(n, max(1, -(-quota // period)))
    return n


def memory_bytes(meminfo: str, memory_max: str = "") -> int:
    """MemTotal of /proc/meminfo, lowered by a cgroup memory limit."""
    total = 0
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            total = int(line.split()[1]) * 1024
    limit = memory_max.strip()
    if limit.isdigit() and 0 < int(limit) < total:
        total = int(limit)
    return total


def own_cgroup_file(name: str) -> str:
    """NAME of the cgroup (v2) the agent runs in, or "" (v1 hosts, or no such file)."""
    for line in _read("/proc/self/cgroup").splitlines():
        if line.startswith("0::"):
            return _read(os.path.join("/sys/fs/cgroup", line[3:].lstrip("/"), name))
    return ""


def os_image(os_release: str) -> str:
    for line in os_release.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return "Linux"


def local_ip_towards(server: str) -> str:
    """The address this host uses to reach SERVER (host:port): the node's InternalIP."""
    host = server.rsplit(":", 1)[0].strip("[]") or "127.0.0.1"
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((host, 9))  # UDP: no packet is sent
            return str(s.getsockname()[0])
    except OSError:
        return "127.0.0.1"


@dataclass(frozen=True)
class HostFacts:
    cpus: int
    memory: int
    hostname: str
    internal_ip: str
    kernel: str
    os_image: str
    arch: str
    machine_id: str
    boot_id: str
    runtime_version: str  # "<name>://<version>"
    agent_port: int = 0
    pids: int = 0  # kubelet's pid capacity: min(kernel.pid_max, kernel.threads-max)
    # (page size, pages the kernel holds) for each size a hugetlb controller limits
    hugepages: tuple[tuple[int, int], ...] = ()


def hugepages_held(sizes: tuple[int, ...], *, root: str = cgroupfs.HUGEPAGES,
                   ) -> tuple[tuple[int, int], ...]:
    """(size, nr_hugepages) of each of SIZES (bytes), read under ROOT (kubelet's
    hugepages-<size> capacity: the pages the kernel has set aside)."""
    out = []
    for size in sizes:
        text = _read(os.path.join(root, f"hugepages-{size // 1024}kB", "nr_hugepages"))
        out.append((size, int(text) if text.strip().isdigit() else 0))
    return tuple(out)


def hugepage_resources(facts: HostFacts) -> dict[str, str]:
    """The node's hugepages-<size> resources ("hugepages-2Mi": "512Mi"), as kubelet names
    them: every size the agent can limit, 0 included."""
    def binary(n: int) -> str:  # 2097152 -> "2Mi", as Kubernetes prints it
        from fractions import Fraction  # (only with huge pages: api.quantity's lazy import)
        return Qty.canonical(Fraction(n), "binary")
    return {f"hugepages-{binary(size)}": binary(size * n) for size, n in facts.hugepages}


def pid_capacity(pid_max: str, threads_max: str) -> int:
    """kubelet's pid capacity from /proc/sys/kernel/{pid_max,threads-max}; 0: unknown."""
    known = [int(v) for v in (pid_max.strip(), threads_max.strip()) if v.isdigit()]
    return min(known, default=0)


def probe_host(*, internal_ip: str, runtime_version: str, agent_port: int = 0) -> HostFacts:
    uname = platform.uname()
    return HostFacts(
        pids=pid_capacity(_read("/proc/sys/kernel/pid_max"),
                          _read("/proc/sys/kernel/threads-max")),
        cpus=cpu_count(_read("/proc/cpuinfo"), own_cgroup_file("cpu.max")),
        memory=memory_bytes(_read("/proc/meminfo"), own_cgroup_file("memory.max")),
        hostname=socket.gethostname(), internal_ip=internal_ip, kernel=uname.release,
        os_image=os_image(_read("/etc/os-release")),
        arch=ARCH.get(uname.machine, uname.machine),
        machine_id=_read("/etc/machine-id").strip(),
        boot_id=_read("/proc/sys/kernel/random/boot_id").strip(),
        runtime_version=runtime_version, agent_port=agent_port,
        hugepages=hugepages_held(_limited_page_sizes()))


def _limited_page_sizes() -> tuple[int, ...]:
    """The huge page sizes a hugetlb controller limits here (none without cgroups)."""
    try:
        return qos.host_cgroupfs().page_sizes
    except qos.CgroupError:
        return ()


def node_labels(name: str, facts: HostFacts) -> dict[str, str]:
    return {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
            "kubernetes.io/arch": facts.arch}


def node_object(name: str, facts: HostFacts) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": node_labels(name, facts)}, "spec": {}}


def _condition(kind: str, ok: bool, reason: str, message: str, now: str,
               old: dict[str, dict[str, Any]]) -> dict[str, Any]:
    status = "True" if ok else "False"
    prev = old.get(kind) or {}
    since = prev.get("lastTransitionTime") if prev.get("status") == status else None
    return {"type": kind, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": since or now}


@dataclass(frozen=True)
class Pressure:
    memory: str = ""  # why there is memory pressure ("" none)
    disk: str = ""


MEMORY_AVAILABLE_MIN = 100 * 1024 * 1024  # kubelet's memory.available<100Mi
NODEFS_AVAILABLE_MIN = 0.10  # nodefs.available<10%
NODEFS_INODES_FREE_MIN = 0.05  # nodefs.inodesFree<5%


def memory_available(meminfo: str) -> int:
    """Bytes available as kubelet counts them: capacity minus the working set (usage minus
    inactive file pages), from /proc/meminfo: MemFree + Inactive(file)."""
    fields = parse_meminfo(meminfo)
    return fields.get("MemFree", 0) + fields.get("Inactive(file)", 0)


def read_pressure(fs_path: str, *, meminfo: str | None = None,
                  statvfs: os.statvfs_result | None = None) -> Pressure:
    """The node's pressures now (MEMINFO and STATVFS stand in for the files in tests)."""
    available = memory_available(_read("/proc/meminfo") if meminfo is None else meminfo)
    memory = (f"memory.available {available // (1024 * 1024)}Mi is below 100Mi"
              if available < MEMORY_AVAILABLE_MIN else "")
    disk = ""
    try:
        st = os.statvfs(fs_path) if statvfs is None else statvfs
    except OSError:
        st = None
    if st is not None and st.f_blocks:
        free = st.f_bavail / st.f_blocks
        if free < NODEFS_AVAILABLE_MIN:
            disk = f"nodefs.available {free:.1%} of {fs_path}'s filesystem is below 10%"
        elif st.f_files and st.f_favail / st.f_files < NODEFS_INODES_FREE_MIN:
            disk = (f"nodefs.inodesFree {st.f_favail / st.f_files:.1%} of {fs_path}'s "
                    "filesystem is below 5%")
    return Pressure(memory=memory, disk=disk)


# ---- reserved resources: kubelet's Node Allocatable ------------------------------------

RESERVABLE = ("cpu", "memory", "pid")
ENFORCEABLE = ("pods", "none")


class ReservedError(ValueError):
    """A bad --system-reserved / --kube-reserved / --enforce-node-allocatable, or a
    reservation above the node's capacity; the message names the flag and the part."""


@dataclass(frozen=True)
class Reserved:
    """Amounts kept back from pods: cpu in millicores, memory in bytes, pid in processes."""

    cpu: int = 0
    memory: int = 0
    pid: int = 0


def parse_reserved(flag: str, text: str) -> Reserved:
    """FLAG's value "cpu=500m,memory=1Gi,pid=1000" (Kubernetes quantities; "" none)."""
    got: dict[str, int] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, eq, value = (s.strip() for s in item.partition("="))
        if not eq or not key:
            raise ReservedError(f"{flag}: {item!r}: want resource=quantity")
        if key not in RESERVABLE:
            raise ReservedError(f"{flag}: {key}: not a reservable resource (want "
                                f"{', '.join(RESERVABLE)})")
        if key in got:
            raise ReservedError(f"{flag}: {key}: given twice")
        try:
            q = Qty.parse(value)
        except Qty.QuantityError:
            raise ReservedError(f'{flag}: {key}: invalid quantity "{value}"') from None
        if q.amount < 0:
            raise ReservedError(f'{flag}: {key}: must be >= 0, got "{value}"')
        got[key] = q.milli_value() if key == "cpu" else q.value()
    return Reserved(**got)


def parse_enforced(text: str) -> frozenset[str]:
    """--enforce-node-allocatable: "pods" or "none" ("" as "none")."""
    keys = frozenset(k.strip() for k in text.split(",") if k.strip())
    for k in sorted(keys):
        if k not in ENFORCEABLE:
            raise ReservedError(f"--enforce-node-allocatable: {k}: not supported (want "
                                "pods or none; corral-agent has no --system-reserved-cgroup)")
    if "none" in keys and len(keys) > 1:
        raise ReservedError("--enforce-node-allocatable: none: cannot be combined with pods")
    return keys - {"none"}


@dataclass(frozen=True)
class PodsLimits:
    """The pods' parent cgroup: cpu in millicores, memory in bytes, pids (0: no limit)."""

    cpu: int
    memory: int
    pids: int = 0


@dataclass(frozen=True)
class Reservation:
    """What the node keeps for itself (kubelet's --system-reserved, --kube-reserved and
    hard eviction threshold) and whether the pods' parent cgroup is held to the rest."""

    system: Reserved = Reserved()
    kube: Reserved = Reserved()
    eviction_memory: int = MEMORY_AVAILABLE_MIN
    enforce: frozenset[str] = frozenset({"pods"})

    def reserved(self, r: str, *, eviction: bool = True) -> int:
        extra = self.eviction_memory if r == "memory" and eviction else 0
        return int(getattr(self.system, r)) + int(getattr(self.kube, r)) + extra

    def check(self, facts: HostFacts) -> None:
        """kubelet's validateNodeAllocatable: no resource reserves more than capacity."""
        capacity = {"cpu": facts.cpus * 1000, "memory": facts.memory, "pid": facts.pids}
        for r, have in capacity.items():
            want = self.reserved(r)
            if want > have and (r != "pid" or have):
                flags = [f for f, res in (("--system-reserved", self.system),
                                          ("--kube-reserved", self.kube)) if getattr(res, r)]
                with_eviction = " (with the 100Mi hard eviction threshold)" \
                    if r == "memory" else ""
                raise ReservedError(
                    f"{', '.join(flags) or 'reserved'}: {r}: reserving {_amount(r, want)}"
                    f"{with_eviction} exceeds the node's capacity {_amount(r, have)}")

    def allocatable(self, facts: HostFacts) -> dict[str, str]:
        """Node status allocatable: capacity less reservations and eviction, at least 0;
        memory less the huge pages the kernel holds, which are allocatable as
        hugepages-<size> (kubelet's)."""
        cpu = max(0, facts.cpus * 1000 - self.reserved("cpu"))
        huge = sum(size * n for size, n in facts.hugepages)
        memory = max(0, (facts.memory // 1024) * 1024 - self.reserved("memory") - huge)
        return {"cpu": _amount("cpu", cpu), "memory": _amount("memory", memory),
                "pods": str(MAX_PODS), **hugepage_resources(facts)}

    def pods_limits(self, facts: HostFacts) -> PodsLimits:
        """The pods' parent cgroup: allocatable without the eviction threshold when
        "pods" is enforced, the capacity otherwise (kubelet sets it either way: the
        kernel's default cpu weight would starve the pods); pids.max likewise, from the
        host's pid capacity (0, "max", when it is unknown)."""
        if "pods" not in self.enforce:
            return PodsLimits(cpu=facts.cpus * 1000, memory=facts.memory, pids=facts.pids)
        return PodsLimits(
            cpu=max(0, facts.cpus * 1000 - self.reserved("cpu")),
            memory=max(0, facts.memory - self.reserved("memory", eviction=False)),
            pids=max(1, facts.pids - self.reserved("pid")) if facts.pids else 0)


def enforce_reservation(reserve: Reservation, facts: HostFacts, *, cgroup_parent: str,
                        fs: qos.Cgroupfs | None = None) -> PodsLimits:
    """At start: check RESERVE against the capacity, then hold the pods' parent cgroup
    to what it leaves them (idempotent); ReservedError names the flag or the cgroup."""
    reserve.check(facts)
    limits = reserve.pods_limits(facts)
    try:
        qos.ensure_node_cgroup(cgroup_parent, cpu_milli=limits.cpu, memory=limits.memory,
                               pids=limits.pids, fs=fs)
    except qos.CgroupError as e:
        raise ReservedError(str(e)) from None  # (it names --cgroup-parent)
    return limits


def flag_type(flag: str, parse: Callable[[str], T]) -> Callable[[str], T]:
    """PARSE as an argparse type: its ReservedError becomes argparse's message
    ("argument FLAG: memory: invalid quantity ...")."""
    def of(text: str) -> T:
        try:
            return parse(text)
        except ReservedError as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix(f"{flag}: ")) from None
    return of


def reserved_flag(flag: str) -> Callable[[str], Reserved]:
    return flag_type(flag, lambda text: parse_reserved(flag, text))


def parse_pod_max_pids(text: str) -> int:
    """--pod-max-pids: -1 (or 0): no limit; N > 0: every pod cgroup's pids.max."""
    try:
        n = int(text)
    except ValueError:
        raise ReservedError(f"--pod-max-pids: want an integer, got {text!r}") from None
    if n < -1:
        raise ReservedError(f"--pod-max-pids: must be -1 (unlimited) or more, got {n}")
    return n


def _amount(resource: str, n: int) -> str:
    """N as Kubernetes prints it: cpu "1500m" / "2", memory "7340032Ki" / bytes."""
    if resource == "cpu":
        return str(n // 1000) if n % 1000 == 0 else f"{n}m"
    if resource == "memory":
        return f"{n // 1024}Ki" if n % 1024 == 0 else str(n)
    return str(n)


def node_status(facts: HostFacts, *, ready: bool, why: str = "",
                old: dict[str, Any] | None = None,
                pressure: Pressure | None = None,
                reserve: Reservation | None = None) -> dict[str, Any]:
    now = micro_time()[:19] + "Z"
    before = {c.get("type", ""): c for c in (old or {}).get("conditions") or []}
    resources = {"cpu": str(facts.cpus), "memory": f"{facts.memory // 1024}Ki",
                 "pods": str(MAX_PODS), **hugepage_resources(facts)}
    p = pressure or Pressure()
    conditions = [
        _condition("MemoryPressure", bool(p.memory),
                   "KubeletHasInsufficientMemory" if p.memory else
                   "KubeletHasSufficientMemory",
                   p.memory or "the agent has sufficient memory available", now, before),
        _condition("DiskPressure", bool(p.disk),
                   "KubeletHasDiskPressure" if p.disk else "KubeletHasNoDiskPressure",
                   p.disk or "the agent has no disk pressure", now, before),
        _condition("PIDPressure", False, "KubeletHasSufficientPID",
                   "the agent has sufficient PID available", now, before),
        _condition("Ready", ready, "KubeletReady" if ready else "KubeletNotReady",
                   "corral-agent is posting ready status" if ready else why, now, before),
    ]
    return {
        "capacity": dict(resources),
        "allocatable": (reserve or Reservation()).allocatable(facts),
        "conditions": conditions,
        "addresses": [{"type": "InternalIP", "address": facts.internal_ip},
                      {"type": "Hostname", "address": facts.hostname}],
        "nodeInfo": {"machineID": facts.machine_id, "systemUUID": facts.machine_id,
                     "bootID": facts.boot_id, "kernelVersion": facts.kernel,
                     "osImage": facts.os_image,
                     "containerRuntimeVersion": facts.runtime_version,
                     "kubeletVersion": AGENT_VERSION, "kubeProxyVersion": "",
                     "operatingSystem": "linux", "architecture": facts.arch},
        "daemonEndpoints": {"kubeletEndpoint": {"Port": facts.agent_port}},
    }


class NodeAPI(Protocol):
    async def get(self, resource: str, name: str, *, namespace: str = "",
                  subresource: str = "") -> dict[str, Any]: ...

    async def create(self, resource: str, obj: dict[str, Any], *, namespace: str = "",
                     **kw: Any) -> dict[str, Any]: ...

    async def patch(self, resource: str, name: str, patch: bytes, *, patch_type: str,
                    namespace: str = "", **kw: Any) -> dict[str, Any]: ...


class Readiness(Protocol):
    async def __call__(self) -> tuple[bool, str]: ...


class NodeRegistration:
    def __init__(self, api: NodeAPI, name: str, facts: HostFacts,
                 readiness: Readiness, *, fs_path: str = "/",
                 reserve: Reservation | None = None) -> None:
        self.api = api
        self.reserve = reserve or Reservation()  # allocatable: capacity less reservations
        self.name = name
        self.facts = facts
        self.readiness = readiness
        self.fs_path = fs_path  # DiskPressure: this path's filesystem (the agent's root)
        self.node: dict[str, Any] = {}

    async def register(self) -> dict[str, Any]:
        """Get or create the Node (labels merged in), then write its status."""
        try:
            node = await self.api.get("nodes", self.name)
            labels = (node.get("metadata") or {}).get("labels") or {}
            want = node_labels(self.name, self.facts)
            if any(labels.get(k) != v for k, v in want.items()):
                node = await self.api.patch("nodes", self.name, json.dumps(
                    {"metadata": {"labels": want}}).encode(), patch_type=MERGE_PATCH)
        except errors.APIError as err:
            if err.reason is not errors.Reason.NOT_FOUND:
                raise
            node = await self.api.create("nodes", node_object(self.name, self.facts))
            log.info("node %s: registered", self.name)
        self.node = node
        return await self.update_status()

    async def update_status(self) -> dict[str, Any]:
        ready, why = await self.readiness()
        status = node_status(self.facts, ready=ready, why=why,
                             old=self.node.get("status") or {},
                             pressure=read_pressure(self.fs_path),
                             reserve=self.reserve)
        self.node = await self.api.patch("nodes", self.name, json.dumps(
            {"status": status}).encode(), patch_type=MERGE_PATCH, subresource="status")
        return self.node

    async def run(self, *, period: float = 30.0) -> None:
        last: tuple[bool, str] | None = None
        waited = 0.0
        while True:
            await asyncio.sleep(2.0)
            waited += 2.0
            try:
                now = await self.readiness()
                if now != last or waited >= period:
                    last, waited = now, 0.0
                    await self.update_status()
            except errors.APIError as err:
                log.warning("node %s: status update failed: %s", self.name, err)
