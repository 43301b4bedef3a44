"""Pod cgroup limits beyond cpu and memory: pids.max (--pod-max-pids), hugetlb limits for
the host's huge page sizes (kubelet: the pod's hugepages-<size> limits, 0 for the sizes it
does not ask for), the node-level parent's files, and the one controller walk per pod on
v2; on the fake kernels of test_qos.py."""

from __future__ import annotations

import os
from typing import Any

import pytest

from agent import qos as Q
from tests.unit.agent.test_qos import UID, FakeKernel, hybrid_tree, lim, pod_of, read, v2_tree

MI, GI = 1 << 20, 1 << 30
M2 = 2 * MI


def pages(tmp: str, *sizes_kb: int) -> str:
    """A /sys/kernel/mm/hugepages with these sizes."""
    d = os.path.join(tmp, "hugepages")
    os.makedirs(d, exist_ok=True)
    for kb in sizes_kb:
        os.makedirs(os.path.join(d, f"hugepages-{kb}kB"))
    return d


def huge(size: str, amount: str, **more: str) -> dict[str, Any]:
    return {"limits": {f"hugepages-{size}": amount, **more},
            "requests": {f"hugepages-{size}": amount, **more}}


@pytest.mark.parametrize(("size", "name"), [
    pytest.param(M2, "2MB", id="2M"), pytest.param(GI, "1GB", id="1G"),
    pytest.param(64 * 1024, "64KB", id="64K"), pytest.param(32 * MI, "32MB", id="32M"),
])
def test_hugetlb_name(size: int, name: str) -> None:
    assert Q.hugetlb_name(size) == name


@pytest.mark.parametrize(("pod", "want"), [
    pytest.param(pod_of(lim("1", "1Gi")), {}, id="none"),
    pytest.param(pod_of(huge("2Mi", "4Mi", cpu="1", memory="64Mi"),
                        huge("2Mi", "6Mi", memory="64Mi")), {M2: 10 * MI},
                 id="containers-sum"),
    pytest.param(pod_of(huge("2Mi", "4Mi", memory="64Mi"),
                        init=(huge("2Mi", "8Mi", memory="64Mi"),
                              huge("1Gi", "1Gi", memory="64Mi"))),
                 {M2: 8 * MI, GI: GI}, id="init-container-larger"),
])
def test_pod_hugepages(pod: dict[str, Any], want: dict[int, int]) -> None:
    assert Q.pod_hugepages(pod["spec"]) == want


@pytest.mark.parametrize(("pod", "max_pids", "sizes", "want"), [
    pytest.param(pod_of({}), 100, (), Q.PodResources(2, pids_limit=100),
                 id="besteffort-pids"),
    pytest.param(pod_of({}), -1, (M2, GI), Q.PodResources(2, hugepages=((M2, 0), (GI, 0))),
                 id="besteffort-no-hugepages-limited-to-0"),
    pytest.param(pod_of(huge("2Mi", "4Mi", cpu="100m", memory="32Mi")), 0, (GI, M2),
                 Q.PodResources(102, 10_000, 100_000, 32 * MI, 0, ((M2, 4 * MI), (GI, 0))),
                 id="guaranteed-2Mi-pages"),
    pytest.param(pod_of(huge("1Gi", "2Gi", cpu="100m", memory="32Mi")), -1, (M2,),
                 Q.PodResources(102, 10_000, 100_000, 32 * MI, 0, ((M2, 0),)),
                 id="a-size-the-host-lacks-is-left-out"),
])
def test_pod_resources_pids_and_hugepages(pod: dict[str, Any], max_pids: int,
                                          sizes: tuple[int, ...], want: Q.PodResources) -> None:
    assert Q.pod_resources(pod, pod_max_pids=max_pids, page_sizes=sizes) == want


RES = Q.PodResources(2, pids_limit=64, hugepages=((M2, 4 * MI), (GI, 0)))


@pytest.mark.parametrize(("mode", "hugetlb_v2", "want"), [
    pytest.param("v1", None, {"pids": {"pids.max": "64"},
                              "hugetlb": {"hugetlb.2MB.limit_in_bytes": str(4 * MI),
                                          "hugetlb.1GB.limit_in_bytes": "0"}}, id="v1"),
    pytest.param("hybrid", True, {"pids": {"pids.max": "64"},
                                  "hugetlb": {"hugetlb.2MB.max": str(4 * MI),
                                              "hugetlb.1GB.max": "0"}},
                 id="hybrid-hugetlb-on-unified"),
    pytest.param("v2", None, {"pids": {"pids.max": "64"},
                              "hugetlb": {"hugetlb.2MB.max": str(4 * MI),
                                          "hugetlb.1GB.max": "0"}}, id="v2"),
])
def test_pod_files_pids_and_hugetlb(mode: str, hugetlb_v2: bool | None,
                                    want: Q.Files) -> None:
    files = Q.pod_files(RES, mode, hugetlb_v2=hugetlb_v2)
    assert {k: v for k, v in files.items() if k in ("pids", "hugetlb")} == want
    assert "pids" not in Q.pod_files(Q.PodResources(2), mode)  # no limit: left alone


