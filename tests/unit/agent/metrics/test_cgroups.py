"""cgroups.py: the kernels' file formats, cAdvisor's formulas, and the reader over fake
v1, hybrid and v2 trees in a temporary directory."""

from __future__ import annotations

import os

import pytest

from agent.metrics.cgroups import (
    CgroupReader,
    CpuStats,
    DeviceNames,
    DiskIO,
    Interface,
    MemoryStats,
    Spec,
    cpu_weight_to_shares,
    detect_layout,
    memory_limit_value,
    parse_blkio,
    parse_cpu_max,
    parse_int,
    parse_io_stat,
    parse_keyed,
    parse_net_dev,
    read_interfaces,
    v1_cpu,
    v1_memory,
    v1_spec,
    v2_cpu,
    v2_memory,
    v2_spec,
)

UNLIMITED_V1 = 9223372036854771712  # memory.limit_in_bytes of an unlimited v1 cgroup

NET_DEV = """\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    5000      50    0    0    0     0          0         0     5000      50    0    0    0     0       0          0
  eth0: 1234567    100    0    0    0     0          0         0    76543      90    0    0    0     0       0          0
vethab12:   777       7    0    0    0     0          0         0      888       8    0    0    0     0       0          0
  net1:      10       1    0    0    0     0          0         0       20       2    0    0    0     0       0          0
"""

V1_MEMORY_STAT = """\
cache 100
rss 200
mapped_file 30
swap 0
inactive_file 40
total_cache 4096000
total_rss 2048000
total_mapped_file 512000
total_swap 8192
total_inactive_file 1000000
total_active_file 3000000
"""

V2_MEMORY_STAT = """\
anon 3000000
file 5000000
kernel 100000
file_mapped 700000
inactive_file 2000000
active_file 3000000
"""


def write_tree(root: str, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)


# --- parsers ------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "want"), [
    pytest.param("123\n", 123, id="number"),
    pytest.param("max\n", None, id="v2-unlimited"),
    pytest.param("-1\n", -1, id="v1-no-quota"),
    pytest.param("", None, id="empty"),
])
def test_parse_int(text: str, want: int | None) -> None:
    assert parse_int(text) == want


def test_parse_keyed_skips_lines_that_are_not_key_value() -> None:
    text = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\nsome words here\nbad x\n"
    assert parse_keyed(text) == {"oom_kill_disable": 0, "under_oom": 0, "oom_kill": 3}


@pytest.mark.parametrize(("text", "want"), [
    pytest.param("max 100000\n", (0, 100000), id="no-quota"),
    pytest.param("50000 100000\n", (50000, 100000), id="half-cpu"),
    pytest.param("250000 50000\n", (250000, 50000), id="five-cpus"),
])
def test_parse_cpu_max(text: str, want: tuple[int, int]) -> None:
    assert parse_cpu_max(text) == want


@pytest.mark.parametrize(("weight", "shares"), [
    pytest.param(1, 2, id="min"),
    pytest.param(100, 2597, id="default-weight"),  # crun's and cAdvisor's mapping
    pytest.param(10000, 262144, id="max"),
    pytest.param(0, 0, id="below-range"),
    pytest.param(10001, 0, id="above-range"),
])
def test_cpu_weight_to_shares(weight: int, shares: int) -> None:
    assert cpu_weight_to_shares(weight) == shares


def test_parse_blkio_by_device_and_operation() -> None:
    text = ("8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Async 12288\n8:0 Total 12288\n"
            "254:0 Read 1\n254:0 Write 2\nTotal 12291\n")
    got = parse_blkio(text)
    assert got[(8, 0)]["Read"] == 4096 and got[(8, 0)]["Write"] == 8192
    assert got[(254, 0)] == {"Read": 1, "Write": 2}
    assert set(got) == {(8, 0), (254, 0)}


