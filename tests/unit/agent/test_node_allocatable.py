"""node.py: kubelet's Node Allocatable. --system-reserved / --kube-reserved /
--enforce-node-allocatable / --pod-max-pids parsing and their errors, allocatable =
capacity - reservations - the 100Mi eviction threshold, the pods' parent cgroup limits
(no eviction threshold), and enforce_reservation on a fake cgroup tree."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest

from agent import main as M
from agent import node as N
from agent import qos as Q
from tests.unit.agent.test_qos import hybrid_tree, read, v2_tree

GI, MI = 1 << 30, 1 << 20
FACTS = N.HostFacts(cpus=2, memory=8 * GI, hostname="n1", internal_ip="10.0.0.1",
                    kernel="6.1", os_image="Debian", arch="amd64", machine_id="m",
                    boot_id="b", runtime_version="corral://0.1", pids=32768)
SYS = N.Reserved(cpu=500, memory=GI, pid=1000)
KUBE = N.Reserved(cpu=250, memory=512 * MI)


@pytest.mark.parametrize(("text", "want"), [
    pytest.param("", N.Reserved(), id="empty"),
    pytest.param("cpu=500m,memory=1Gi,pid=1000", N.Reserved(500, GI, 1000), id="all-three"),
    pytest.param(" cpu = 1 , memory=100Mi,", N.Reserved(1000, 100 * MI), id="spaces-comma"),
    pytest.param("memory=1G", N.Reserved(memory=10**9), id="decimal-memory"),
    pytest.param("cpu=0.25", N.Reserved(cpu=250), id="fractional-cpu"),
])
def test_parse_reserved(text: str, want: N.Reserved) -> None:
    assert N.parse_reserved("--system-reserved", text) == want


@pytest.mark.parametrize(("text", "message"), [
    pytest.param("memory=1Q", '--system-reserved: memory: invalid quantity "1Q"',
                 id="bad-quantity"),
    pytest.param("cpu=", '--system-reserved: cpu: invalid quantity ""', id="no-quantity"),
    pytest.param("gpu=1", "--system-reserved: gpu: not a reservable resource (want cpu, "
                 "memory, pid)", id="unknown-resource"),
    pytest.param("ephemeral-storage=1Gi", "--system-reserved: ephemeral-storage: not a "
                 "reservable resource (want cpu, memory, pid)", id="ephemeral-storage"),
    pytest.param("memory", "--system-reserved: 'memory': want resource=quantity",
                 id="no-equals"),
    pytest.param("=1Gi", "--system-reserved: '=1Gi': want resource=quantity", id="no-key"),
    pytest.param("cpu=1,cpu=2", "--system-reserved: cpu: given twice", id="twice"),
    pytest.param("memory=-1Gi", '--system-reserved: memory: must be >= 0, got "-1Gi"',
                 id="negative"),
])
def test_parse_reserved_refuses(text: str, message: str) -> None:
    with pytest.raises(N.ReservedError) as err:
        N.parse_reserved("--system-reserved", text)
    assert str(err.value) == message


@pytest.mark.parametrize(("text", "want"), [
    pytest.param("pods", {"pods"}, id="pods"), pytest.param("none", set(), id="none"),
    pytest.param("", set(), id="empty-is-none"), pytest.param("pods,", {"pods"}, id="comma"),
])
def test_parse_enforced(text: str, want: set[str]) -> None:
    assert N.parse_enforced(text) == want


@pytest.mark.parametrize(("text", "message"), [
    pytest.param("system-reserved", "--enforce-node-allocatable: system-reserved: not "
                 "supported", id="system-reserved"),
    pytest.param("pods,none", "--enforce-node-allocatable: none: cannot be combined",
                 id="none-and-pods"),
])
def test_parse_enforced_refuses(text: str, message: str) -> None:
    with pytest.raises(N.ReservedError, match=f"^{message}"):
        N.parse_enforced(text)


@pytest.mark.parametrize(("text", "want"), [
    pytest.param("-1", -1, id="unlimited"), pytest.param("0", 0, id="zero"),
    pytest.param("1024", 1024, id="limit"),
    pytest.param("-2", "--pod-max-pids: must be -1 (unlimited) or more, got -2", id="below"),
    pytest.param("many", "--pod-max-pids: want an integer, got 'many'", id="not-a-number"),
])
def test_parse_pod_max_pids(text: str, want: int | str) -> None:
    if isinstance(want, int):
        assert N.parse_pod_max_pids(text) == want
        return
    with pytest.raises(N.ReservedError) as err:
        N.parse_pod_max_pids(text)
    assert str(err.value) == want


ARGS = ["--config", "c", "--node-name", "n", "--runtime-socket", "s"]


def test_flags_default_to_kubelets() -> None:
    args = M.parse_args(ARGS)
    assert (args.system_reserved, args.kube_reserved) == (N.Reserved(), N.Reserved())
    assert args.enforce_node_allocatable == {"pods"}
    assert args.pod_max_pids == -1
    args = M.parse_args([*ARGS, "--system-reserved", "cpu=500m,memory=1Gi,pid=1000",
                         "--kube-reserved", "memory=512Mi", "--enforce-node-allocatable",
                         "none", "--pod-max-pids", "256"])
    assert (args.system_reserved, args.kube_reserved) == (SYS, N.Reserved(memory=512 * MI))
    assert (args.enforce_node_allocatable, args.pod_max_pids) == (set(), 256)


@pytest.mark.parametrize(("flags", "message"), [
    pytest.param(["--system-reserved", "memory=1Q"],
                 'argument --system-reserved: memory: invalid quantity "1Q"', id="system"),
    pytest.param(["--kube-reserved", "pid=x"],
                 'argument --kube-reserved: pid: invalid quantity "x"', id="kube"),
    pytest.param(["--enforce-node-allocatable", "kube-reserved"],
                 "argument --enforce-node-allocatable: kube-reserved: not supported",
                 id="enforce"),
    pytest.param(["--pod-max-pids", "-7"],
                 "argument --pod-max-pids: must be -1 (unlimited) or more, got -7",
                 id="pod-max-pids"),
])
def test_a_bad_flag_fails_at_start_naming_it(flags: list[str], message: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        M.parse_args([*ARGS, *flags])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def ki(n: int) -> str:
    return f"{n // 1024}Ki"


@pytest.mark.parametrize(("reserve", "facts", "want"), [
    pytest.param(N.Reservation(), FACTS, ("2", ki(8 * GI - 100 * MI)),
                 id="eviction-threshold-only"),
    pytest.param(N.Reservation(system=SYS, kube=KUBE), FACTS,
                 ("1250m", ki(8 * GI - GI - 512 * MI - 100 * MI)), id="system-and-kube"),
    pytest.param(N.Reservation(system=N.Reserved(cpu=1000)), FACTS,
                 ("1", ki(8 * GI - 100 * MI)), id="whole-cpus-print-as-cores"),
    pytest.param(N.Reservation(kube=N.Reserved(memory=10**9)), FACTS,
                 ("2", str(8 * GI - 10**9 - 100 * MI)), id="decimal-memory-prints-bytes"),
    pytest.param(N.Reservation(), N.HostFacts(**{**FACTS.__dict__, "memory": 8 * GI + 5}),
                 ("2", ki(8 * GI - 100 * MI)), id="capacity-in-whole-Ki"),
    pytest.param(N.Reservation(system=N.Reserved(pid=1000), enforce=frozenset()), FACTS,
                 ("2", ki(8 * GI - 100 * MI)), id="pids-and-enforcement-do-not-show"),
])
def test_allocatable_is_capacity_less_reservations_and_eviction(
        reserve: N.Reservation, facts: N.HostFacts, want: tuple[str, str]) -> None:
    assert reserve.allocatable(facts) == {"cpu": want[0], "memory": want[1], "pods": "110"}
    reserve.check(facts)  # fits


def test_node_status_reports_the_allocatable() -> None:
    status = N.node_status(FACTS, ready=True, reserve=N.Reservation(system=SYS, kube=KUBE))
    assert status["capacity"] == {"cpu": "2", "memory": ki(8 * GI), "pods": "110"}
    assert status["allocatable"] == {"cpu": "1250m", "memory": "6713344Ki", "pods": "110"}


@pytest.mark.parametrize(("reserve", "facts", "message"), [
    pytest.param(N.Reservation(system=N.Reserved(memory=8 * GI)), FACTS,
                 f"--system-reserved: memory: reserving {ki(8 * GI + 100 * MI)} (with the "
                 f"100Mi hard eviction threshold) exceeds the node's capacity {ki(8 * GI)}",
                 id="memory-with-eviction"),
    pytest.param(N.Reservation(system=N.Reserved(cpu=1000), kube=N.Reserved(cpu=1500)), FACTS,
                 "--system-reserved, --kube-reserved: cpu: reserving 2500m exceeds the "
                 "node's capacity 2", id="cpu-of-both"),
    pytest.param(N.Reservation(kube=N.Reserved(pid=40000)), FACTS,
                 "--kube-reserved: pid: reserving 40000 exceeds the node's capacity 32768",
                 id="pid"),
])
def test_a_reservation_above_capacity_is_refused(
        reserve: N.Reservation, facts: N.HostFacts, message: str) -> None:
    with pytest.raises(N.ReservedError) as err:
        reserve.check(facts)
    assert str(err.value) == message


def test_an_unknown_pid_capacity_refuses_no_pid_reservation() -> None:
    N.Reservation(kube=N.Reserved(pid=40000)).check(N.HostFacts(**{**FACTS.__dict__,
                                                                   "pids": 0}))


@pytest.mark.parametrize(("reserve", "want"), [
    pytest.param(N.Reservation(system=SYS, kube=KUBE),
                 N.PodsLimits(cpu=1250, memory=8 * GI - GI - 512 * MI, pids=31768),
                 id="pods-enforced-without-eviction"),
    pytest.param(N.Reservation(kube=KUBE), N.PodsLimits(1750, 8 * GI - 512 * MI, 32768),
                 id="no-pid-reservation-pid-capacity"),
    pytest.param(N.Reservation(system=SYS, enforce=frozenset()),
                 N.PodsLimits(2000, 8 * GI, 32768), id="none-holds-to-capacity"),
    pytest.param(N.Reservation(kube=KUBE), N.PodsLimits(1750, 8 * GI - 512 * MI, 0),
                 id="unknown-pid-capacity-max"),
])
def test_pods_limits(reserve: N.Reservation, want: N.PodsLimits) -> None:
    facts = FACTS if want.pids else N.HostFacts(**{**FACTS.__dict__, "pids": 0})
    assert reserve.pods_limits(facts) == want


@pytest.mark.parametrize(("pid_max", "threads_max", "want"), [
    pytest.param("32768\n", "192729\n", 32768, id="pid-max"),
    pytest.param("4194304\n", "60000\n", 60000, id="threads-max"),
    pytest.param("", "", 0, id="unknown"),
])
def test_pid_capacity(pid_max: str, threads_max: str, want: int) -> None:
    assert N.pid_capacity(pid_max, threads_max) == want


def test_enforce_reservation_holds_the_parent_v1(tmp_path: Any) -> None:
    root = str(tmp_path)
    fs = Q.Cgroupfs(root, io=hybrid_tree(root, extra=("pids",)), hugepages=root + "/none")
    got = N.enforce_reservation(N.Reservation(system=SYS, kube=KUBE), FACTS,
                                cgroup_parent="/kubepods", fs=fs)
    assert got == N.PodsLimits(cpu=1250, memory=8 * GI - GI - 512 * MI, pids=31768)
    assert read(root, "memory", "kubepods", "memory.limit_in_bytes") == str(got.memory)
    assert read(root, "cpu", "kubepods", "cpu.shares") == "1280"
    assert read(root, "pids", "kubepods", "pids.max") == "31768"
    # enforcement off: the capacity (kubelet sets it all the same), pids included
    N.enforce_reservation(N.Reservation(system=SYS, enforce=frozenset()), FACTS,
                          cgroup_parent="/kubepods", fs=fs)
    assert read(root, "memory", "kubepods", "memory.limit_in_bytes") == str(8 * GI)
    assert read(root, "cpu", "kubepods", "cpu.shares") == "2048"
    assert read(root, "pids", "kubepods", "pids.max") == "32768"


def test_enforce_reservation_holds_the_parent_v2(tmp_path: Any) -> None:
    root = str(tmp_path)
    fs = Q.Cgroupfs(root, io=v2_tree(root))
    N.enforce_reservation(N.Reservation(system=SYS), FACTS, cgroup_parent="/kubepods", fs=fs)
    assert read(root, "cgroup.subtree_control") == "cpu memory pids"
    assert [read(root, "kubepods", f) for f in ("cpu.weight", "memory.max", "pids.max")] == \
        [str(Q.shares_to_weight(1536)), str(7 * GI), "31768"]


@pytest.mark.parametrize(("reserve", "extra", "refuse", "message"), [
    pytest.param(N.Reservation(system=N.Reserved(cpu=3000)), ("pids",), "",
                 "--system-reserved: cpu: reserving 3 exceeds", id="checked-first"),
    pytest.param(N.Reservation(system=SYS), (), "",
                 "--cgroup-parent /kubepods: pids: the "
                 "pids cgroup controller is not mounted", id="pid-limit-without-pids"),
    pytest.param(N.Reservation(), ("pids",), "memory.limit_in_bytes",
                 "--cgroup-parent /kubepods: "
                 "memory.limit_in_bytes: writing '8589934592' to .*: Invalid argument",
                 id="refused-write"),
])
def test_enforce_reservation_errors(tmp_path: Any, reserve: N.Reservation,
                                    extra: tuple[str, ...], refuse: str, message: str) -> None:
    root = str(tmp_path)
    kernel = hybrid_tree(root, extra=extra)
    if refuse:
        kernel.refuse.add(refuse)
    fs = Q.Cgroupfs(root, io=kernel)
    with pytest.raises(N.ReservedError, match=f"^{message}"):
        N.enforce_reservation(reserve, FACTS, cgroup_parent="/kubepods", fs=fs)


class Recorder:
    """The API calls NodeRegistration makes; the Node exists."""

    def __init__(self) -> None:
        self.patches: list[dict[str, Any]] = []

    async def get(self, resource: str, name: str, **kw: Any) -> dict[str, Any]:
        return {"metadata": {"name": name, "labels": N.node_labels(name, FACTS)}}

    async def create(self, resource: str, obj: dict[str, Any], **kw: Any) -> dict[str, Any]:
        raise AssertionError("the node exists")

    async def patch(self, resource: str, name: str, patch: bytes, **kw: Any
                    ) -> dict[str, Any]:
        self.patches.append(json.loads(patch))
        return {"metadata": {"name": name}, **json.loads(patch)}


def test_registration_posts_the_reserved_allocatable() -> None:
    async def ready() -> tuple[bool, str]:
        return True, ""
    api = Recorder()
    reg = N.NodeRegistration(api, "n1", FACTS, ready,
                             reserve=N.Reservation(system=SYS, kube=KUBE))
    node = asyncio.run(reg.register())
    assert node["status"]["allocatable"]["cpu"] == "1250m"
    assert api.patches[-1]["status"]["allocatable"]["memory"] == "6713344Ki"


def test_a_parent_with_processes_is_refused_and_left_alone(tmp_path: Any) -> None:
    """--cgroup-parent naming a cgroup that has processes (say /system.slice): the pods'
    budget would cap them too (and v2 refuses controllers there): refused, nothing
    written."""
    root = str(tmp_path)
    kernel = hybrid_tree(root, extra=("pids",))
    fs = Q.Cgroupfs(root, io=kernel)
    os.makedirs(os.path.join(root, "memory", "busy"))
    with open(os.path.join(root, "memory", "busy", "cgroup.procs"), "w") as f:
        f.write("4242\n")
    before = len(kernel.writes)
    with pytest.raises(N.ReservedError, match=r"^--cgroup-parent /busy: the cgroup "
                       r".*/memory/busy has processes \(pid 4242\): give the pods a cgroup "
                       r"of their own$"):
        N.enforce_reservation(N.Reservation(), FACTS, cgroup_parent="/busy", fs=fs)
    assert kernel.writes[before:] == []


def test_huge_pages_are_resources_of_their_own_and_leave_memory(tmp_path: Any) -> None:
    """kubelet's: hugepages-<size> capacity and allocatable for every size the agent can
    limit (0 included), and the pages the kernel holds taken from allocatable memory."""
    for size_kb, n in (("2048", "256"), ("1048576", "0")):
        os.makedirs(tmp_path / f"hugepages-{size_kb}kB")
        (tmp_path / f"hugepages-{size_kb}kB" / "nr_hugepages").write_text(n + "\n")
    held = N.hugepages_held((2 * MI, GI), root=str(tmp_path))
    assert held == ((2 * MI, 256), (GI, 0))
    facts = N.HostFacts(**{**FACTS.__dict__, "hugepages": held})
    status = N.node_status(facts, ready=True, reserve=N.Reservation())
    assert {k: v for k, v in status["capacity"].items() if k.startswith("huge")} == \
        {"hugepages-2Mi": "512Mi", "hugepages-1Gi": "0"}
    alloc = status["allocatable"]
    assert (alloc["hugepages-2Mi"], alloc["hugepages-1Gi"]) == ("512Mi", "0")
    assert alloc["memory"] == f"{(8 * GI - 100 * MI - 512 * MI) // 1024}Ki"
