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


def _counter(name: str, doc: str, extra: Sequence[str] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=[*LABELS, *extra])


def _gauge(name: str, doc: str, extra: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=[*LABELS, *extra])


def build_families(observed: Sequence[Observed], *, machine: Machine | None, now: float,
                   device_name: Callable[[int, int], str] = lambda major, minor: ""
                   ) -> list[Metric]:
    """The metric families for these readings (pure: no I/O). machine None leaves the
    machine_* samples out (the collector's describe())."""
    cpu_usage = _counter("container_cpu_usage_seconds_total",
                         "CPU time the container used, in seconds.", ["cpu"])
    cpu_user = _counter("container_cpu_user_seconds_total",
                        "CPU time the container spent in user mode, in seconds.")
    cpu_system = _counter("container_cpu_system_seconds_total",
                          "CPU time the container spent in kernel mode, in seconds.")
    periods = _counter("container_cpu_cfs_periods_total",
                       "CFS enforcement periods that have elapsed.")
    throttled = _counter("container_cpu_cfs_throttled_periods_total",
                         "CFS periods in which the container was throttled.")
    throttled_s = _counter("container_cpu_cfs_throttled_seconds_total",
                           "Time the container spent throttled, in seconds.")
    usage = _gauge("container_memory_usage_bytes",
                   "Memory the container uses, page cache included, in bytes.")
    working_set = _gauge("container_memory_working_set_bytes",
                         "Memory usage minus inactive file pages, in bytes.")
    rss = _gauge("container_memory_rss", "Anonymous memory (RSS) of the container, in bytes.")
    cache = _gauge("container_memory_cache", "Page cache of the container, in bytes.")
    swap = _gauge("container_memory_swap", "Swap the container uses, in bytes.")
    mapped = _gauge("container_memory_mapped_file",
                    "Size of memory-mapped files of the container, in bytes.")
    mem_limit = _gauge("container_spec_memory_limit_bytes",
                       "Memory limit of the container, in bytes (0: none).")
    quota = _gauge("container_spec_cpu_quota", "CFS quota of the container, in microseconds.")
    period = _gauge("container_spec_cpu_period", "CFS period of the container, in microseconds.")
    shares = _gauge("container_spec_cpu_shares", "CPU shares of the container.")
    oom = _counter("container_oom_events_total",
                   "Processes of the container killed by the OOM killer.")
    start = _gauge("container_start_time_seconds",
                   "When the container started, in seconds since the epoch.")
    last_seen = _gauge("container_last_seen",
                       "When the exporter last saw the container, in seconds since the epoch.")
    rx = _counter("container_network_receive_bytes_total",
                  "Bytes received on the interface.", ["interface"])
    tx = _counter("container_network_transmit_bytes_total",
                  "Bytes transmitted on the interface.", ["interface"])
    reads = _counter("container_fs_reads_bytes_total",
                     "Bytes the container read from the block device.", ["device"])
    writes = _counter("container_fs_writes_bytes_total",
                      "Bytes the container wrote to the block device.", ["device"])

    for o in observed:
        labels = _labels(o.info)
        s = o.stats
        if s.cpu is not None:
            cpu_usage.add_metric([*labels, "total"], s.cpu.usage_ns / NS_PER_SECOND)
            cpu_user.add_metric(labels, s.cpu.user_ns / NS_PER_SECOND)
            cpu_system.add_metric(labels, s.cpu.system_ns / NS_PER_SECOND)
            periods.add_metric(labels, s.cpu.periods)
            throttled.add_metric(labels, s.cpu.throttled_periods)
            throttled_s.add_metric(labels, s.cpu.throttled_ns / NS_PER_SECOND)
        if s.memory is not None:
            m = s.memory
            usage.add_metric(labels, m.usage)
            working_set.add_metric(labels, m.working_set)
            rss.add_metric(labels, m.rss)
            cache.add_metric(labels, m.cache)
            swap.add_metric(labels, m.swap)
            mapped.add_metric(labels, m.mapped_file)
            oom.add_metric(labels, m.oom_kills)
            mem_limit.add_metric(labels, memory_limit_value(s.spec.memory_limit))
        if s.spec.cpu_shares:
            shares.add_metric(labels, s.spec.cpu_shares)
        if s.spec.cpu_quota:
            quota.add_metric(labels, s.spec.cpu_quota)
        if s.spec.cpu_period:
            period.add_metric(labels, s.spec.cpu_period)
        if o.info.started_at:
            start.add_metric(labels, o.info.started_at)
        last_seen.add_metric(labels, now)
        for i in o.interfaces:
            rx.add_metric([*labels, i.name], i.rx_bytes)
            tx.add_metric([*labels, i.name], i.tx_bytes)
        for d in s.disk_io:
            dev = device_name(d.major, d.minor)
            reads.add_metric([*labels, dev], d.read_bytes)
            writes.add_metric([*labels, dev], d.write_bytes)

    cores = GaugeMetricFamily("machine_cpu_cores", "Logical CPUs of the machine.",
                              labels=list(MACHINE_LABELS))
    memory = GaugeMetricFamily("machine_memory_bytes", "Memory of the machine, in bytes.",
                               labels=list(MACHINE_LABELS))
    if machine is not None:
        ids = [machine.boot_id, machine.machine_id, machine.system_uuid]
        cores.add_metric(ids, machine.cpu_cores)
        memory.add_metric(ids, machine.memory_bytes)
    return [cpu_usage, cpu_user, cpu_system, periods, throttled, throttled_s, usage,
            working_set, rss, cache, swap, mapped, mem_limit, quota, period, shares, oom,
            start, last_seen, rx, tx, reads, writes, cores, memory]


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
