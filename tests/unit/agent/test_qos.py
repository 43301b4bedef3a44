"""Pod and QoS cgroups: tiers and settings (pure), and the cgroupfs edge on fake trees that
act as the kernel does (control files appear with a directory, a busy cgroup refuses
rmdir, v2 subtree_control takes "+controller")."""

from __future__ import annotations

import errno
import os
from typing import Any

import pytest

from agent import qos as Q
from agent import status as S

MI = 1024 * 1024
UID = "0b5e-11"


def pod_of(*containers: dict[str, Any], init: tuple[dict[str, Any], ...] = (),
           overhead: dict[str, str] | None = None, uid: str = UID) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": f"c{i}", "image": "b", "resources": r}
                                           for i, r in enumerate(containers)]}
    if init:
        spec["initContainers"] = [{"name": f"i{i}", "image": "b", "resources": r}
                                  for i, r in enumerate(init)]
    if overhead:
        spec["overhead"] = overhead
    return {"metadata": {"name": "web", "namespace": "shop", "uid": uid}, "spec": spec}


def lim(cpu: str | None = None, memory: str | None = None, *,
        req: dict[str, str] | None = None) -> dict[str, Any]:
    """A container's resources: these limits (requests default to them) and REQ."""
    limits = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    return {"limits": limits, **({"requests": req} if req else {})}


# ---- pure: tiers and settings -----------------------------------------------------------


@pytest.mark.parametrize(("pod", "qos", "want"), [
    pytest.param(pod_of(lim("100m", "32Mi"), lim("100m", "32Mi")), "Guaranteed",
                 Q.PodResources(204, 20_000, 100_000, 64 * MI), id="guaranteed-sums"),
    pytest.param(pod_of(lim("100m", "32Mi"), lim("200m", req={"memory": "16Mi"})), "Burstable",
                 Q.PodResources(307, 30_000, 100_000, 0), id="burstable-a-memory-limit-missing"),
    pytest.param(pod_of(lim(None, "32Mi", req={"cpu": "100m"}), lim(None, "16Mi")), "Burstable",
                 Q.PodResources(102, 0, 100_000, 48 * MI), id="burstable-a-cpu-limit-missing"),
    pytest.param(pod_of({"requests": {"cpu": "1500m", "memory": "1Gi"}}, {}), "Burstable",
                 Q.PodResources(1536, 0, 100_000, 0), id="burstable-requests-only"),
    pytest.param(pod_of({}, {}), "BestEffort", Q.PodResources(2), id="besteffort"),
    pytest.param(pod_of(lim("100m", "32Mi"), init=(lim("1", "128Mi"),)), "Guaranteed",
                 Q.PodResources(1024, 100_000, 100_000, 128 * MI),
                 id="init-container-larger-than-the-sum"),
    pytest.param(pod_of(lim("100m", "32Mi"), lim("100m", "32Mi"),
                        overhead={"cpu": "50m", "memory": "8Mi"}), "Guaranteed",
                 Q.PodResources(256, 25_000, 100_000, 72 * MI), id="overhead-added"),
    pytest.param(pod_of(lim("1m", "4Mi")), "Guaranteed",
                 Q.PodResources(2, 1_000, 100_000, 4 * MI), id="minimum-shares-and-quota"),
])
def test_pod_resources(pod: dict[str, Any], qos: str, want: Q.PodResources) -> None:
    assert S.qos_class(pod["spec"]) == qos  # the class status reports is the tier's
    assert Q.tier(pod) == Q.TIERS[qos]
    assert Q.pod_resources(pod) == want