def test_parse_io_stat() -> None:
    text = ("254:0 rbytes=1048576 wbytes=2097152 rios=10 wios=20 dbytes=0 dios=0\n"
            "7:1 rbytes=5 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n")
    got = parse_io_stat(text)
    assert got[(254, 0)]["rbytes"] == 1048576 and got[(254, 0)]["wbytes"] == 2097152
    assert got[(7, 1)]["rbytes"] == 5


def test_parse_net_dev_leaves_out_loopback_and_veth() -> None:
    assert parse_net_dev(NET_DEV) == [Interface("eth0", 1234567, 76543),
                                      Interface("net1", 10, 20)]


# --- formulas -----------------------------------------------------------------------------

@pytest.mark.parametrize(("usage", "inactive", "working_set"), [
    pytest.param(5_000_000, 1_000_000, 4_000_000, id="usage-minus-inactive-file"),
    pytest.param(500_000, 1_000_000, 0, id="floored-at-zero"),
])
def test_v1_memory_working_set(usage: int, inactive: int, working_set: int) -> None:
    m = v1_memory(usage=usage, stat=parse_keyed(V1_MEMORY_STAT), use_hierarchy=True,
                  oom_control={"oom_kill": 2})
    assert m.working_set == working_set
    assert (m.rss, m.cache, m.mapped_file, m.swap) == (2048000, 4096000, 512000, 8192)
    assert m.oom_kills == 2


def test_v1_memory_without_hierarchy_reads_the_local_counters() -> None:
    m = v1_memory(usage=1000, stat=parse_keyed(V1_MEMORY_STAT), use_hierarchy=False,
                  oom_control={})
    assert (m.rss, m.cache, m.mapped_file, m.swap, m.oom_kills) == (200, 100, 30, 0, 0)
    assert m.working_set == 0  # total_inactive_file is used either way, as cAdvisor does


@pytest.mark.parametrize(("current", "working_set"), [
    pytest.param(9_000_000, 7_000_000, id="current-minus-inactive-file"),
    pytest.param(1_000_000, 0, id="floored-at-zero"),
])
def test_v2_memory(current: int, working_set: int) -> None:
    m = v2_memory(current=current, stat=parse_keyed(V2_MEMORY_STAT), swap_current=4096,
                  events={"low": 0, "high": 0, "max": 5, "oom": 2, "oom_kill": 1})
    assert m == MemoryStats(usage=current, working_set=working_set, rss=3000000,
                            cache=5000000, swap=4096, mapped_file=700000, oom_kills=1)


def test_v1_cpu_converts_user_hz_ticks() -> None:
    cpu = v1_cpu(usage_ns=3_500_000_000, cpuacct_stat={"user": 250, "system": 75},
                 cpu_stat={"nr_periods": 40, "nr_throttled": 12, "throttled_time": 600_000_000},
                 clock_ticks=100)
    assert cpu == CpuStats(usage_ns=3_500_000_000, user_ns=2_500_000_000,
                           system_ns=750_000_000, periods=40, throttled_periods=12,
                           throttled_ns=600_000_000)


def test_v2_cpu_converts_microseconds() -> None:
    stat = parse_keyed("usage_usec 3500000\nuser_usec 2500000\nsystem_usec 1000000\n"
                       "nr_periods 40\nnr_throttled 12\nthrottled_usec 600000\n")
    assert v2_cpu(stat) == CpuStats(usage_ns=3_500_000_000, user_ns=2_500_000_000,
                                    system_ns=1_000_000_000, periods=40, throttled_periods=12,
                                    throttled_ns=600_000_000)


@pytest.mark.parametrize(("kwargs", "want"), [
    pytest.param(dict(shares=512, quota=50000, period=100000, memory_limit=67108864),
                 Spec(512, 50000, 100000, 67108864), id="limited"),
    pytest.param(dict(shares=1024, quota=-1, period=100000, memory_limit=UNLIMITED_V1),
                 Spec(1024, 0, 100000, UNLIMITED_V1), id="unlimited"),
])
def test_v1_spec(kwargs: dict[str, int], want: Spec) -> None:
    assert v1_spec(**kwargs) == want


