"""DefaultPreemption: victims and the node chosen, on several cluster shapes, through
schedule_one with the default profile."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from controlplane.scheduler.framework import Code
from controlplane.scheduler.plugins.default_preemption import pick_node
from controlplane.scheduler.schedule import Decision, schedule_one
from controlplane.scheduler.snapshot import Snapshot

from .harness import default_profile, node, sized

HOST = "kubernetes.io/hostname"


def running(name: str, on: str, *, prio: int, cpu: str = "1", start: str = "",
            labels: dict[str, str] | None = None) -> dict[str, Any]:
    p = sized(name, cpu=cpu, node_name=on, priority=prio)
    p["metadata"]["labels"] = dict(labels or {})
    if start:
        p["status"] = {"phase": "Running", "startTime": start}
    return p


def decide(nodes: list[dict[str, Any]], pods: list[dict[str, Any]],
           preemptor: dict[str, Any]) -> Decision:
    return schedule_one(preemptor, Snapshot.from_objects(nodes, pods), default_profile())


def outcome(d: Decision) -> tuple[str, list[str]] | None:
    if d.nominated is None:
        return None
    return d.nominated.nominated_node, [v["metadata"]["name"] for v in d.nominated.victims]


def two(cpu: str = "2") -> list[dict[str, Any]]:
    return [node("n1", cpu=cpu, labels={HOST: "n1"}), node("n2", cpu=cpu, labels={HOST: "n2"})]


@pytest.mark.parametrize(("pods", "preemptor", "want"), [
    pytest.param([running("a", "n1", prio=1), running("b", "n1", prio=5),
                  running("c", "n2", prio=10, cpu="2")],
                 sized("p", cpu="1", priority=8), ("n1", ["a"]),
                 id="minimal-victims-highest-reprieved-first"),
    pytest.param([running("a", "n1", prio=5, cpu="2"), running("b", "n2", prio=3, cpu="2")],
                 sized("p", cpu="2", priority=8), ("n2", ["b"]),
                 id="lowest-highest-victim-priority"),
    pytest.param([running("a1", "n1", prio=3), running("a2", "n1", prio=3),
                  running("b1", "n2", prio=3), running("b2", "n2", prio=1)],
                 sized("p", cpu="2", priority=8), ("n2", ["b1", "b2"]),
                 id="smallest-priority-sum"),
    pytest.param([running("a1", "n1", prio=-5), running("a2", "n1", prio=-5),
                  running("b", "n2", prio=-5, cpu="2")],
                 sized("p", cpu="2", priority=0), ("n2", ["b"]),
                 id="negative-priorities-still-favour-fewer-victims"),
    pytest.param([running("a", "n1", prio=1, cpu="2", start="2024-01-01T00:00:00Z"),
                  running("b", "n2", prio=1, cpu="2", start="2024-06-01T00:00:00Z")],
                 sized("p", cpu="2", priority=8), ("n2", ["b"]),
                 id="latest-start-time"),
    pytest.param([running("a", "n1", prio=1, cpu="2"), running("b", "n2", prio=1, cpu="2")],
                 sized("p", cpu="2", priority=8), ("n1", ["a"]), id="tie-first-node"),
    pytest.param([running("a", "n1", prio=8, cpu="2"), running("b", "n2", prio=9, cpu="2")],
                 sized("p", cpu="2", priority=8), None, id="equal-priority-never-evicted"),
    pytest.param([running("a", "n1", prio=1, cpu="1")], sized("p", cpu="3", priority=8),
                 None, id="eviction-cannot-make-room"),
])
def test_preemption_shapes(pods: list[dict[str, Any]], preemptor: dict[str, Any],
                           want: tuple[str, list[str]] | None) -> None:
    d = decide(two(), pods, preemptor)
    assert d.node is None and d.status.code is Code.UNSCHEDULABLE
    assert outcome(d) == want


def test_unresolvable_nodes_are_not_candidates() -> None:
    nodes = [node("n1", cpu="2", taints=[{"key": "k", "effect": "NoSchedule"}]),
             node("n2", cpu="1")]
    d = decide(nodes, [running("a", "n1", prio=0, cpu="2")], sized("p", cpu="2", priority=9))
    assert outcome(d) is None


def test_preemption_policy_never() -> None:
    p = copy.deepcopy(sized("p", cpu="2", priority=9))
    p["spec"]["preemptionPolicy"] = "Never"  # not in the API schema yet
    d = decide(two(), [running("a", "n1", prio=0, cpu="2"), running("b", "n2", prio=0,
                                                                     cpu="2")], p)
    assert outcome(d) is None


def test_anti_affinity_victims_found_by_rerunning_affinity() -> None:
    web = {"app": "web"}
    pods = [running("w", "n1", prio=1, labels=web), running("x", "n1", prio=1),
            running("big", "n2", prio=20, cpu="2")]
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"topologyKey": HOST, "labelSelector": {"matchLabels": web}}]}}
    preemptor = sized("p", cpu="1", priority=10, affinity=anti)
    d = decide(two(), pods, preemptor)
    # n1 has room for the cpu; only the web pod's presence is in the way
    assert outcome(d) == ("n1", ["w"])


def test_pick_node_prefers_a_node_without_victims() -> None:
    v = running("v", "n1", prio=0)
    assert pick_node([("n1", [v]), ("n2", [])]) == ("n2", [])


def test_fit_leaves_preemption_alone() -> None:
    d = decide(two(), [running("a", "n1", prio=0, cpu="2")], sized("p", cpu="1", priority=9))
    assert d.node == "n2" and d.nominated is None
