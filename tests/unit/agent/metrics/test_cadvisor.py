"""cadvisor.py: every required family with cAdvisor's labels, rendered through a real
CollectorRegistry from a fake cgroup tree and a fake ContainerSource."""

from __future__ import annotations

import os
from collections.abc import Iterable

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.metrics.cadvisor import (
    CadvisorCollector,
    ContainerInfo,
    Machine,
    Observed,
    build_families,
    parse_cpuinfo_cores,
    parse_meminfo_total,
    read_machine,
)
from agent.metrics.cgroups import CgroupReader, ContainerStats, CpuStats, MemoryStats, Spec

REQUIRED = [
    "container_cpu_usage_seconds_total", "container_cpu_user_seconds_total",
    "container_cpu_system_seconds_total", "container_cpu_cfs_periods_total",
    "container_cpu_cfs_throttled_periods_total", "container_cpu_cfs_throttled_seconds_total",
    "container_memory_usage_bytes", "container_memory_working_set_bytes",
    "container_memory_rss", "container_memory_cache", "container_memory_swap",
    "container_memory_mapped_file", "container_spec_memory_limit_bytes",
    "container_spec_cpu_quota", "container_spec_cpu_period", "container_spec_cpu_shares",
    "container_oom_events_total", "container_start_time_seconds", "container_last_seen",
    "container_network_receive_bytes_total", "container_network_transmit_bytes_total",
    "container_fs_reads_bytes_total", "container_fs_writes_bytes_total", "machine_cpu_cores",
    "machine_memory_bytes",
]

SANDBOX = ContainerInfo(container_id="sb1", container="POD", pod="web-0", namespace="default",
                        image="corral/pause", cgroup_path="/corral/k8s.io/sb1", pid=100,
                        started_at=1700000000.0, network=True)
APP = ContainerInfo(container_id="c1", container="app", pod="web-0", namespace="default",
                    image="busybox:latest", cgroup_path="/corral/k8s.io/c1", pid=101,
                    started_at=1700000001.5)
GONE = ContainerInfo(container_id="c9", container="gone", pod="web-0", namespace="default",
                     image="busybox:latest", cgroup_path="/corral/k8s.io/c9", pid=0)

NET_DEV = """\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    5000      50    0    0    0     0          0         0     5000      50    0    0    0     0       0          0
  eth0: 1234567    100    0    0    0     0          0         0    76543      90    0    0    0     0       0          0
"""


def cgroup_files(cid: str, *, limit: str, quota: str) -> dict[str, str]:
    base = f"corral/k8s.io/{cid}"
    return {
        f"cpu/{base}/cpu.shares": "256\n",
        f"cpu/{base}/cpu.cfs_quota_us": quota,
        f"cpu/{base}/cpu.cfs_period_us": "100000\n",
        f"cpu/{base}/cpu.stat": "nr_periods 40\nnr_throttled 12\nthrottled_time 600000000\n",
        f"cpuacct/{base}/cpuacct.usage": "3500000000\n",
        f"cpuacct/{base}/cpuacct.stat": "user 250\nsystem 75\n",
        f"memory/{base}/memory.usage_in_bytes": "5000000\n",
        f"memory/{base}/memory.limit_in_bytes": limit,
        f"memory/{base}/memory.use_hierarchy": "1\n",
        f"memory/{base}/memory.stat": "total_cache 3000000\ntotal_rss 1500000\n"
                                      "total_mapped_file 200000\ntotal_swap 0\n"
                                      "total_inactive_file 1000000\n",
        f"memory/{base}/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        f"blkio/{base}/blkio.throttle.io_service_bytes_recursive":
            "254:0 Read 4096\n254:0 Write 8192\nTotal 12288\n",
    }


def write_tree(root: str, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)


class FakeSource:
    def __init__(self, containers: list[ContainerInfo]) -> None:
        self.listed = containers
        self.calls = 0

    def containers(self) -> Iterable[ContainerInfo]:
        self.calls += 1
        return list(self.listed)


class BrokenSource:
    def containers(self) -> Iterable[ContainerInfo]:
        raise RuntimeError("the pod workers are gone")


MACHINE = Machine(cpu_cores=4, memory_bytes=8 * 1024**3, boot_id="b", machine_id="m",
                  system_uuid="u")


