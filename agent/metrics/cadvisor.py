"""cAdvisor-compatible container metrics: a prometheus_client Collector over a ContainerSource.

    scrape -> CadvisorCollector.collect()
        source.containers()              the running containers (the agent's pod workers)
        CgroupReader.read(cgroup_path)   cgroups.py: cpu, memory, spec, disk I/O
        read_interfaces(pid)             /proc/<pid>/net/dev (only for `network` entries)
        -> build_families(observed, machine, now)   pure: the metric families

Names and labels are cAdvisor's as kubelet exports them (`container`, `id`, `image`,
`name`, `namespace`, `pod`; plus `cpu`, `interface`, `device` where cAdvisor has them), so
dashboards written for Kubernetes work unchanged. `id` is the container's cgroup path and
`name` its runtime ID, as with containerd.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from .cgroups import (
    NS_PER_SECOND,
    CgroupReader,
    ContainerStats,
    DeviceNames,
    Interface,
    memory_limit_value,
    read_interfaces,
)
from .machine import ContainerInfo as ContainerInfo  # re-exported: machine.py moved them
from .machine import ContainerSource as ContainerSource
from .machine import Machine as Machine
from .machine import parse_cpuinfo_cores as parse_cpuinfo_cores
from .machine import parse_meminfo_total as parse_meminfo_total
from .machine import read_machine as read_machine

log = logging.getLogger(__name__)

LABELS = ("container", "id", "image", "name", "namespace", "pod")
MACHINE_LABELS = ("boot_id", "machine_id", "system_uuid")


@dataclass(frozen=True)
class Observed:
    """One container's reading at a scrape."""
    info: ContainerInfo
    stats: ContainerStats
    interfaces: list[Interface] = field(default_factory=list)


# --- the families -------------------------------------------------------------------------

def _labels(info: ContainerInfo) -> list[str]:
    return [info.container, info.cgroup_path, info.image, info.container_id, info.namespace,
            info.pod]


# One sample of a family for one container: (the extra label values, the value).
Sample = tuple[tuple[str, ...], float]
DeviceName = Callable[[int, int], str]


@dataclass(frozen=True)
class Family:
    """One container_* family: its name, type, help, extra labels, and how a container's
    reading gives its samples (none when the reading lacks the value, as cAdvisor)."""
    name: str
    counter: bool
    doc: str
    samples: Callable[[Observed, float, DeviceName], Iterable[Sample]]
    extra: tuple[str, ...] = ()


def _cpu(attr: str, scale: float = 1) -> Callable[[Observed, float, DeviceName],
                                                  Iterable[Sample]]:
    def samples(o: Observed, _now: float, _dev: DeviceName) -> Iterable[Sample]:
        cpu = o.stats.cpu
        return [] if cpu is None else [((), getattr(cpu, attr) / scale)]
    return samples


def _mem(attr: str) -> Callable[[Observed, float, DeviceName], Iterable[Sample]]:
    def samples(o: Observed, _now: float, _dev: DeviceName) -> Iterable[Sample]:
        m = o.stats.memory
        return [] if m is None else [((), getattr(m, attr))]
    return samples


def _spec(attr: str) -> Callable[[Observed, float, DeviceName], Iterable[Sample]]:
    """A spec value exported only when set (0 means unset)."""
    def samples(o: Observed, _now: float, _dev: DeviceName) -> Iterable[Sample]:
        value = getattr(o.stats.spec, attr)
        return [((), value)] if value else []
    return samples


def _cpu_total(o: Observed, _now: float, _dev: DeviceName) -> Iterable[Sample]:
    cpu = o.stats.cpu
    return [] if cpu is None else [(("total",), cpu.usage_ns / NS_PER_SECOND)]


def _mem_limit(o: Observed, _now: float, _dev: DeviceName) -> Iterable[Sample]:
    # exported with the memory readings, even when unlimited (0), as cAdvisor does
    if o.stats.memory is None:
        return []
    return [((), memory_limit_value(o.stats.spec.memory_limit))]


def _started(o: Observed, _now: float, _dev: DeviceName) -> Iterable[Sample]:
    return [((), o.info.started_at)] if o.info.started_at else []


def _seen(_o: Observed, now: float, _dev: DeviceName) -> Iterable[Sample]:
    return [((), now)]


def _net(attr: str) -> Callable[[Observed, float, DeviceName], Iterable[Sample]]:
    def samples(o: Observed, _now: float, _dev: DeviceName) -> Iterable[Sample]:
        return [((i.name,), getattr(i, attr)) for i in o.interfaces]
    return samples


def _disk(attr: str) -> Callable[[Observed, float, DeviceName], Iterable[Sample]]:
    def samples(o: Observed, _now: float, dev: DeviceName) -> Iterable[Sample]:
        return [((dev(d.major, d.minor),), getattr(d, attr)) for d in o.stats.disk_io]
    return samples