@pytest.mark.parametrize(("res", "mode", "want"), [
    pytest.param(Q.PodResources(204, 20_000, 100_000, 64 * MI), "v1",
                 {"cpu": {"cpu.shares": "204", "cpu.cfs_period_us": "100000",
                          "cpu.cfs_quota_us": "20000"},
                  "memory": {"memory.limit_in_bytes": str(64 * MI)}}, id="v1-limited"),
    pytest.param(Q.PodResources(2), "hybrid",
                 {"cpu": {"cpu.shares": "2", "cpu.cfs_period_us": "100000",
                          "cpu.cfs_quota_us": "-1"},
                  "memory": {"memory.limit_in_bytes": "-1"}}, id="hybrid-unlimited"),
    pytest.param(Q.PodResources(204, 20_000, 100_000, 64 * MI), "v2",
                 {"cpu": {"cpu.weight": "8", "cpu.max": "20000 100000"},
                  "memory": {"memory.max": str(64 * MI)}}, id="v2-limited"),
    pytest.param(Q.PodResources(2), "v2",
                 {"cpu": {"cpu.weight": "1", "cpu.max": "max 100000"},
                  "memory": {"memory.max": "max"}}, id="v2-unlimited"),
])
def test_pod_files(res: Q.PodResources, mode: str, want: Q.Files) -> None:
    assert Q.pod_files(res, mode) == want


@pytest.mark.parametrize(("shares", "weight"), [
    pytest.param(2, 1, id="min"), pytest.param(1024, 39, id="one-cpu"),
    pytest.param(262_144, 10_000, id="max"),
])
def test_shares_to_weight(shares: int, weight: int) -> None:
    assert Q.shares_to_weight(shares) == weight


@pytest.mark.parametrize(("name", "mode", "milli", "want"), [
    pytest.param("besteffort", "v1", 0, {"cpu": {"cpu.shares": "2"}}, id="besteffort-v1"),
    pytest.param("besteffort", "v2", 0, {"cpu": {"cpu.weight": "1"}}, id="besteffort-v2"),
    pytest.param("burstable", "hybrid", 1500, {"cpu": {"cpu.shares": "1536"}},
                 id="burstable-from-requests"),
    pytest.param("", "v1", 0, {}, id="guaranteed-has-no-tier"),
])
def test_tier_files(name: str, mode: str, milli: int, want: Q.Files) -> None:
    assert Q.tier_files(name, mode, burstable_milli=milli) == want


def test_burstable_requests_sums_only_burstable_pods() -> None:
    pods = [pod_of({"requests": {"cpu": "250m"}}), pod_of({"requests": {"cpu": "500m"}}, {}),
            pod_of(lim("1", "1Gi")), pod_of({})]
    assert Q.burstable_requests(pods) == 750


@pytest.mark.parametrize(("pod", "parent", "want"), [
    pytest.param(pod_of(lim("1", "1Gi")), "/kubepods", f"/kubepods/pod{UID}", id="guaranteed"),
    pytest.param(pod_of({"requests": {"cpu": "1"}}), "/kubepods/", f"/kubepods/burstable/pod{UID}",
                 id="burstable"),
    pytest.param(pod_of({}), "/a/b", f"/a/b/besteffort/pod{UID}", id="besteffort"),
    pytest.param(pod_of({}), "", "", id="no-parent-no-pod-cgroup"),
])
def test_pod_cgroup(pod: dict[str, Any], parent: str, want: str) -> None:
    assert Q.pod_cgroup(pod, parent) == want


@pytest.mark.parametrize(("pod", "parent", "match"), [
    pytest.param(pod_of({}), "kubepods", r"Pod shop/web: --cgroup-parent: must be an absolute",
                 id="relative-parent"),
    pytest.param(pod_of({}), "/a/../b", r"--cgroup-parent", id="dotdot-parent"),
    pytest.param(pod_of({}, uid="../x"), "/k", r"Pod shop/web: metadata.uid: .*'\.\./x'",
                 id="uid-leaves-the-parent"),
    pytest.param(pod_of({}, uid=""), "/k", r"metadata.uid", id="no-uid"),
])
def test_pod_cgroup_refuses(pod: dict[str, Any], parent: str, match: str) -> None:
    with pytest.raises(Q.CgroupError, match=match):
        Q.pod_cgroup(pod, parent)


# ---- the cgroupfs edge on fake trees ------------------------------------------------------


