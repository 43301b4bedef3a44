"""Resource usage of this node's containers and of the node: what `top` shows.

    Inventory.refresh(running)     the running containers of bound pods -> their cgroup
        │                          (pid from CRI ContainerStatus, then /proc/<pid>/cgroup),
        │                          cached by container ID; also the cAdvisor collector's
        │                          ContainerSource (containers() is a snapshot)
        ▼
    Sampler.sample(infos)          every SAMPLE_PERIOD (and on demand): cgroups.py reads
        │                          cpu usage and memory working set; /proc/stat and
        │                          /proc/meminfo for the node; keeps the last two samples
        ▼
    usage(...)                     pure: CPU in nanocores averaged over the two samples'
                                   window, the newest working set (usage - inactive_file,
                                   cAdvisor's definition)
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from agent.metrics.cgroups import NS_PER_SECOND, CgroupReader
from agent.metrics.machine import ContainerInfo

NODE = ""  # the node's key among the sampled series
SAMPLE_PERIOD = 10.0  # seconds, as kubelet's housekeeping of cAdvisor
MIN_WINDOW = 0.5  # seconds: the wait between two samples taken for a caller with no window
# /proc/stat cpu fields counted as busy: user nice system idle iowait irq softirq steal
# (guest and guest_nice are already in user and nice)
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)


@dataclass(frozen=True)
class Sample:
    at_ns: int  # wall clock of the reading
    cpu_ns: int  # cumulative CPU time
    memory_working_set: int


def cpu_nano_cores(prev: Sample, cur: Sample) -> int:
    """Average CPU use between two samples, in billionths of a core (0 for no window or a
    counter that went backwards, as a restarted container's does)."""
    elapsed = cur.at_ns - prev.at_ns
    used = cur.cpu_ns - prev.cpu_ns
    if elapsed <= 0 or used < 0:
        return 0
    return used * NS_PER_SECOND // elapsed


def parse_proc_cgroup(text: str) -> str | None:
    """A process's cgroup path from /proc/<pid>/cgroup: the memory controller's line on
    v1 / hybrid hosts (what CgroupReader reads there), else the cgroup2 line "0::/path"."""
    unified = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if "memory" in parts[1].split(","):
            return parts[2]
        if parts[0] == "0" and parts[1] == "":
            unified = parts[2]
    return unified


def parse_proc_stat_cpu(text: str, *, clock_ticks: int) -> int:
    """Busy CPU time of the whole machine from the "cpu" line of /proc/stat, in ns."""
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            values = [int(v) for v in fields[1:]]
            ticks = sum(values[i] for i in _BUSY_FIELDS if i < len(values))
            return ticks * NS_PER_SECOND // clock_ticks
    return 0


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo in bytes ("MemTotal: 16 kB" -> {"MemTotal": 16384})."""
    out = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        parts = rest.split()
        if not sep or not parts or not parts[0].isdigit():
            continue
        out[name.strip()] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return out


def node_memory_working_set(meminfo: Mapping[str, int]) -> int:
    """The root cgroup's usage (MemTotal - MemFree, as runc reads it for the root) minus
    inactive file pages: the node's working set as kubelet reports it."""
    usage = meminfo.get("MemTotal", 0) - meminfo.get("MemFree", 0)
    return max(usage - meminfo.get("Inactive(file)", 0), 0)


# ---- the running containers -------------------------------------------------------------


@dataclass(frozen=True)
class Running:
    """A running container of a pod bound to this node, as the relist shows it."""

    namespace: str
    pod: str
    container: str
    container_id: str
    image: str = ""
    started_at_ns: int = 0
    pod_cgroup: str = ""  # the pod's cgroup (qos.py), the container's parent


PidOf = Callable[[str], Awaitable[int]]


class Inventory:
    """The running containers with their cgroup paths. containers() (the cAdvisor
    collector's source) returns a snapshot, safe to call from the scrape's thread."""

    def __init__(self, *, pid_of: PidOf, cgroup_parent: str = "",
                 proc_root: str = "/proc") -> None:
        self.pid_of = pid_of
        self.cgroup_parent = cgroup_parent
        self.proc_root = proc_root
        self._known: dict[str, ContainerInfo] = {}
        self._snapshot: list[ContainerInfo] = []

    def cgroup_of(self, container_id: str, pid: int, *, pod_cgroup: str = "") -> str:
        """From /proc/PID/cgroup; without it, where the runtime puts the container: below
        its pod's cgroup (or the node's parent for a pod made without one)."""
        if pid > 0:
            try:
                with open(os.path.join(self.proc_root, str(pid), "cgroup")) as f:
                    path = parse_proc_cgroup(f.read())
                if path:
                    return path
            except OSError:
                pass
        return f"{(pod_cgroup or self.cgroup_parent).rstrip('/')}/{container_id}"

    async def refresh(self, running: Iterable[Running]) -> None:
        known: dict[str, ContainerInfo] = {}
        snapshot: list[ContainerInfo] = []
        pods_seen: set[tuple[str, str]] = set()
        for r in sorted(running, key=lambda r: (r.namespace, r.pod, r.container)):
            info = self._known.get(r.container_id)
            remember = True
            if info is None:
                try:
                    pid = await self.pid_of(r.container_id)
                except Exception:  # gone meanwhile, or the runtime failed: ask again later
                    pid, remember = 0, False
                info = ContainerInfo(
                    container_id=r.container_id, container=r.container, pod=r.pod,
                    namespace=r.namespace, image=r.image,
                    cgroup_path=self.cgroup_of(r.container_id, pid,
                                               pod_cgroup=r.pod_cgroup), pid=pid,
                    started_at=r.started_at_ns / NS_PER_SECOND)
            first = (r.namespace, r.pod) not in pods_seen
            pods_seen.add((r.namespace, r.pod))
            if info.network != first:  # one entry per pod reports the pod's network
                info = replace(info, network=first)
            if remember:
                known[r.container_id] = info
            snapshot.append(info)
        self._known = known
        self._snapshot = snapshot

    def containers(self) -> list[ContainerInfo]:
        return list(self._snapshot)


# ---- samples ----------------------------------------------------------------------------


class Sampler:
    """The last two samples of each container (by ID) and of the node (key NODE)."""

    def __init__(self, reader: CgroupReader, *, proc_root: str = "/proc",
                 clock: Callable[[], int] = time.time_ns,
                 clock_ticks: int | None = None) -> None:
        self.reader = reader
        self.proc_root = proc_root
        self.clock = clock
        self.clock_ticks = clock_ticks or os.sysconf("SC_CLK_TCK")
        self.series: dict[str, tuple[Sample, ...]] = {}

    def _node(self, at_ns: int) -> Sample | None:
        try:
            with open(os.path.join(self.proc_root, "stat")) as f:
                cpu = parse_proc_stat_cpu(f.read(), clock_ticks=self.clock_ticks)
            with open(os.path.join(self.proc_root, "meminfo")) as f:
                memory = node_memory_working_set(parse_meminfo(f.read()))
        except OSError:
            return None
        return Sample(at_ns, cpu, memory)

    def record(self, key: str, sample: Sample) -> None:
        self.series[key] = (*self.series.get(key, ())[-1:], sample)

    def sample(self, infos: Sequence[ContainerInfo]) -> None:
        """Read every container's cgroup and the node (blocking: reads files)."""
        at = self.clock()
        wanted = {NODE} | {i.container_id for i in infos}
        for key in set(self.series) - wanted:
            del self.series[key]
        node = self._node(at)
        if node is not None:
            self.record(NODE, node)
        for info in infos:
            stats = self.reader.read(info.cgroup_path)
            if stats is None:
                self.series.pop(info.container_id, None)
                continue
            self.record(info.container_id, Sample(
                at, stats.cpu.usage_ns if stats.cpu else 0,
                stats.memory.working_set if stats.memory else 0))

    def window(self, key: str) -> tuple[Sample, Sample] | None:
        s = self.series.get(key, ())
        return (s[0], s[1]) if len(s) == 2 else None

    def has_windows(self, keys: Iterable[str]) -> bool:
        return all(self.window(k) is not None for k in keys)


@dataclass(frozen=True)
class Usage:
    cpu_nano_cores: int
    memory_working_set: int


def usage(sampler: Sampler, key: str) -> Usage | None:
    """A series' CPU rate over its window and its newest working set; None: no window."""
    w = sampler.window(key)
    if w is None:
        return None
    return Usage(cpu_nano_cores(*w), w[1].memory_working_set)
