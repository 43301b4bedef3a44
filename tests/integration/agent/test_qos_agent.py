"""corral-agent's reservation flags end to end (etcd, a controlplane, corral-runtimed): the
Node reports capacity less --system-reserved, --kube-reserved and the eviction threshold as
its allocatable, --cgroup-parent is held to capacity less the reservations, a pod's cgroup
gets --pod-max-pids, and a reservation above the capacity stops the agent at start."""

from __future__ import annotations

import os
import subprocess

from agent import qos as Q
from api import quantity
from tests.integration.agent.test_agent import (  # noqa: F401 (fixtures)
    ROOT,
    Agent,
    cp,
    etcd,
    make_pod,
    rtd,
    running_ready,
    until,
)
from tests.integration.runtime.service.conftest import busybox as busybox  # fixtures, one
from tests.integration.runtime.service.conftest import registry as registry  # per module
from tests.integration.runtime.service.test_runtimed import Runtimed
from tests.support import process
from tests.support.controlplane import ControlPlane

GI, MI = 1 << 30, 1 << 20
RESERVED = ["--system-reserved", "cpu=250m,memory=512Mi,pid=1000",
            "--kube-reserved", "cpu=250m,memory=256Mi", "--pod-max-pids", "50"]


def read(fs: Q.Cgroupfs, controller: str, path: str, name: str) -> str:
    held = fs.holding(controller)
    assert held is not None, controller
    with open(os.path.join(held.mount + path, name)) as f:
        return f.read().strip()


def test_the_reservations_show_in_allocatable_and_hold_the_cgroups(
        cp: ControlPlane, rtd: Runtimed, busybox: str) -> None:  # noqa: F811
    fs = Q.host_cgroupfs()
    agent = Agent(cp, rtd, "node-reserved")
    agent.cmd += RESERVED
    agent.start()
    try:
        c = cp.client()
        node = until("the node's status", lambda: c.get("nodes", agent.node).get(
            "status", {}).get("allocatable"), agent)
        status = c.get("nodes", agent.node)["status"]
        cap, alloc = status["capacity"], status["allocatable"]
        milli = quantity.parse(cap["cpu"]).milli_value()
        memory = quantity.parse(cap["memory"]).value()
        assert quantity.parse(alloc["cpu"]).milli_value() == milli - 500, node
        assert quantity.parse(alloc["memory"]).value() == memory - 768 * MI - 100 * MI
        assert alloc["pods"] == cap["pods"]
        # the pods' parent: capacity less the reservations, without the eviction threshold
        parent = rtd.cgroup_parent
        if fs.mode != "v2":
            # the kernel keeps whole pages
            assert int(read(fs, "memory", parent, "memory.limit_in_bytes")) // 4096 == \
                (memory - 768 * MI) // 4096
            assert read(fs, "cpu", parent, "cpu.shares") == str((milli - 500) * 1024 // 1000)
        else:
            assert int(read(fs, "memory", parent, "memory.max")) // 4096 == \
                (memory - 768 * MI) // 4096
            assert read(fs, "cpu", parent, "cpu.weight") == \
                str(Q.shares_to_weight((milli - 500) * 1024 // 1000))
        if fs.has("pids"):
            with open("/proc/sys/kernel/pid_max") as f, \
                    open("/proc/sys/kernel/threads-max") as g:
                pids = min(int(f.read()), int(g.read()))
            assert read(fs, "pids", parent, "pids.max") == str(pids - 1000)

        # a pod's cgroup gets --pod-max-pids
        c.create("pods", make_pod("capped", agent.node, busybox, ["sleep", "3600"], grace=1),
                 namespace="default")
        until("capped Running", lambda: running_ready(c, "capped"), agent, timeout=60)
        pod = c.get("pods", "capped", namespace="default")
        path = Q.pod_cgroup(pod, parent)
        if fs.has("pids"):
            assert read(fs, "pids", path, "pids.max") == "50"
        c.delete("pods", "capped", namespace="default", grace_period=1)
        until("capped gone", lambda: not c.list("pods", namespace="default")["items"],
              agent, timeout=30)
        until("its sandbox removed", lambda: not rtd.sandbox_ids(), agent, timeout=20)
    finally:
        agent.stop()


def test_a_reservation_above_capacity_stops_the_agent(
        cp: ControlPlane, rtd: Runtimed) -> None:  # noqa: F811
    agent = Agent(cp, rtd, "node-overbooked")
    cmd = [*agent.cmd, "--system-reserved", "memory=64Ti"]
    proc = process.start(cmd, log_path=agent.log_path, cwd=ROOT, new_session=True)
    try:
        rc = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.stop(proc, timeout=5, kill_timeout=None)
        raise AssertionError(f"the agent did not stop:\n{agent.log_tail()}") from None
    assert rc == 2
    with open(agent.log_path) as f:
        log = f.read()
    assert "corral-agent: --system-reserved: memory: reserving 68719579136Ki (with the " \
        "100Mi hard eviction threshold) exceeds the node's capacity" in log, log[-2000:]