class FakeKernel(Q.CgroupIO):
    """Directories get the control files of their hierarchy; rmdir refuses a cgroup with
    tasks or children (EBUSY); every write is recorded; REFUSE names files whose writes
    fail with EINVAL. hugetlb.<size>.* files exist in a v1 hugetlb hierarchy, and in a
    unified one below a parent whose subtree_control enables hugetlb."""

    V1 = {"cpu": {"cpu.shares": "1024", "cpu.cfs_period_us": "100000",
                  "cpu.cfs_quota_us": "-1"},
          "memory": {"memory.limit_in_bytes": "9223372036854771712"},
          "cpuset": {"cpuset.cpus": "", "cpuset.mems": ""}, "pids": {"pids.max": "max"}}
    V2 = {"cpu.weight": "100", "cpu.max": "max 100000", "memory.max": "max",
          "pids.max": "max", "cgroup.subtree_control": ""}

    def __init__(self, root: str) -> None:
        self.root = root
        self.writes: list[tuple[str, str]] = []
        self.refuse: set[str] = set()

    def files_for(self, path: str) -> dict[str, str]:
        rel = os.path.relpath(path, self.root).split("/")
        if os.path.exists(os.path.join(self.root, "cgroup.controllers")):  # v2
            return dict(self.V2)  # cgroup.controllers: read() asks the parent
        if rel[0] == "unified":  # cgroup.controllers: read() asks the parent
            return {"cgroup.subtree_control": ""}
        return dict(self.V1.get(rel[0], {}))

    def mkdir(self, path: str) -> None:
        os.mkdir(path)
        for name, value in {"cgroup.procs": "", **self.files_for(path)}.items():
            with open(os.path.join(path, name), "w") as f:
                f.write(value)

    def read(self, path: str) -> str:
        d, name = os.path.split(path)
        if name == "cgroup.controllers" and d != self.root and \
                not os.path.exists(path):  # v2: what the parent enables for its children
            return self.read(os.path.join(os.path.dirname(d), "cgroup.subtree_control"))
        return super().read(path)

    def write(self, path: str, value: str) -> None:
        self.writes.append((os.path.relpath(path, self.root), value))
        if os.path.basename(path) in self.refuse:
            raise OSError(errno.EINVAL, "Invalid argument")
        if os.path.basename(path).startswith("hugetlb.") and not os.path.exists(path) and \
                self.hugetlb_in(os.path.dirname(path)):
            open(path, "w").close()  # the kernel's file, made when the controller came on
        if os.path.basename(path) == "cgroup.subtree_control":
            on = set(self.read(path).split()) | {value.lstrip("+")}
            value = " ".join(sorted(on))
        if os.path.basename(path) == "memory.limit_in_bytes" and value == "-1":
            value = "9223372036854771712"  # what v1 reads back for "no limit"
        super().write(path, value)

    def hugetlb_in(self, d: str) -> bool:
        if os.path.relpath(d, self.root).split("/")[0] == "hugetlb":
            return True
        parent = os.path.join(os.path.dirname(d), "cgroup.subtree_control")
        return "hugetlb" in self.read(parent).split()

    def rmdir(self, path: str) -> None:
        if not os.path.isdir(path):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        if self.read(os.path.join(path, "cgroup.procs")).strip() or any(
                e.is_dir() for e in os.scandir(path)):
            raise OSError(errno.EBUSY, "Device or resource busy", path)
        for e in os.scandir(path):
            os.unlink(e.path)
        os.rmdir(path)


def hybrid_tree(root: str, *, extra: tuple[str, ...] = ()) -> FakeKernel:
    """cpu, memory, cpuset (cpus 0-1, mems 0), name=systemd, a cpuacct symlink, unified
    with hugetlb (as this host has it); EXTRA: more v1 hierarchies (pids, hugetlb)."""
    for name in ("cpu", "memory", "cpuset", "systemd", *extra):
        os.makedirs(os.path.join(root, name))
        with open(os.path.join(root, name, "cgroup.procs"), "w") as f:
            f.write("1\n")
    for name, value in (("cpuset.cpus", "0-1\n"), ("cpuset.mems", "0\n")):
        with open(os.path.join(root, "cpuset", name), "w") as f:
            f.write(value)
    os.symlink("cpu", os.path.join(root, "cpuacct"))
    os.makedirs(os.path.join(root, "unified"))
    unified = "" if "hugetlb" in extra else "hugetlb\n"
    for name, value in (("cgroup.controllers", unified), ("cgroup.subtree_control", "")):
        with open(os.path.join(root, "unified", name), "w") as f:
            f.write(value)
    return FakeKernel(root)