@pytest.fixture
def scrape(tmp_path: object) -> tuple[CollectorRegistry, FakeSource]:
    root = str(tmp_path)
    write_tree(os.path.join(root, "cgroup"), {
        **cgroup_files("sb1", limit="9223372036854771712\n", quota="-1\n"),
        **cgroup_files("c1", limit="67108864\n", quota="50000\n"),
    })
    write_tree(os.path.join(root, "proc"), {"100/net/dev": NET_DEV, "101/net/dev": NET_DEV})
    write_tree(os.path.join(root, "sys"), {"dev/block/254:0/uevent": "DEVNAME=vda\n"})
    source = FakeSource([SANDBOX, APP, GONE])
    registry = CollectorRegistry()
    registry.register(CadvisorCollector(
        source, reader=CgroupReader(os.path.join(root, "cgroup"), clock_ticks=100),
        proc_root=os.path.join(root, "proc"), sys_root=os.path.join(root, "sys"),
        machine=MACHINE, clock=lambda: 1700000100.0))
    return registry, source


def samples(registry: CollectorRegistry) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def value(found: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str
          ) -> float:
    hits = [v for lab, v in found[name] if all(lab.get(k) == w for k, w in labels.items())]
    assert len(hits) == 1, f"{name} {labels}: {len(hits)} samples"
    return hits[0]


def test_registering_does_not_ask_the_source(scrape: tuple[CollectorRegistry, FakeSource]
                                             ) -> None:
    _, source = scrape
    assert source.calls == 0


def test_every_required_family_is_exported(scrape: tuple[CollectorRegistry, FakeSource]) -> None:
    registry, source = scrape
    found = samples(registry)
    assert source.calls == 1
    missing = [name for name in REQUIRED if name not in found]
    assert not missing, f"missing: {missing}"


def test_labels_are_cadvisors(scrape: tuple[CollectorRegistry, FakeSource]) -> None:
    found = samples(scrape[0])
    labels, _ = next(s for s in found["container_memory_rss"] if s[0]["container"] == "app")
    assert labels == {"container": "app", "id": "/corral/k8s.io/c1", "image": "busybox:latest",
                      "name": "c1", "namespace": "default", "pod": "web-0"}
    assert {lab["cpu"] for lab, _ in found["container_cpu_usage_seconds_total"]} == {"total"}
    assert {lab["device"] for lab, _ in found["container_fs_reads_bytes_total"]} == {"/dev/vda"}


@pytest.mark.parametrize(("name", "labels", "want"), [
    pytest.param("container_cpu_usage_seconds_total", {}, 3.5, id="cpu-usage"),
    pytest.param("container_cpu_user_seconds_total", {}, 2.5, id="cpu-user"),
    pytest.param("container_cpu_system_seconds_total", {}, 0.75, id="cpu-system"),
    pytest.param("container_cpu_cfs_periods_total", {}, 40, id="cfs-periods"),
    pytest.param("container_cpu_cfs_throttled_periods_total", {}, 12, id="cfs-throttled"),
    pytest.param("container_cpu_cfs_throttled_seconds_total", {}, 0.6, id="cfs-throttled-s"),
    pytest.param("container_memory_usage_bytes", {}, 5000000, id="mem-usage"),
    pytest.param("container_memory_working_set_bytes", {}, 4000000, id="working-set"),
    pytest.param("container_memory_rss", {}, 1500000, id="rss"),
    pytest.param("container_memory_cache", {}, 3000000, id="cache"),
    pytest.param("container_memory_swap", {}, 0, id="swap"),
    pytest.param("container_memory_mapped_file", {}, 200000, id="mapped-file"),
    pytest.param("container_spec_memory_limit_bytes", {}, 67108864, id="mem-limit"),
    pytest.param("container_spec_cpu_quota", {}, 50000, id="cpu-quota"),
    pytest.param("container_spec_cpu_period", {}, 100000, id="cpu-period"),
    pytest.param("container_spec_cpu_shares", {}, 256, id="cpu-shares"),
    pytest.param("container_oom_events_total", {}, 2, id="oom"),
    pytest.param("container_start_time_seconds", {}, 1700000001.5, id="start-time"),
    pytest.param("container_last_seen", {}, 1700000100.0, id="last-seen"),
    pytest.param("container_fs_reads_bytes_total", {}, 4096, id="fs-reads"),
    pytest.param("container_fs_writes_bytes_total", {}, 8192, id="fs-writes"),
])
def test_app_container_values(scrape: tuple[CollectorRegistry, FakeSource], name: str,
                              labels: dict[str, str], want: float) -> None:
    assert value(samples(scrape[0]), name, container="app", **labels) == pytest.approx(want)