@pytest.mark.parametrize(("mode", "pids", "with_pids", "want"), [
    pytest.param("v1", 31768, True, {"cpu": {"cpu.shares": "1280"},
                                     "memory": {"memory.limit_in_bytes": str(6 * GI)},
                                     "pids": {"pids.max": "31768"}}, id="v1"),
    pytest.param("v2", 0, True, {"cpu": {"cpu.weight": "49"},
                                 "memory": {"memory.max": str(6 * GI)},
                                 "pids": {"pids.max": "max"}}, id="v2-no-pid-limit"),
    pytest.param("hybrid", 0, False, {"cpu": {"cpu.shares": "1280"},
                                      "memory": {"memory.limit_in_bytes": str(6 * GI)}},
                 id="no-pids-controller"),
])
def test_node_files(mode: str, pids: int, with_pids: bool, want: Q.Files) -> None:
    assert Q.node_files(mode, cpu_milli=1250, memory=6 * GI, pids=pids,
                        with_pids=with_pids) == want


def test_host_page_sizes(tmp_path: Any) -> None:
    d = pages(str(tmp_path), 2048, 1048576)
    os.makedirs(os.path.join(d, "hugepages-junk"))
    assert Q.host_page_sizes(d) == (M2, GI)
    assert Q.host_page_sizes(str(tmp_path / "missing")) == ()


HUGE_POD = pod_of(huge("2Mi", "4Mi", cpu="100m", memory="32Mi"))


def test_hybrid_pids_on_v1_and_no_hugetlb_from_unified(tmp_path: Any) -> None:
    """This host's shape: v1 pids hierarchy, hugetlb only on unified/. A hybrid host is a
    v1 host to the agent, as to kubelet: no hugetlb limits, nothing enabled in unified/
    (that would be a host-wide change outliving the agent)."""
    root = str(tmp_path / "cg")
    os.makedirs(root)
    kernel = hybrid_tree(root, extra=("pids",))
    fs = Q.Cgroupfs(root, io=kernel, hugepages=pages(str(tmp_path), 2048, 1048576))
    assert (fs.page_sizes, fs.hugetlb_v2) == ((), False)
    path = Q.ensure_pod_cgroup(HUGE_POD, "/kubepods", pod_max_pids=64, fs=fs)
    assert read(root, "pids" + path, "pids.max") == "64"
    assert os.path.isdir(os.path.join(root, "unified" + path))  # made, as runc makes it
    for level in ("", "kubepods", f"kubepods/pod{UID}"):
        assert read(root, "unified", level, "cgroup.subtree_control") == "", level
    assert not any(w[0].startswith("unified") for w in kernel.writes)
    before = len(kernel.writes)  # adopted as it is: nothing rewritten
    assert Q.ensure_pod_cgroup(HUGE_POD, "/kubepods", pod_max_pids=64, fs=fs) == path
    assert kernel.writes[before:] == []


def test_v1_hugetlb_hierarchy_gets_v1_names(tmp_path: Any) -> None:
    root = str(tmp_path / "cg")
    os.makedirs(root)
    fs = Q.Cgroupfs(root, io=hybrid_tree(root, extra=("pids", "hugetlb")),
                    hugepages=pages(str(tmp_path), 2048))
    assert (fs.page_sizes, fs.hugetlb_v2) == ((M2,), False)
    path = Q.ensure_pod_cgroup(pod_of({}), "/kubepods", fs=fs)
    assert read(root, "hugetlb" + path, "hugetlb.2MB.limit_in_bytes") == "0"
    assert read(root, "unified", "cgroup.subtree_control") == ""  # unified: untouched
    assert read(root, "pids" + path, "pids.max") == "max"  # --pod-max-pids -1: untouched