def v2_tree(root: str) -> FakeKernel:
    for name, value in (("cgroup.controllers", "cpuset cpu io memory pids\n"),
                        ("cgroup.subtree_control", ""), ("cgroup.procs", "1\n")):
        with open(os.path.join(root, name), "w") as f:
            f.write(value)
    return FakeKernel(root)


def read(root: str, *parts: str) -> str:
    with open(os.path.join(root, *parts)) as f:
        return f.read().strip()


GUARANTEED = pod_of(lim("100m", "32Mi"), lim("100m", "32Mi"))


def test_hybrid_pod_cgroup_in_every_hierarchy_with_v1_files(tmp_path: Any) -> None:
    root = str(tmp_path)
    kernel = hybrid_tree(root)
    fs = Q.Cgroupfs(root, io=kernel)
    assert fs.mode == "hybrid"
    assert sorted(os.path.basename(h.mount) for h in fs.hierarchies) == \
        ["cpu", "cpuset", "memory", "systemd", "unified"]  # the cpuacct link is cpu's
    path = Q.ensure_pod_cgroup(GUARANTEED, "/kubepods", fs=fs)
    assert path == f"/kubepods/pod{UID}"
    for top in ("cpu", "memory", "cpuset", "systemd", "unified"):
        assert os.path.isdir(os.path.join(root, top, "kubepods", f"pod{UID}")), top
    assert read(root, "memory", "kubepods", f"pod{UID}", "memory.limit_in_bytes") == \
        str(64 * MI)
    assert [read(root, "cpu", "kubepods", f"pod{UID}", f) for f in
            ("cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us")] == ["204", "100000", "20000"]
    for level in ("kubepods", f"kubepods/pod{UID}"):  # cpuset copied down every level
        assert read(root, "cpuset", level, "cpuset.cpus") == "0-1"
        assert read(root, "cpuset", level, "cpuset.mems") == "0"
    # adopting it again (a restarted agent) writes nothing that already holds
    before = len(kernel.writes)
    assert Q.ensure_pod_cgroup(GUARANTEED, "/kubepods", fs=fs) == path
    assert kernel.writes[before:] == []
    assert Q.pod_cgroups("/kubepods", fs=fs) == {UID: path}


def test_besteffort_tier_gets_minimum_shares(tmp_path: Any) -> None:
    root = str(tmp_path)
    fs = Q.Cgroupfs(root, io=hybrid_tree(root))
    path = Q.ensure_pod_cgroup(pod_of({}), "/kubepods", fs=fs)
    assert path == f"/kubepods/besteffort/pod{UID}"
    assert read(root, "cpu", "kubepods", "besteffort", "cpu.shares") == "2"
    assert read(root, "cpu", "kubepods", "besteffort", f"pod{UID}", "cpu.shares") == "2"
    assert read(root, "memory", "kubepods", "besteffort", f"pod{UID}",
                "memory.limit_in_bytes") == "9223372036854771712"  # untouched: unlimited
    # the burstable tier is made with the kernel's weight until its pods set it
    Q.ensure_pod_cgroup(pod_of({"requests": {"cpu": "1"}}, uid="b-1"), "/kubepods", fs=fs)
    assert read(root, "cpu", "kubepods", "burstable", "cpu.shares") == "1024"
    assert Q.update_burstable_tier([pod_of({"requests": {"cpu": "250m"}}), GUARANTEED],
                                   "/kubepods", fs=fs) is True
    assert read(root, "cpu", "kubepods", "burstable", "cpu.shares") == "256"
    assert Q.update_burstable_tier([], "kubepods", fs=fs) is False  # logged, not raised


def test_v2_pod_cgroup_enables_controllers_and_writes_v2_files(tmp_path: Any) -> None:
    root = str(tmp_path)
    kernel = v2_tree(root)
    fs = Q.Cgroupfs(root, io=kernel)
    assert fs.mode == "v2"
    path = Q.ensure_pod_cgroup(pod_of({}), "/kubepods", fs=fs)
    pod_dir = os.path.join(root, "kubepods", "besteffort", f"pod{UID}")
    for level in (root, os.path.dirname(os.path.dirname(pod_dir)), os.path.dirname(pod_dir)):
        assert read(level, "cgroup.subtree_control") == "cpu memory", level
    assert read(root, "kubepods", "besteffort", "cpu.weight") == "1"
    assert [read(pod_dir, f) for f in ("cpu.weight", "cpu.max", "memory.max")] == \
        ["1", "max 100000", "max"]
    assert path == f"/kubepods/besteffort/pod{UID}"
    Q.ensure_pod_cgroup(GUARANTEED, "/kubepods", fs=fs)
    assert [read(root, "kubepods", f"pod{UID}", f) for f in
            ("cpu.weight", "cpu.max", "memory.max")] == ["8", "20000 100000", str(64 * MI)]