def test_unlimited_sandbox_exports_cadvisors_zeroes(scrape: tuple[CollectorRegistry, FakeSource]
                                                    ) -> None:
    found = samples(scrape[0])
    assert value(found, "container_spec_memory_limit_bytes", container="POD") == 0
    # a quota of -1 is "no quota": cAdvisor leaves the sample out, keeps the period
    assert [lab for lab, _ in found["container_spec_cpu_quota"]
            if lab["container"] == "POD"] == []
    assert value(found, "container_spec_cpu_period", container="POD") == 100000


def test_network_only_for_the_netns_owner_and_not_loopback(
        scrape: tuple[CollectorRegistry, FakeSource]) -> None:
    found = samples(scrape[0])
    rx = found["container_network_receive_bytes_total"]
    assert [(lab["container"], lab["interface"], v) for lab, v in rx] == [("POD", "eth0",
                                                                          1234567)]
    assert value(found, "container_network_transmit_bytes_total", interface="eth0") == 76543


def test_a_container_whose_cgroup_is_gone_is_left_out(
        scrape: tuple[CollectorRegistry, FakeSource]) -> None:
    found = samples(scrape[0])
    assert {lab["container"] for lab, _ in found["container_last_seen"]} == {"POD", "app"}


def test_machine_metrics(scrape: tuple[CollectorRegistry, FakeSource]) -> None:
    found = samples(scrape[0])
    assert value(found, "machine_cpu_cores") == 4
    assert value(found, "machine_memory_bytes", boot_id="b", machine_id="m",
                 system_uuid="u") == 8 * 1024**3


def test_a_failing_source_still_exports_the_machine(tmp_path: object) -> None:
    registry = CollectorRegistry()
    registry.register(CadvisorCollector(BrokenSource(), reader=CgroupReader(str(tmp_path)),
                                        machine=MACHINE))
    found = samples(registry)
    assert value(found, "machine_cpu_cores") == 4
    assert "container_last_seen" not in found


def test_build_families_without_cpu_or_memory() -> None:
    info = ContainerInfo(container_id="x", container="x", pod="p", namespace="n", image="i",
                         cgroup_path="/x")
    fams = build_families([Observed(info=info, stats=ContainerStats(cpu=None, memory=None,
                                                                      spec=Spec()))],
                          machine=None, now=5.0)
    by_name = {f.name: f for f in fams}
    assert by_name["container_cpu_usage_seconds"].samples == []
    assert by_name["container_memory_rss"].samples == []
    assert [s.value for s in by_name["container_last_seen"].samples] == [5.0]
    assert by_name["machine_cpu_cores"].samples == []


def test_build_families_with_readings() -> None:
    info = ContainerInfo(container_id="x", container="x", pod="p", namespace="n", image="i",
                         cgroup_path="/x")
    stats = ContainerStats(cpu=CpuStats(usage_ns=1_500_000_000), memory=MemoryStats(usage=7),
                           spec=Spec(cpu_shares=2))
    by_name = {f.name: f for f in build_families([Observed(info=info, stats=stats)],
                                                 machine=None, now=0.0)}
    assert [s.value for s in by_name["container_cpu_usage_seconds"].samples] == [1.5]
    assert [s.value for s in by_name["container_spec_cpu_shares"].samples] == [2]


CPUINFO = "processor\t: 0\nmodel name\t: x\n\nprocessor\t: 1\nmodel name\t: x\n\n"


def test_read_machine_from_fake_proc(tmp_path: object) -> None:
    root = str(tmp_path)
    write_tree(root, {"proc/cpuinfo": CPUINFO,
                      "proc/meminfo": "MemTotal:        2048 kB\nMemFree: 1 kB\n",
                      "proc/sys/kernel/random/boot_id": "boot-1\n",
                      "etc/machine-id": "mach-1\n"})
    m = read_machine(proc_root=os.path.join(root, "proc"), etc_root=os.path.join(root, "etc"),
                     sys_root=os.path.join(root, "sys"))
    assert m == Machine(cpu_cores=2, memory_bytes=2048 * 1024, boot_id="boot-1",
                        machine_id="mach-1", system_uuid="")


def test_parse_machine_files() -> None:
    assert parse_cpuinfo_cores(CPUINFO) == 2
    assert parse_meminfo_total("MemFree: 1 kB\nMemTotal: 10 kB\n") == 10240
    assert parse_meminfo_total("") == 0
