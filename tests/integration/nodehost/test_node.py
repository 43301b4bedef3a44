"""corral-node against the real things: etcd, a controlplane, a registry holding busybox,
real shims, corral-runc and CNI (tests/support/node.py).

    one process: runtime service (CRI on its socket) + agent (a CRI client of that socket)
    kill -9 of it      ─► no container restarted; the next corral-node adopts them
    SIGTERM            ─► exit 0, the socket gone, containers still running
    a config error     ─► exit 2 naming the file and the field, nothing left serving
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.agent.test_agent import PYTHON, ROOT, make_pod, running_ready, until
from tests.integration.runtime.service.test_runtimed import need_root
from tests.support.node import Cluster, CorralNode, cluster, corral_node, serving
from tests.support.process import alive

PIDS_CGROUP = "/sys/fs/cgroup/pids"


@pytest.fixture(scope="module")
def cl() -> Iterator[Cluster]:
    need_root()
    with cluster() as c:
        yield c


@pytest.fixture
def node(tag: str, leak_check: None, cl: Cluster) -> Iterator[CorralNode]:
    with corral_node(cl, tag=tag, name=f"node-{uuid.uuid4().hex[:6]}") as n:
        yield n


def container_pids(node: CorralNode) -> set[int]:
    """Every process in the node's pod cgroups (the containers; not their shims)."""
    out: set[int] = set()
    for d, _, _ in os.walk(PIDS_CGROUP + node.rtd.cgroup_parent):
        try:
            with open(os.path.join(d, "cgroup.procs")) as f:
                out |= {int(x) for x in f.read().split()}
        except OSError:
            continue
    return out


def run_pods(cl: Cluster, node: CorralNode, names: tuple[str, ...]) -> dict[str, Any]:
    c = cl.cp.client()
    for name in names:
        c.create("pods", make_pod(name, node.name, cl.image, ["sleep", "3600"], grace=2),
                 namespace="default")
    return {n: until(f"{n} Running", functools.partial(running_ready, c, n), node,
                     timeout=60) for n in names}


def delete_pods(cl: Cluster, node: CorralNode, names: tuple[str, ...]) -> None:
    c = cl.cp.client()
    for n in names:
        c.delete("pods", n, namespace="default")
    until("the pods to go", lambda: not c.list("pods", namespace="default")["items"], node,
          timeout=60)


def assert_unchanged(cl: Cluster, node: CorralNode, before: dict[str, Any]) -> None:
    c = cl.cp.client()
    for n, old_st in before.items():
        st = until(f"{n} still Running", functools.partial(running_ready, c, n), node)
        old, new = old_st["containerStatuses"][0], st["containerStatuses"][0]
        assert new["containerID"] == old["containerID"], node.log_tail()
        assert new["state"]["running"]["startedAt"] == old["state"]["running"]["startedAt"]
        assert new["restartCount"] == 0
        assert st["podIP"] == old_st["podIP"]


def test_kill9_of_the_node_restarts_no_container_and_the_next_node_adopts_them(
        cl: Cluster, node: CorralNode) -> None:
    names = ("a", "b")
    before = run_pods(cl, node, names)
    pids = container_pids(node)
    assert len(pids) >= 2, pids
    node.kill9()
    time.sleep(1)
    assert all(alive(p) for p in pids), "a container died with corral-node"
    node.start()
    time.sleep(6)  # several relists and status syncs of the new node
    assert_unchanged(cl, node, before)
    assert all(alive(p) for p in pids)
    delete_pods(cl, node, names)  # the new node stops what the old one started
    assert not any(alive(p) for p in pids)


def test_sigterm_stops_the_node_and_leaves_its_containers_running(
        cl: Cluster, node: CorralNode) -> None:
    before = run_pods(cl, node, ("c",))
    pids = container_pids(node)
    assert node.proc is not None
    proc = node.proc
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0, node.log_tail()
    node.agent.proc = None
    assert not os.path.exists(node.rtd.socket)  # the runtime service stopped serving
    with open(node.agent.log_path) as f:
        assert "stopped; containers keep running" in f.read()
    assert pids and all(alive(p) for p in pids)
    node.start()
    assert_unchanged(cl, node, before)
    delete_pods(cl, node, ("c",))


def run_node(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "nodehost", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, check=False)


@pytest.mark.parametrize(("toml", "agent_conf", "want"), [
    pytest.param('cgroup_parent = 5\n', "", "runtimed.toml: cgroup_parent:",
                 id="runtime-config"),
    pytest.param("", "/nonexistent/node.conf", "/nonexistent/node.conf", id="agent-config"),
])
def test_a_config_error_exits_2_naming_the_file_and_nothing_keeps_serving(
        tmp_path: Any, toml: str, agent_conf: str, want: str) -> None:
    need_root()
    d = str(tmp_path)
    config = os.path.join(d, "runtimed.toml")
    with open(config, "w") as f:
        f.write(toml)
    sock = os.path.join(d, "cri.sock")
    got = run_node("--config", agent_conf or config, "--node-name", "n1", "--root",
                   os.path.join(d, "agent"), "--runtime-root", os.path.join(d, "root"),
                   "--runtime-state", os.path.join(d, "state"), "--runtime-socket", sock,
                   "--runtime-config", config)
    assert got.returncode == 2, got.stderr[-2000:]
    line = [x for x in got.stderr.splitlines() if x.startswith("corral-node: ")]
    assert line and want in line[0], got.stderr[-2000:]
    assert not serving(sock) and not os.path.exists(sock)