NS = float(NS_PER_SECOND)  # nanoseconds -> seconds
FAMILIES: tuple[Family, ...] = (
    Family("container_cpu_usage_seconds_total", True,
           "CPU time the container used, in seconds.", _cpu_total, ("cpu",)),
    Family("container_cpu_user_seconds_total", True,
           "CPU time the container spent in user mode, in seconds.", _cpu("user_ns", NS)),
    Family("container_cpu_system_seconds_total", True,
           "CPU time the container spent in kernel mode, in seconds.", _cpu("system_ns", NS)),
    Family("container_cpu_cfs_periods_total", True,
           "CFS enforcement periods that have elapsed.", _cpu("periods")),
    Family("container_cpu_cfs_throttled_periods_total", True,
           "CFS periods in which the container was throttled.", _cpu("throttled_periods")),
    Family("container_cpu_cfs_throttled_seconds_total", True,
           "Time the container spent throttled, in seconds.", _cpu("throttled_ns", NS)),
    Family("container_memory_usage_bytes", False,
           "Memory the container uses, page cache included, in bytes.", _mem("usage")),
    Family("container_memory_working_set_bytes", False,
           "Memory usage minus inactive file pages, in bytes.", _mem("working_set")),
    Family("container_memory_rss", False,
           "Anonymous memory (RSS) of the container, in bytes.", _mem("rss")),
    Family("container_memory_cache", False,
           "Page cache of the container, in bytes.", _mem("cache")),
    Family("container_memory_swap", False,
           "Swap the container uses, in bytes.", _mem("swap")),
    Family("container_memory_mapped_file", False,
           "Size of memory-mapped files of the container, in bytes.", _mem("mapped_file")),
    Family("container_spec_memory_limit_bytes", False,
           "Memory limit of the container, in bytes (0: none).", _mem_limit),
    Family("container_spec_cpu_quota", False,
           "CFS quota of the container, in microseconds.", _spec("cpu_quota")),
    Family("container_spec_cpu_period", False,
           "CFS period of the container, in microseconds.", _spec("cpu_period")),
    Family("container_spec_cpu_shares", False,
           "CPU shares of the container.", _spec("cpu_shares")),
    Family("container_oom_events_total", True,
           "Processes of the container killed by the OOM killer.", _mem("oom_kills")),
    Family("container_start_time_seconds", False,
           "When the container started, in seconds since the epoch.", _started),
    Family("container_last_seen", False,
           "When the exporter last saw the container, in seconds since the epoch.", _seen),
    Family("container_network_receive_bytes_total", True,
           "Bytes received on the interface.", _net("rx_bytes"), ("interface",)),
    Family("container_network_transmit_bytes_total", True,
           "Bytes transmitted on the interface.", _net("tx_bytes"), ("interface",)),
    Family("container_fs_reads_bytes_total", True,
           "Bytes the container read from the block device.", _disk("read_bytes"),
           ("device",)),
    Family("container_fs_writes_bytes_total", True,
           "Bytes the container wrote to the block device.", _disk("write_bytes"),
           ("device",)),
)


def build_families(observed: Sequence[Observed], *, machine: Machine | None, now: float,
                   device_name: DeviceName = lambda major, minor: ""
                   ) -> list[Metric]:
    """The metric families for these readings (pure: no I/O). machine None leaves the
    machine_* samples out (the collector's describe())."""
    out: list[Metric] = []
    for spec in FAMILIES:
        kind = CounterMetricFamily if spec.counter else GaugeMetricFamily
        family = kind(spec.name, spec.doc, labels=[*LABELS, *spec.extra])
        for o in observed:
            labels = _labels(o.info)
            for extra, value in spec.samples(o, now, device_name):
                family.add_metric([*labels, *extra], value)
        out.append(family)

    cores = GaugeMetricFamily("machine_cpu_cores", "Logical CPUs of the machine.",
                              labels=list(MACHINE_LABELS))
    memory = GaugeMetricFamily("machine_memory_bytes", "Memory of the machine, in bytes.",
                               labels=list(MACHINE_LABELS))
    if machine is not None:
        ids = [machine.boot_id, machine.machine_id, machine.system_uuid]
        cores.add_metric(ids, machine.cpu_cores)
        memory.add_metric(ids, machine.memory_bytes)
    return [*out, cores, memory]


class CadvisorCollector(Collector):
    """Register on a CollectorRegistry; every scrape reads the cgroups afresh."""

    def __init__(self, source: ContainerSource, *, reader: CgroupReader | None = None,
                 proc_root: str = "/proc", sys_root: str = "/sys",
                 machine: Machine | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.source = source
        self.reader = reader or CgroupReader()
        self.proc_root = proc_root
        self.devices = DeviceNames(sys_root=sys_root)
        self.machine = machine or read_machine(proc_root=proc_root, sys_root=sys_root)
        self.clock = clock

    def describe(self) -> Iterable[Metric]:
        # Without describe() the registry would call collect() (and the source) on register.
        return build_families([], machine=None, now=0.0)

    def observe(self) -> list[Observed]:
        """Read every container the source lists; containers whose cgroup is gone (they
        stopped between the listing and the read) are left out."""
        out = []
        try:
            containers = list(self.source.containers())
        except Exception:
            log.exception("metrics: listing the containers failed; exporting none")
            return []
        for info in containers:
            stats = self.reader.read(info.cgroup_path)
            if stats is None:
                continue
            interfaces = read_interfaces(info.pid, proc_root=self.proc_root) \
                if info.network else []
            out.append(Observed(info=info, stats=stats, interfaces=interfaces))
        return out

    def collect(self) -> Iterator[Metric]:
        yield from build_families(self.observe(), machine=self.machine, now=self.clock(),
                                  device_name=self.devices.name)
