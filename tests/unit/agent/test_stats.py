"""agent/stats.py: CPU rate arithmetic, /proc parsing, the inventory and the sampler over
a cgroup v2 tree made in a temporary directory."""

from __future__ import annotations

import os

import pytest

from agent import stats as ST
from agent.metrics.cgroups import CgroupReader

S = 1_000_000_000


@pytest.mark.parametrize(("prev", "cur", "want"), [
    pytest.param(ST.Sample(0, 0, 0), ST.Sample(10 * S, 5 * S, 0), 500_000_000,
                 id="half-a-core"),
    pytest.param(ST.Sample(0, 0, 0), ST.Sample(2 * S, 4 * S, 0), 2 * S, id="two-cores"),
    pytest.param(ST.Sample(5, 100, 0), ST.Sample(5, 200, 0), 0, id="no-window"),
    pytest.param(ST.Sample(0, 9 * S, 0), ST.Sample(S, S, 0), 0, id="counter-reset"),
    pytest.param(ST.Sample(0, 0, 0), ST.Sample(3 * S, 1, 0), 0, id="rounds-down"),
])
def test_cpu_nano_cores(prev: ST.Sample, cur: ST.Sample, want: int) -> None:
    assert ST.cpu_nano_cores(prev, cur) == want


@pytest.mark.parametrize(("text", "want"), [
    pytest.param("0::/corral-pods/abc\n", "/corral-pods/abc", id="v2"),
    pytest.param("12:cpu,cpuacct:/p/abc\n11:memory:/p/abc\n0::/\n", "/p/abc", id="v1"),
    pytest.param("5:memory:/m/x\n0::/u/x\n", "/m/x", id="hybrid-reads-v1"),
    pytest.param("", None, id="empty"),
])
def test_parse_proc_cgroup(text: str, want: str | None) -> None:
    assert ST.parse_proc_cgroup(text) == want


def test_parse_proc_stat_cpu_counts_busy_ticks() -> None:
    # user nice system idle iowait irq softirq steal guest guest_nice
    text = "cpu  100 10 50 9000 40 5 5 2 30 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"
    assert ST.parse_proc_stat_cpu(text, clock_ticks=100) == (100 + 10 + 50 + 5 + 5 + 2) * S \
        // 100


@pytest.mark.parametrize(("meminfo", "want"), [
    pytest.param({"MemTotal": 1000, "MemFree": 300, "Inactive(file)": 200}, 500, id="normal"),
    pytest.param({"MemTotal": 1000, "MemFree": 900, "Inactive(file)": 200}, 0, id="clamped"),
    pytest.param({}, 0, id="unreadable"),
])
def test_node_memory_working_set(meminfo: dict[str, int], want: int) -> None:
    assert ST.node_memory_working_set(meminfo) == want


def test_parse_meminfo_bytes() -> None:
    got = ST.parse_meminfo("MemTotal:  16 kB\nHugePages_Total: 3\nbad line\n")
    assert got == {"MemTotal": 16 * 1024, "HugePages_Total": 3}


def put(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


@pytest.mark.asyncio
async def test_inventory_finds_cgroups_and_marks_one_network_entry(tmp_path: object) -> None:
    proc = os.path.join(str(tmp_path), "proc")
    put(os.path.join(proc, "41", "cgroup"), "0::/pods/c1\n")
    pids = {"c1": 41, "c2": 0}
    asked: list[str] = []

    async def pid_of(cid: str) -> int:
        asked.append(cid)
        if cid == "c3":
            raise LookupError("gone")
        return pids[cid]

    inv = ST.Inventory(pid_of=pid_of, cgroup_parent="/parent/", proc_root=proc)
    running = [ST.Running("default", "web", "app", "c1", "busybox", 2 * S),
               ST.Running("default", "web", "side", "c2"),
               ST.Running("kube", "db", "main", "c3")]
    await inv.refresh(running)
    got = {c.container_id: c for c in inv.containers()}
    assert got["c1"].cgroup_path == "/pods/c1" and got["c1"].pid == 41
    assert got["c1"].started_at == 2.0 and got["c1"].image == "busybox"
    assert got["c2"].cgroup_path == "/parent/c2", "no pid: the runtime's layout"
    assert got["c3"].cgroup_path == "/parent/c3" and got["c3"].pid == 0
    assert sorted(c.container_id for c in inv.containers() if c.network) == ["c1", "c3"]
    await inv.refresh(running[1:])
    assert [c.container_id for c in inv.containers()] == ["c2", "c3"]
    assert asked == ["c1", "c2", "c3", "c3"], "known containers are not asked again"
    assert [c.network for c in inv.containers()] == [True, True], "c2 now speaks for web"


@pytest.mark.asyncio
async def test_without_a_pid_a_container_is_placed_below_its_pods_cgroup() -> None:
    async def no_pid(cid: str) -> int:
        return 0

    inv = ST.Inventory(pid_of=no_pid, cgroup_parent="/parent")
    await inv.refresh([ST.Running("default", "q", "m", "c4",
                                  pod_cgroup="/parent/besteffort/podu1")])
    assert inv.containers()[0].cgroup_path == "/parent/besteffort/podu1/c4"


def cgroup_v2(root: str, name: str, *, usage_usec: int, current: int, inactive: int) -> None:
    put(os.path.join(root, name, "cpu.stat"), f"usage_usec {usage_usec}\nuser_usec 1\n")
    put(os.path.join(root, name, "memory.current"), f"{current}\n")
    put(os.path.join(root, name, "memory.stat"), f"anon 5\ninactive_file {inactive}\n")


def test_sampler_windows_and_usage(tmp_path: object) -> None:
    root = os.path.join(str(tmp_path), "cgroup")
    proc = os.path.join(str(tmp_path), "proc")
    put(os.path.join(root, "cgroup.controllers"), "cpu memory\n")
    put(os.path.join(proc, "meminfo"), "MemTotal: 1000 kB\nMemFree: 400 kB\n"
        "Inactive(file): 100 kB\n")
    put(os.path.join(proc, "stat"), "cpu 100 0 100 0 0 0 0 0\n")
    cgroup_v2(root, "c1", usage_usec=1_000_000, current=5000, inactive=1000)
    now = [10 * S]
    sampler = ST.Sampler(CgroupReader(root), proc_root=proc, clock=lambda: now[0],
                         clock_ticks=100)
    from agent.metrics.cadvisor import ContainerInfo

    infos = [ContainerInfo("c1", "app", "web", "default", "", "/c1"),
             ContainerInfo("gone", "x", "web", "default", "", "/gone")]
    sampler.sample(infos)
    assert ST.usage(sampler, "c1") is None and not sampler.has_windows(["c1"])
    now[0] += 2 * S
    cgroup_v2(root, "c1", usage_usec=2_000_000, current=6000, inactive=500)
    put(os.path.join(proc, "stat"), "cpu 300 0 200 0 0 0 0 0\n")
    sampler.sample(infos)
    assert ST.usage(sampler, "c1") == ST.Usage(cpu_nano_cores=500_000_000,
                                               memory_working_set=5500)
    assert ST.usage(sampler, ST.NODE) == ST.Usage(cpu_nano_cores=1_500_000_000,
                                                  memory_working_set=500 * 1024)
    assert "gone" not in sampler.series
    assert sampler.has_windows([ST.NODE, "c1"])
    # a third sample slides the window; a container no longer listed is dropped
    now[0] += S
    sampler.sample([])
    assert "c1" not in sampler.series
    w = sampler.window(ST.NODE)
    assert w is not None and w[1].at_ns - w[0].at_ns == S
