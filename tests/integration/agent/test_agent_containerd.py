"""corral-agent on containerd 1.6's CRI plugin instead of corral-runtimed.

The agent speaks plain CRI, so the runtime is chosen by one flag, ``--runtime-socket``: here
it points at Debian's containerd (runc through containerd-shim-runc-v2, CNI bridge), started
by the test on its own socket. The same controlplane, the same pods, the same statuses.
"""

from __future__ import annotations

import functools
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

# helpers of test_agent, and its fixtures (etcd, registry, busybox: one per module; cp)
from tests.integration.agent.test_agent import (  # noqa: F401
    Agent,
    busybox,
    cp,
    etcd,
    make_pod,
    registry,
    running_ready,
    status_of,
    until,
)
from tests.integration.runtime.service.test_cri_containerd import subnet
from tests.support import containerd
from tests.support.containerd import Containerd
from tests.support.controlplane import ControlPlane


@pytest.fixture
def ctd(tag: str, leak_check: None, registry: Any, busybox: str,  # noqa: F811
        ) -> Iterator[Containerd]:
    reason = containerd.missing()
    if reason:
        pytest.skip(reason)
    with Containerd(tag=tag, sandbox_image=busybox, registries=[registry.host]) as c:
        c.write_cni_conflist(subnet=subnet(tag))  # containerd reads it when a pod starts
        yield c


@pytest.fixture
def agent(cp: ControlPlane, ctd: Containerd) -> Iterator[Agent]:  # noqa: F811
    a = Agent(cp, ctd, f"ctd-{os.urandom(3).hex()}").start()  # type: ignore[arg-type]
    try:
        yield a
    finally:
        a.stop()


def _container_pids(ctd: Containerd, marker: str) -> list[int]:
    """PIDs of processes under ctd's cgroup parent whose command line has MARKER."""
    pids = []
    for d in ctd._cgroup_dirs():
        try:
            with open(os.path.join(d, "cgroup.procs")) as f:
                candidates = [int(x) for x in f.read().split()]
        except OSError:
            continue
        for pid in candidates:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        pids.append(pid)
            except OSError:
                continue
    return sorted(set(pids))


def test_agent_runs_pods_on_containerd(cp: ControlPlane, ctd: Containerd,  # noqa: F811
                                       agent: Agent, busybox: str) -> None:  # noqa: F811
    c = cp.client()
    node = until("the node to register Ready", lambda: (
        lambda n: n if {x["type"]: x["status"] for x in (n.get("status") or {}).get(
            "conditions") or []}.get("Ready") == "True" else None)(c.get("nodes", agent.node)),
        agent, timeout=60)
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")

    # a long-running pod: Running, Ready, an IP from containerd's CNI network
    c.create("pods", make_pod("web", agent.node, busybox, ["sleep", "3601"], grace=2),
             namespace="default")
    st = until("web Running and Ready", functools.partial(running_ready, c, "web"), agent,
               timeout=90)
    cs = st["containerStatuses"][0]
    assert cs["containerID"].startswith("containerd://"), cs["containerID"]
    assert cs["restartCount"] == 0 and cs["imageID"]
    assert st["podIP"].startswith(subnet(ctd.tag).rsplit(".", 1)[0] + "."), st["podIP"]

    # the container's process killed: containerd reports the exit, the agent restarts it
    pids = _container_pids(ctd, "sleep\x003601")
    assert len(pids) == 1, pids
    os.kill(pids[0], signal.SIGKILL)

    def restarted() -> dict[str, Any] | None:
        s = status_of(c, "web")
        cs: dict[str, Any] = (s.get("containerStatuses") or [{}])[0]
        if cs.get("restartCount") == 1 and "running" in (cs.get("state") or {}):
            return cs
        return None

    cs = until("web restarted once", restarted, agent, timeout=60)
    assert cs["lastState"]["terminated"]["exitCode"] == 137
    assert cs["lastState"]["terminated"]["reason"] == "Error"

    # restartPolicy Never with exit 3: Failed, exit code and reason from containerd
    c.create("pods", make_pod("fail", agent.node, busybox, ["sh", "-c", "exit 3"],
                              restart="Never"), namespace="default")
    st = until("fail Failed", lambda: (lambda s: s if s.get("phase") == "Failed" else None)(
        status_of(c, "fail")), agent, timeout=60)
    term = st["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (3, "Error")

    # deletion stops the containers and removes the sandboxes from containerd
    for name in ("web", "fail"):
        c.delete("pods", name, namespace="default", grace_period=1)
    until("every pod to disappear", lambda: not c.list("pods", namespace="default")[
        "items"], agent, timeout=30)
    deadline = time.monotonic() + 30
    while _container_pids(ctd, "sleep\x003601"):
        assert time.monotonic() < deadline, "web's container still running after deletion"
        time.sleep(0.2)
