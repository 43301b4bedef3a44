"""OOMKilled end to end: a real corral-agent on a real corral-runtimed runs a pod whose
container outgrows its memory limit. The kernel kills it inside its own cgroup (below the
pod's cgroup under the Guaranteed tier, qos.py), and the pod's status says so as
Kubernetes does: terminated, reason OOMKilled, exit code 137, phase Failed (restartPolicy
Never)."""

from __future__ import annotations

from typing import Any

from tests.integration.agent import test_agent as agent_test
from tests.integration.agent.test_agent import Agent, make_pod, status_of, until
from tests.support.controlplane import ControlPlane

# the real etcd, controlplane, runtimed and agent of test_agent.py
etcd, registry, busybox, cp, rtd, agent = (agent_test.etcd, agent_test.registry,
                                           agent_test.busybox, agent_test.cp, agent_test.rtd,
                                           agent_test.agent)


def test_a_container_over_its_memory_limit_is_oomkilled(cp: ControlPlane, agent: Agent,
                                                         busybox: str) -> None:
    c = cp.client()
    # `tail /dev/zero` keeps its one endless "line" in memory until the kernel kills it
    pod = make_pod("hog", agent.node, busybox, ["tail", "/dev/zero"], restart="Never",
                   grace=1)
    pod["spec"]["containers"][0]["resources"] = {"limits": {"memory": "24Mi", "cpu": "1"}}
    c.create("pods", pod, namespace="default")
    try:
        def terminated() -> dict[str, Any] | None:
            st = status_of(c, "hog")
            statuses = st.get("containerStatuses") or []
            done = statuses and (statuses[0].get("state") or {}).get("terminated")
            return st if done else None

        st = until("hog terminated", terminated, agent, timeout=60)
        term = st["containerStatuses"][0]["state"]["terminated"]
        assert (term["reason"], term["exitCode"]) == ("OOMKilled", 137), term
        assert st["phase"] == "Failed" and st["qosClass"] == "Guaranteed", st
    finally:
        c.delete("pods", "hog", namespace="default", grace_period=0)
        until("hog gone", lambda: not c.list("pods", namespace="default")["items"], agent,
              timeout=30)