@pytest.mark.parametrize(("weight", "cpu_max", "memory_max", "want"), [
    pytest.param(100, "50000 100000\n", "67108864\n", Spec(2597, 50000, 100000, 67108864),
                 id="limited"),
    pytest.param(100, "max 100000\n", "max\n", Spec(2597, 0, 100000, (1 << 64) - 1),
                 id="unlimited"),
    pytest.param(None, None, None, Spec(0, 0, 0, 0), id="no-files"),
])
def test_v2_spec(weight: int | None, cpu_max: str | None, memory_max: str | None,
                 want: Spec) -> None:
    assert v2_spec(weight=weight, cpu_max=cpu_max, memory_max=memory_max) == want


@pytest.mark.parametrize(("limit", "exported"), [
    pytest.param(67108864, 67108864, id="a-limit"),
    pytest.param(UNLIMITED_V1, 0, id="v1-unlimited"),
    pytest.param((1 << 64) - 1, 0, id="v2-max"),
])
def test_memory_limit_value(limit: int, exported: int) -> None:
    assert memory_limit_value(limit) == exported


# --- the reader over fake trees -----------------------------------------------------------

V1_FILES = {
    "cpu/corral/ns/c1/cpu.shares": "512\n",
    "cpu/corral/ns/c1/cpu.cfs_quota_us": "50000\n",
    "cpu/corral/ns/c1/cpu.cfs_period_us": "100000\n",
    "cpu/corral/ns/c1/cpu.stat": "nr_periods 40\nnr_throttled 12\nthrottled_time 600000000\n",
    "cpuacct/corral/ns/c1/cpuacct.usage": "3500000000\n",
    "cpuacct/corral/ns/c1/cpuacct.stat": "user 250\nsystem 75\n",
    "memory/corral/ns/c1/memory.usage_in_bytes": "5000000\n",
    "memory/corral/ns/c1/memory.limit_in_bytes": "67108864\n",
    "memory/corral/ns/c1/memory.use_hierarchy": "1\n",
    "memory/corral/ns/c1/memory.stat": V1_MEMORY_STAT,
    "memory/corral/ns/c1/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
    "blkio/corral/ns/c1/blkio.bfq.io_service_bytes_recursive": "Total 0\n",
    "blkio/corral/ns/c1/blkio.throttle.io_service_bytes_recursive":
        "254:0 Read 4096\n254:0 Write 8192\n254:0 Total 12288\nTotal 12288\n",
}

V1_WANT_CPU = CpuStats(usage_ns=3_500_000_000, user_ns=2_500_000_000, system_ns=750_000_000,
                       periods=40, throttled_periods=12, throttled_ns=600_000_000)


@pytest.mark.parametrize(("extra", "mode"), [
    pytest.param({}, "v1", id="v1"),
    pytest.param({"unified/cgroup.controllers": "hugetlb\n"}, "hybrid", id="hybrid"),
])
def test_reader_v1_tree(tmp_path: object, extra: dict[str, str], mode: str) -> None:
    root = str(tmp_path)
    write_tree(root, {**V1_FILES, **extra})
    reader = CgroupReader(root, clock_ticks=100)
    assert reader.layout.mode == mode
    stats = reader.read("/corral/ns/c1")
    assert stats is not None
    assert stats.cpu == V1_WANT_CPU
    assert stats.memory is not None
    assert stats.memory.usage == 5000000 and stats.memory.working_set == 4000000
    assert stats.memory.oom_kills == 1
    assert stats.spec == Spec(512, 50000, 100000, 67108864)
    # the bfq file has no entries, so the throttle one counts (libcontainer's order)
    assert stats.disk_io == [DiskIO(254, 0, 4096, 8192)]


