"""One container's resource usage and limits, read from its cgroup as cAdvisor reads them.

    detect_layout(root)        which hierarchies exist under root: v2 (cgroup2 at the root),
                               v1 (a directory per controller), hybrid (v1 + root/unified)
    CgroupReader(root).read(cgroup_path) -> ContainerStats | None (None: the cgroup is gone)
        v1 / hybrid: memory.*, cpuacct.*, cpu.*, blkio.*   v2: memory.*, cpu.*, io.stat
    parse_* / v1_* / v2_*      pure functions from file text to numbers (unit-tested with
                               the kernels' formats, no cgroup needed)
    read_interfaces(pid)       /proc/<pid>/net/dev: the pod's network namespace

Hybrid hosts are read as v1, as cAdvisor does (it takes the v2 formulas only when cgroup2
is mounted at the root). Missing files count as absent values, not errors: a kernel
without a controller, or a file that disappeared with the container.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

NS_PER_SECOND = 1_000_000_000
NS_PER_USEC = 1_000
# cAdvisor treats limits above 2**62 as "unlimited" (the kernel rounds 2**63-1 down to a
# page multiple) and exports 0 for them.
MAX_MEMORY = 1 << 62
# Interfaces cAdvisor leaves out of a container's network statistics.
IGNORED_INTERFACE_PREFIXES = ("lo", "veth", "docker")
V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "blkio")

Device = tuple[int, int]  # (major, minor)


# --- what a read returns ------------------------------------------------------------------

@dataclass(frozen=True)
class CpuStats:
    usage_ns: int = 0
    user_ns: int = 0
    system_ns: int = 0
    periods: int = 0
    throttled_periods: int = 0
    throttled_ns: int = 0


@dataclass(frozen=True)
class MemoryStats:
    usage: int = 0
    working_set: int = 0
    rss: int = 0
    cache: int = 0
    swap: int = 0
    mapped_file: int = 0
    oom_kills: int = 0


@dataclass(frozen=True)
class Spec:
    """Limits as cAdvisor's ContainerSpec holds them: 0 means "not set" for quota and
    period; memory_limit is the raw byte count (use `memory_limit_value` to export)."""
    cpu_shares: int = 0
    cpu_quota: int = 0
    cpu_period: int = 0
    memory_limit: int = 0


@dataclass(frozen=True)
class DiskIO:
    major: int
    minor: int
    read_bytes: int
    write_bytes: int


@dataclass(frozen=True)
class Interface:
    name: str
    rx_bytes: int
    tx_bytes: int


@dataclass(frozen=True)
class ContainerStats:
    cpu: CpuStats | None
    memory: MemoryStats | None
    spec: Spec
    disk_io: list[DiskIO] = field(default_factory=list)


def memory_limit_value(limit: int) -> int:
    """cAdvisor's specMemoryValue: "unlimited" (above 2**62) becomes 0."""
    return 0 if limit > MAX_MEMORY else limit


# --- pure parsers -------------------------------------------------------------------------

def parse_int(text: str) -> int | None:
    """A single-number cgroup file; "max" (v2's unlimited) and "" are None."""
    s = text.strip()
    if s in ("", "max"):
        return None
    return int(s)