def test_remove_refuses_a_busy_pod_cgroup_and_the_sweep_retries_it(tmp_path: Any) -> None:
    root = str(tmp_path)
    kernel = hybrid_tree(root)
    fs = Q.Cgroupfs(root, io=kernel)
    path = Q.ensure_pod_cgroup(GUARANTEED, "/kubepods", fs=fs)
    other = Q.ensure_pod_cgroup(pod_of({}, uid="gone-1"), "/kubepods", fs=fs)
    for top in ("cpu", "memory"):  # a container below the pod, still running
        kernel.mkdir(os.path.join(root, top + path, "c1"))
        with open(os.path.join(root, top + path, "c1", "cgroup.procs"), "w") as f:
            f.write("4242\n")
    assert Q.remove_pod_cgroup(UID, "/kubepods", fs=fs) is False
    assert os.path.isdir(os.path.join(root, "memory" + path, "c1"))
    # the bound pod is kept; the other one is swept; the busy one is named until it is free
    assert Q.sweep_pod_cgroups("/kubepods", keep={UID}, fs=fs) == []
    assert Q.pod_cgroups("/kubepods", fs=fs) == {UID: path}
    assert not any(os.path.exists(d) for d in fs.dirs(other))
    assert Q.sweep_pod_cgroups("/kubepods", keep=(), fs=fs) == [UID]
    for top in ("cpu", "memory"):
        with open(os.path.join(root, top + path, "c1", "cgroup.procs"), "w") as f:
            f.write("")
    assert Q.sweep_pod_cgroups("/kubepods", keep=(), fs=fs) == []
    assert Q.pod_cgroups("/kubepods", fs=fs) == {}
    assert not any(os.path.exists(d) for d in fs.dirs(path))
    assert Q.remove_pod_cgroup(UID, "/kubepods", fs=fs) is True  # gone already: fine


def test_a_refused_write_names_the_pod_and_the_file(tmp_path: Any) -> None:
    root = str(tmp_path)
    kernel = hybrid_tree(root)
    kernel.refuse.add("memory.limit_in_bytes")
    fs = Q.Cgroupfs(root, io=kernel)
    with pytest.raises(Q.CgroupError, match=r"^Pod shop/web: memory.limit_in_bytes: writing "
                                            r"'67108864' to .*: Invalid argument$"):
        Q.ensure_pod_cgroup(GUARANTEED, "/kubepods", fs=fs)


@pytest.mark.parametrize("uid", [
    pytest.param("../../x", id="dotdot"), pytest.param("a/b", id="slash"),
    pytest.param("", id="empty"),
])
def test_remove_refuses_a_uid_that_leaves_the_parent(tmp_path: Any, uid: str) -> None:
    root = str(tmp_path)
    fs = Q.Cgroupfs(root, io=hybrid_tree(root))
    with pytest.raises(Q.CgroupError, match=r"^Pod uid .*: metadata.uid: not usable"):
        Q.remove_pod_cgroup(uid, "/kubepods", fs=fs)


def test_no_parent_makes_no_cgroup(tmp_path: Any) -> None:
    root = str(tmp_path)
    kernel = hybrid_tree(root)
    fs = Q.Cgroupfs(root, io=kernel)
    assert Q.ensure_pod_cgroup(GUARANTEED, "", fs=fs) == ""
    assert Q.remove_pod_cgroup(UID, "", fs=fs) is True
    assert Q.pod_cgroups("", fs=fs) == {} and kernel.writes == []


def test_no_hierarchy_is_an_error(tmp_path: Any) -> None:
    with pytest.raises(Q.CgroupError, match="no cgroup hierarchy is mounted"):
        Q.Cgroupfs(str(tmp_path))