def test_reader_co_mounted_cpu_cpuacct(tmp_path: object) -> None:
    root = str(tmp_path)
    files = {}
    for rel, text in V1_FILES.items():
        top, _, below = rel.partition("/")
        files[f"cpu,cpuacct/{below}" if top in ("cpu", "cpuacct") else rel] = text
    write_tree(root, files)
    reader = CgroupReader(root, clock_ticks=100)
    assert reader.layout.dirs["cpu"] == reader.layout.dirs["cpuacct"]
    stats = reader.read("/corral/ns/c1")
    assert stats is not None and stats.cpu == V1_WANT_CPU


def test_reader_v2_tree(tmp_path: object) -> None:
    root = str(tmp_path)
    write_tree(root, {
        "cgroup.controllers": "cpuset cpu io memory pids\n",
        "corral/ns/c2/cpu.stat": "usage_usec 3500000\nuser_usec 2500000\nsystem_usec 1000000\n"
                                 "nr_periods 40\nnr_throttled 12\nthrottled_usec 600000\n",
        "corral/ns/c2/cpu.weight": "100\n",
        "corral/ns/c2/cpu.max": "50000 100000\n",
        "corral/ns/c2/memory.current": "9000000\n",
        "corral/ns/c2/memory.max": "max\n",
        "corral/ns/c2/memory.swap.current": "4096\n",
        "corral/ns/c2/memory.stat": V2_MEMORY_STAT,
        "corral/ns/c2/memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        "corral/ns/c2/io.stat": "254:0 rbytes=1048576 wbytes=2097152 rios=1 wios=2 dbytes=0 "
                                "dios=0\n",
    })
    reader = CgroupReader(root)
    assert reader.layout.mode == "v2"
    stats = reader.read("/corral/ns/c2")
    assert stats is not None
    assert stats.cpu == CpuStats(3_500_000_000, 2_500_000_000, 1_000_000_000, 40, 12,
                                 600_000_000)
    assert stats.memory == MemoryStats(usage=9000000, working_set=7000000, rss=3000000,
                                       cache=5000000, swap=4096, mapped_file=700000,
                                       oom_kills=1)
    assert stats.spec == Spec(2597, 50000, 100000, (1 << 64) - 1)
    assert memory_limit_value(stats.spec.memory_limit) == 0
    assert stats.disk_io == [DiskIO(254, 0, 1048576, 2097152)]


@pytest.mark.parametrize("files", [
    pytest.param({"cgroup.controllers": "cpu memory\n"}, id="v2"),
    pytest.param({"memory/memory.usage_in_bytes": "1\n", "cpu/cpu.shares": "1024\n"}, id="v1"),
])
def test_reader_returns_none_for_a_cgroup_that_is_gone(tmp_path: object,
                                                       files: dict[str, str]) -> None:
    root = str(tmp_path)
    write_tree(root, files)
    assert CgroupReader(root).read("/corral/ns/gone") is None


def test_detect_layout_of_a_missing_root(tmp_path: object) -> None:
    layout = detect_layout(os.path.join(str(tmp_path), "nothing"))
    assert layout.mode == "v1" and layout.dirs == {}


def test_read_interfaces_from_a_fake_proc(tmp_path: object) -> None:
    proc = str(tmp_path)
    write_tree(proc, {"4242/net/dev": NET_DEV})
    assert [i.name for i in read_interfaces(4242, proc_root=proc)] == ["eth0", "net1"]
    assert read_interfaces(4343, proc_root=proc) == []  # exited
    assert read_interfaces(0, proc_root=proc) == []  # unknown


def test_device_names_from_sys_dev_block(tmp_path: object) -> None:
    sys_root = str(tmp_path)
    write_tree(sys_root, {"dev/block/254:0/uevent": "MAJOR=254\nMINOR=0\nDEVNAME=vda\n"})
    names = DeviceNames(sys_root=sys_root)
    assert names.name(254, 0) == "/dev/vda"
    assert names.name(8, 0) == ""
