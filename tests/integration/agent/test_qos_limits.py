"""Node allocatable, the pod pids limit and hugetlb limits on the host's real cgroups
(hybrid here: v1 controllers, hugetlb on the unified mount): what agent.node and agent.qos
write, read back from the kernel, and a pod cgroup whose pids.max stops a fork."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from agent import node as N
from agent import qos as Q

GI, MI = 1 << 30, 1 << 20
FACTS = N.HostFacts(cpus=2, memory=4 * GI, hostname="n1", internal_ip="127.0.0.1",
                    kernel="", os_image="", arch="amd64", machine_id="m", boot_id="b",
                    runtime_version="corral://0.1", pids=32768)


def pod_of(name: str, resources: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default", "uid": str(uuid.uuid4())},
            "spec": {"containers": [{"name": "c", "image": "", "resources": resources}]}}


@pytest.fixture
def parent(tag: str, leak_check: None) -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    path = f"/{tag}"
    yield path
    assert Q.host_cgroupfs().remove(path), f"cgroup {path} is still busy"


def read(fs: Q.Cgroupfs, controller: str, path: str, name: str) -> str:
    held = fs.holding(controller)
    assert held is not None, controller
    with open(os.path.join(held.mount + path, name)) as f:
        return f.read().strip()


def memory_limit(fs: Q.Cgroupfs, path: str) -> int:
    return int(read(fs, "memory", path, "memory.max" if fs.mode == "v2" else
                    "memory.limit_in_bytes"))


def cpu_weight(fs: Q.Cgroupfs, path: str) -> str:
    return read(fs, "cpu", path, "cpu.weight" if fs.mode == "v2" else "cpu.shares")


def test_the_pods_parent_is_held_to_the_allocatable(parent: str) -> None:
    fs = Q.host_cgroupfs()
    if not fs.has("pids"):
        pytest.skip("no pids cgroup controller")
    reserve = N.Reservation(system=N.parse_reserved("--system-reserved",
                                                    "cpu=500m,memory=1Gi,pid=1000"),
                            kube=N.parse_reserved("--kube-reserved", "memory=512Mi"))
    limits = N.enforce_reservation(reserve, FACTS, cgroup_parent=parent)
    assert memory_limit(fs, parent) == limits.memory == 4 * GI - GI - 512 * MI  # no eviction
    assert cpu_weight(fs, parent) == ("59" if fs.mode == "v2" else "1536")
    assert read(fs, "pids", parent, "pids.max") == "31768"
    # the node status counts the eviction threshold as well
    assert reserve.allocatable(FACTS)["memory"] == f"{(2.5 * GI - 100 * MI) // 1024:.0f}Ki"
    # a restart with enforcement off: the capacity, pids included
    N.enforce_reservation(N.Reservation(system=reserve.system, enforce=frozenset()), FACTS,
                          cgroup_parent=parent)
    assert memory_limit(fs, parent) == 4 * GI
    assert cpu_weight(fs, parent) == ("79" if fs.mode == "v2" else "2048")
    assert read(fs, "pids", parent, "pids.max") == str(FACTS.pids)


def test_a_reservation_the_kernel_refuses_fails_the_start(parent: str) -> None:
    """A parent memory limit below what its pods already use (120Mi of tmpfs, no swap to
    push it to): the kernel says EBUSY (v1) and the agent does not start, naming the
    cgroup and the file."""
    fs = Q.host_cgroupfs()
    if fs.mode == "v2":
        pytest.skip("v2 reclaims instead of refusing a lower memory.max")
    with open("/proc/swaps") as f:
        if len(f.readlines()) > 1:
            pytest.skip("with swap the kernel can make room")
    pod = pod_of("fill", {"limits": {"memory": "256Mi"}})
    path = Q.ensure_pod_cgroup(pod, parent)
    shm = f"/dev/shm/{os.path.basename(parent)}"
    proc = subprocess.Popen(["sh", "-c", f"read x; head -c {120 * MI} /dev/zero > {shm}; "
                             "echo done; read x"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        for controller in ("memory", "pids", "cpu"):  # tmpfs pages: charged to the pod
            held = fs.holding(controller)
            if held is not None:
                with open(os.path.join(held.mount + path, "cgroup.procs"), "w") as f:
                    f.write(str(proc.pid))
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "done"
        tiny = N.Reservation(system=N.Reserved(memory=FACTS.memory - 101 * MI))
        with pytest.raises(N.ReservedError, match=rf"^--cgroup-parent {parent}: "
                           rf"memory.limit_in_bytes: writing "
                           rf"'{101 * MI}' to .*: Device or resource busy$"):
            N.enforce_reservation(tiny, FACTS, cgroup_parent=parent)
    finally:
        proc.kill()
        proc.wait()
        if os.path.exists(shm):
            os.unlink(shm)  # uncharges the pages
    assert Q.remove_pod_cgroup(pod["metadata"]["uid"], parent)


def test_pod_max_pids_stops_a_fork_in_the_pod(parent: str) -> None:
    fs = Q.host_cgroupfs()
    if not fs.has("pids"):
        pytest.skip("no pids cgroup controller")
    pod = pod_of("forks", {})
    path = Q.ensure_pod_cgroup(pod, parent, pod_max_pids=4)
    assert read(fs, "pids", path, "pids.max") == "4"
    held = fs.holding("pids")
    assert held is not None
    proc = subprocess.Popen(["sh", "-c", "read x; for i in 1 2 3 4 5 6 7 8; do "
                             "sleep 30 & done; wait"], stdin=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, text=True)
    leaf = held.mount + path + "/task"  # a leaf, as the runtime puts containers: v2 has
    os.mkdir(leaf)                      # no processes where controllers are enabled
    try:
        with open(os.path.join(leaf, "cgroup.procs"), "w") as f:
            f.write(str(proc.pid))
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 10
        def refused() -> bool:  # counted in the leaf (v1, older kernels) or at the limit
            return any(read(fs, "pids", p, "pids.events").split()[1:2] not in ([], ["0"])
                       for p in (path, path + "/task"))
        while not refused():
            assert time.monotonic() < deadline, "no fork was refused"
            time.sleep(0.05)
        assert int(read(fs, "pids", path, "pids.current")) <= 4
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # sh and its sleeps: one process group
        proc.communicate()
    deadline = time.monotonic() + 5
    while read(fs, "pids", path + "/task", "cgroup.procs"):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert Q.remove_pod_cgroup(pod["metadata"]["uid"], parent)


def test_hugetlb_limits_for_every_page_size_of_the_host(parent: str) -> None:
    fs = Q.host_cgroupfs()
    if not fs.page_sizes:
        pytest.skip("no hugetlb cgroup controller or no huge page sizes")
    suffix = "max" if fs.hugetlb_v2 else "limit_in_bytes"
    small = min(fs.page_sizes)
    size_name = Q.hugetlb_name(small)
    resource = f"hugepages-{small // 1024}Ki"
    asks = pod_of("huge", {"limits": {"cpu": "100m", "memory": "32Mi",
                                      resource: str(2 * small)}})
    plain = pod_of("plain", {})
    for pod, want in ((asks, 2 * small), (plain, 0)):
        path = Q.ensure_pod_cgroup(pod, parent)
        assert read(fs, "hugetlb", path, f"hugetlb.{size_name}.{suffix}") == str(want)
        for other in fs.page_sizes:  # sizes it does not ask for: none (kubelet's 0)
            if other != small:
                assert read(fs, "hugetlb", path,
                            f"hugetlb.{Q.hugetlb_name(other)}.{suffix}") == "0"
        assert Q.ensure_pod_cgroup(pod, parent) == path  # adopted: the same values hold
    for pod in (asks, plain):
        assert Q.remove_pod_cgroup(pod["metadata"]["uid"], parent)