def parse_keyed(text: str) -> dict[str, int]:
    """Flat keyed files: memory.stat, cpu.stat, cpuacct.stat, memory.events,
    memory.oom_control ("key value" per line; lines that are not are skipped)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return out


def parse_cpu_max(text: str) -> tuple[int, int]:
    """v2 cpu.max "QUOTA PERIOD" -> (quota, period), quota 0 for "max" (cAdvisor's
    ParseInt failure) and period 0 when missing."""
    parts = text.split()
    quota = int(parts[0]) if parts and parts[0] != "max" else 0
    period = int(parts[1]) if len(parts) > 1 else 0
    return quota, period


def cpu_weight_to_shares(weight: int) -> int:
    """cgroup v2 cpu.weight [1, 10000] -> v1 cpu.shares [2, 262144] (the conversion of the
    Kubernetes cgroup v2 KEP, as cAdvisor applies it); 0 for an invalid weight."""
    if weight < 1 or weight > 10000:
        return 0
    return 2 + ((weight - 1) * 262142) // 9999


def parse_blkio(text: str) -> dict[Device, dict[str, int]]:
    """v1 blkio.*io_service_bytes*: "MAJ:MIN Op VALUE" lines (and a "Total N" line)."""
    out: dict[Device, dict[str, int]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3 or ":" not in parts[0]:
            continue
        major, _, minor = parts[0].partition(":")
        try:
            dev = (int(major), int(minor))
            out.setdefault(dev, {})[parts[1]] = int(parts[2])
        except ValueError:
            continue
    return out


def parse_io_stat(text: str) -> dict[Device, dict[str, int]]:
    """v2 io.stat: "MAJ:MIN rbytes=N wbytes=N rios=N wios=N dbytes=N dios=N" lines."""
    out: dict[Device, dict[str, int]] = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts or ":" not in parts[0]:
            continue
        major, _, minor = parts[0].partition(":")
        try:
            dev = (int(major), int(minor))
        except ValueError:
            continue
        values = out.setdefault(dev, {})
        for kv in parts[1:]:
            key, _, value = kv.partition("=")
            try:
                values[key] = int(value)
            except ValueError:
                continue
    return out


def blkio_disk_io(stats: Mapping[Device, Mapping[str, int]]) -> list[DiskIO]:
    return [DiskIO(major=d[0], minor=d[1], read_bytes=v.get("Read", 0),
                   write_bytes=v.get("Write", 0)) for d, v in sorted(stats.items())]


def io_stat_disk_io(stats: Mapping[Device, Mapping[str, int]]) -> list[DiskIO]:
    return [DiskIO(major=d[0], minor=d[1], read_bytes=v.get("rbytes", 0),
                   write_bytes=v.get("wbytes", 0)) for d, v in sorted(stats.items())]


def parse_net_dev(text: str) -> list[Interface]:
    """/proc/<pid>/net/dev -> interfaces, leaving out loopback, veth and docker ones."""
    out = []
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        name = name.strip()
        fields = rest.split()
        if not sep or len(fields) < 9:
            continue
        if name.lower().startswith(IGNORED_INTERFACE_PREFIXES):
            continue
        out.append(Interface(name=name, rx_bytes=int(fields[0]), tx_bytes=int(fields[8])))
    return out


# --- formulas -----------------------------------------------------------------------------

def _working_set(usage: int, inactive_file: int | None) -> int:
    if inactive_file is None:
        return usage
    return max(usage - inactive_file, 0)


def v1_memory(*, usage: int, stat: Mapping[str, int], use_hierarchy: bool,
              oom_control: Mapping[str, int]) -> MemoryStats:
    """cgroup v1: the total_* counters under use_hierarchy, the local ones otherwise;
    working set = usage - total_inactive_file."""
    prefix = "total_" if use_hierarchy else ""
    return MemoryStats(
        usage=usage,
        working_set=_working_set(usage, stat.get("total_inactive_file")),
        rss=stat.get(prefix + "rss", 0),
        cache=stat.get(prefix + "cache", 0),
        swap=stat.get(prefix + "swap", 0),
        mapped_file=stat.get(prefix + "mapped_file", 0),
        oom_kills=oom_control.get("oom_kill", 0),
    )


def v2_memory(*, current: int, stat: Mapping[str, int], swap_current: int,
              events: Mapping[str, int]) -> MemoryStats:
    """cgroup v2: rss = anon, cache = file, mapped_file = file_mapped,
    swap = memory.swap.current; working set = memory.current - inactive_file."""
    return MemoryStats(
        usage=current,
        working_set=_working_set(current, stat.get("inactive_file")),
        rss=stat.get("anon", 0),
        cache=stat.get("file", 0),
        swap=swap_current,
        mapped_file=stat.get("file_mapped", 0),
        oom_kills=events.get("oom_kill", 0),
    )


def v1_cpu(*, usage_ns: int, cpuacct_stat: Mapping[str, int], cpu_stat: Mapping[str, int],
           clock_ticks: int) -> CpuStats:
    """cgroup v1: cpuacct.usage (ns); user/system from cpuacct.stat in USER_HZ ticks;
    CFS periods and throttled time (ns) from cpu.stat."""
    return CpuStats(
        usage_ns=usage_ns,
        user_ns=cpuacct_stat.get("user", 0) * NS_PER_SECOND // clock_ticks,
        system_ns=cpuacct_stat.get("system", 0) * NS_PER_SECOND // clock_ticks,
        periods=cpu_stat.get("nr_periods", 0),
        throttled_periods=cpu_stat.get("nr_throttled", 0),
        throttled_ns=cpu_stat.get("throttled_time", 0),
    )


def v2_cpu(cpu_stat: Mapping[str, int]) -> CpuStats:
    """cgroup v2: everything from cpu.stat, in microseconds."""
    return CpuStats(
        usage_ns=cpu_stat.get("usage_usec", 0) * NS_PER_USEC,
        user_ns=cpu_stat.get("user_usec", 0) * NS_PER_USEC,
        system_ns=cpu_stat.get("system_usec", 0) * NS_PER_USEC,
        periods=cpu_stat.get("nr_periods", 0),
        throttled_periods=cpu_stat.get("nr_throttled", 0),
        throttled_ns=cpu_stat.get("throttled_usec", 0) * NS_PER_USEC,
    )


def v1_spec(*, shares: int | None, quota: int | None, period: int | None,
            memory_limit: int | None) -> Spec:
    """cgroup v1: a quota of -1 (none) is 0, as cAdvisor stores it."""
    return Spec(cpu_shares=shares or 0, cpu_quota=max(quota or 0, 0), cpu_period=period or 0,
                memory_limit=memory_limit or 0)


def v2_spec(*, weight: int | None, cpu_max: str | None, memory_max: str | None) -> Spec:
    """cgroup v2: shares from cpu.weight; "max" memory is unlimited (2**64-1, as cAdvisor
    reads it, so it exports as 0)."""
    quota, period = parse_cpu_max(cpu_max) if cpu_max is not None else (0, 0)
    limit = 0
    if memory_max is not None:
        s = memory_max.strip()
        limit = (1 << 64) - 1 if s == "max" else int(s) if s.isdigit() else 0
    return Spec(cpu_shares=cpu_weight_to_shares(weight) if weight else 0, cpu_quota=quota,
                cpu_period=period, memory_limit=limit)


# --- the host and the files ---------------------------------------------------------------

@dataclass(frozen=True)
class Layout:
    """mode "v1" / "hybrid" / "v2"; dirs: controller -> mount directory (v2: "" -> root)."""
    mode: str
    dirs: dict[str, str]


def detect_layout(root: str = "/sys/fs/cgroup") -> Layout:
    """What is mounted under root, from the directory tree alone (so a test can point it
    at a temporary tree): cgroup.controllers at the root is cgroup2; otherwise each v1
    controller is the directory whose comma-separated name lists it ("cpu,cpuacct")."""
    if os.path.exists(os.path.join(root, "cgroup.controllers")):
        return Layout(mode="v2", dirs={"": root})
    dirs: dict[str, str] = {}
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        names = []
    for name in names:
        path = os.path.join(root, name)
        if not os.path.isdir(path):
            continue
        for controller in name.split(","):
            if controller in V1_CONTROLLERS:
                dirs.setdefault(controller, path)
    hybrid = os.path.exists(os.path.join(root, "unified", "cgroup.controllers"))
    return Layout(mode="hybrid" if hybrid else "v1", dirs=dirs)


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:  # gone (ENOENT, ENODEV once the cgroup is removed), or not ours
        return None


def _read_int(path: str) -> int | None:
    text = _read(path)
    if text is None:
        return None
    try:
        return parse_int(text)
    except ValueError:
        return None


def _read_keyed(path: str) -> dict[str, int]:
    text = _read(path)
    return parse_keyed(text) if text is not None else {}


# v1 blkio files in the order libcontainer tries them: the first with entries wins.
_BLKIO_FILES = ("blkio.bfq.io_service_bytes_recursive", "blkio.io_service_bytes_recursive",
                "blkio.throttle.io_service_bytes_recursive", "blkio.throttle.io_service_bytes")


class CgroupReader:
    """Reads containers' cgroups below `root` (default /sys/fs/cgroup). `cgroup_path` is
    the container's path below each hierarchy's root, e.g. "/corral/k8s.io/<id>"."""

    def __init__(self, root: str = "/sys/fs/cgroup", *, clock_ticks: int | None = None) -> None:
        self.root = root
        self.layout = detect_layout(root)
        self.clock_ticks = clock_ticks or os.sysconf("SC_CLK_TCK")

    def directory(self, controller: str, cgroup_path: str) -> str | None:
        """The container's directory in the hierarchy holding controller (v2: the one)."""
        base = self.layout.dirs.get("" if self.layout.mode == "v2" else controller)
        if base is None:
            return None
        return os.path.join(base, cgroup_path.strip("/"))

    def read(self, cgroup_path: str) -> ContainerStats | None:
        """The container's statistics, or None when its cgroup does not exist (any more)."""
        if self.layout.mode == "v2":
            d = self.directory("", cgroup_path)
            if d is None or not os.path.isdir(d):
                return None
            return self._read_v2(d)
        dirs = {c: self.directory(c, cgroup_path) for c in V1_CONTROLLERS}
        present = {c: d for c, d in dirs.items() if d is not None and os.path.isdir(d)}
        if not present:
            return None
        return self._read_v1(present)

    def _read_v2(self, d: str) -> ContainerStats:
        cpu_stat = _read_keyed(os.path.join(d, "cpu.stat"))
        current = _read_int(os.path.join(d, "memory.current"))
        memory = None
        if current is not None:
            memory = v2_memory(current=current,
                               stat=_read_keyed(os.path.join(d, "memory.stat")),
                               swap_current=_read_int(os.path.join(d, "memory.swap.current"))
                               or 0,
                               events=_read_keyed(os.path.join(d, "memory.events")))
        spec = v2_spec(weight=_read_int(os.path.join(d, "cpu.weight")),
                       cpu_max=_read(os.path.join(d, "cpu.max")),
                       memory_max=_read(os.path.join(d, "memory.max")))
        io_text = _read(os.path.join(d, "io.stat")) or ""
        return ContainerStats(cpu=v2_cpu(cpu_stat) if cpu_stat else None, memory=memory,
                              spec=spec, disk_io=io_stat_disk_io(parse_io_stat(io_text)))

    def _read_v1(self, dirs: dict[str, str]) -> ContainerStats:
        cpu = memory = None
        shares = quota = period = limit = None
        cpu_stat: dict[str, int] = {}
        if "cpu" in dirs:
            d = dirs["cpu"]
            cpu_stat = _read_keyed(os.path.join(d, "cpu.stat"))
            shares = _read_int(os.path.join(d, "cpu.shares"))
            quota = _read_int(os.path.join(d, "cpu.cfs_quota_us"))
            period = _read_int(os.path.join(d, "cpu.cfs_period_us"))
        if "cpuacct" in dirs:
            d = dirs["cpuacct"]
            usage = _read_int(os.path.join(d, "cpuacct.usage"))
            if usage is not None:
                cpu = v1_cpu(usage_ns=usage,
                             cpuacct_stat=_read_keyed(os.path.join(d, "cpuacct.stat")),
                             cpu_stat=cpu_stat, clock_ticks=self.clock_ticks)
        if "memory" in dirs:
            d = dirs["memory"]
            usage = _read_int(os.path.join(d, "memory.usage_in_bytes"))
            limit = _read_int(os.path.join(d, "memory.limit_in_bytes"))
            if usage is not None:
                memory = v1_memory(
                    usage=usage, stat=_read_keyed(os.path.join(d, "memory.stat")),
                    use_hierarchy=_read_int(os.path.join(d, "memory.use_hierarchy")) == 1,
                    oom_control=_read_keyed(os.path.join(d, "memory.oom_control")))
        disk_io: list[DiskIO] = []
        if "blkio" in dirs:
            for name in _BLKIO_FILES:
                parsed = parse_blkio(_read(os.path.join(dirs["blkio"], name)) or "")
                if parsed:
                    disk_io = blkio_disk_io(parsed)
                    break
        return ContainerStats(cpu=cpu, memory=memory, disk_io=disk_io,
                              spec=v1_spec(shares=shares, quota=quota, period=period,
                                           memory_limit=limit))


# --- outside the cgroup: network and devices ----------------------------------------------

def read_interfaces(pid: int, *, proc_root: str = "/proc") -> list[Interface]:
    """The interfaces of PID's network namespace; [] when the process is gone."""
    if pid <= 0:
        return []
    text = _read(os.path.join(proc_root, str(pid), "net", "dev"))
    return parse_net_dev(text) if text is not None else []


class DeviceNames:
    """major:minor -> "/dev/<name>" from /sys/dev/block/<maj>:<min>/uevent, cached;
    "" for a device it does not know (cAdvisor's label then is empty too)."""

    def __init__(self, *, sys_root: str = "/sys") -> None:
        self.sys_root = sys_root
        self._cache: dict[Device, str] = {}

    def name(self, major: int, minor: int) -> str:
        key = (major, minor)
        if key not in self._cache:
            text = _read(os.path.join(self.sys_root, "dev", "block", f"{major}:{minor}",
                                      "uevent")) or ""
            name = ""
            for line in text.splitlines():
                if line.startswith("DEVNAME="):
                    name = "/dev/" + line[len("DEVNAME="):].strip()
            self._cache[key] = name
        return self._cache[key]