def test_v2_enables_pids_and_hugetlb_and_walks_once(tmp_path: Any) -> None:
    root = str(tmp_path / "cg")
    os.makedirs(root)
    kernel = v2_tree(root)
    with open(os.path.join(root, "cgroup.controllers"), "a") as f:
        f.write("hugetlb\n")
    fs = Q.Cgroupfs(root, io=Counting(kernel), hugepages=pages(str(tmp_path), 2048))
    burstable = pod_of({"requests": {"cpu": "100m"}})
    path = Q.ensure_pod_cgroup(burstable, "/kubepods", pod_max_pids=10, fs=fs)
    assert path == f"/kubepods/burstable/pod{UID}"
    for level in ("", "kubepods", "kubepods/burstable", path.lstrip("/")):
        assert read(root, level, "cgroup.subtree_control") == "cpu hugetlb memory pids"
    assert [read(root + path, f) for f in ("pids.max", "hugetlb.2MB.max")] == ["10", "0"]
    io = fs.io
    assert isinstance(io, Counting)
    # the next pod of the tier: the root's subtree_control read once (one walk, not one
    # for the tier and one for the pod); cgroup.controllers only where one is off: the
    # new pod's own
    io.reads.clear()
    Q.ensure_pod_cgroup(pod_of({"requests": {"cpu": "100m"}}, uid="b-2"), "/kubepods",
                        pod_max_pids=10, fs=fs)
    assert io.reads.count(os.path.join(root, "cgroup.subtree_control")) == 1
    assert [r for r in io.reads if r.endswith("cgroup.controllers")] == \
        [os.path.join(root, "kubepods", "burstable", "podb-2", "cgroup.controllers")]


def test_hugetlb_absent_is_skipped(tmp_path: Any) -> None:
    root = str(tmp_path / "cg")
    os.makedirs(root)
    kernel = v2_tree(root)  # cpuset cpu io memory pids: no hugetlb
    fs = Q.Cgroupfs(root, io=kernel, hugepages=pages(str(tmp_path), 2048))
    assert fs.page_sizes == ()
    path = Q.ensure_pod_cgroup(HUGE_POD, "/kubepods", fs=fs)
    assert not [p for p, _ in kernel.writes if "hugetlb" in p]
    assert not os.path.exists(os.path.join(root + path, "hugetlb.2MB.max"))


def test_pod_max_pids_without_a_pids_controller_names_the_pod(tmp_path: Any) -> None:
    root = str(tmp_path)
    fs = Q.Cgroupfs(root, io=hybrid_tree(root), hugepages=root + "/none")
    with pytest.raises(Q.CgroupError, match=r"^Pod shop/web: pids: the pids cgroup "
                                            r"controller is not mounted"):
        Q.ensure_pod_cgroup(pod_of({}), "/kubepods", pod_max_pids=10, fs=fs)


def test_ensure_node_cgroup_refuses_a_bad_parent(tmp_path: Any) -> None:
    root = str(tmp_path)
    kernel = hybrid_tree(root)
    fs = Q.Cgroupfs(root, io=kernel)
    with pytest.raises(Q.CgroupError, match=r"--cgroup-parent: must be an absolute path"):
        Q.ensure_node_cgroup("kubepods", cpu_milli=1000, memory=GI, fs=fs)
    Q.ensure_node_cgroup("", cpu_milli=1000, memory=GI, fs=fs)  # no parent: nothing
    Q.ensure_node_cgroup("/", cpu_milli=1000, memory=GI, fs=fs)  # the root: left alone
    assert os.listdir(os.path.join(root, "memory")) == ["cgroup.procs"]
    assert not kernel.writes


class Counting(Q.CgroupIO):
    """KERNEL with the paths it was asked to read."""

    def __init__(self, kernel: FakeKernel) -> None:
        self.kernel = kernel
        self.reads: list[str] = []

    def read(self, path: str) -> str:
        self.reads.append(path)
        return self.kernel.read(path)

    def write(self, path: str, value: str) -> None:
        self.kernel.write(path, value)

    def mkdir(self, path: str) -> None:
        self.kernel.mkdir(path)

    def rmdir(self, path: str) -> None:
        self.kernel.rmdir(path)


def test_a_v2_controller_the_host_lacks_is_named(tmp_path: Any) -> None:
    root = str(tmp_path)
    kernel = v2_tree(root)
    with open(os.path.join(root, "cgroup.controllers"), "w") as f:
        f.write("cpu memory\n")  # no pids
    fs = Q.Cgroupfs(root, io=kernel)
    with pytest.raises(Q.CgroupError, match=r"^Pod shop/web: pids: the pids cgroup "
                                            r"controller is not mounted"):
        Q.ensure_pod_cgroup(pod_of({}), "/kubepods", pod_max_pids=10, fs=fs)
