"""PodTopologySpread: DoNotSchedule filtering (skew, minDomains, missing labels, node
inclusion policies) and ScheduleAnyway scoring, table-driven."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from controlplane.scheduler.framework import Code
from controlplane.scheduler.plugins import PodTopologySpread
from controlplane.scheduler.snapshot import Snapshot

from .harness import node, pod, run_filter, run_scores

SKEW = (Code.UNSCHEDULABLE, "node(s) didn't match pod topology spread constraints")
MISSING = (Code.UNSCHEDULABLE_AND_UNRESOLVABLE,
           "node(s) didn't match pod topology spread constraints (missing required label)")
OK = (Code.SUCCESS, "")
HOST = "kubernetes.io/hostname"


def zoned(name: str, zone: str | None) -> dict[str, Any]:
    return node(name, labels={HOST: name} | ({"zone": zone} if zone else {}))


def web(name: str, on: str, namespace: str = "default") -> dict[str, Any]:
    return pod(name, labels={"app": "web"}, node_name=on, namespace=namespace)


# zone a holds 3 web pods (a1: 2, a2: 1), zone b holds 1 (b1); x has no zone label
NODES = [zoned("a1", "a"), zoned("a2", "a"), zoned("b1", "b"), zoned("b2", "b"),
         zoned("x", None)]
PODS = [web("w1", "a1"), web("w2", "a1"), web("w3", "a2"), web("w4", "b1"),
        web("w5", "b2", namespace="other"), web("w6", "x")]
SNAP = Snapshot.from_objects(NODES, PODS)


def spread(*, skew: int = 1, key: str = "zone", when: str = "DoNotSchedule",
           labels: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    return pod(labels={"app": "web"} if labels is None else labels,
               topologySpreadConstraints=[{
                   "maxSkew": skew, "topologyKey": key, "whenUnsatisfiable": when,
                   "labelSelector": {"matchLabels": {"app": "web"}}, **extra}])


def with_policy(p: dict[str, Any], **policy: str) -> dict[str, Any]:
    """The API schema does not know the policy fields yet: set them past validation."""
    out = copy.deepcopy(p)
    out["spec"]["topologySpreadConstraints"][0].update(policy)
    return out


def expect(**per_node: tuple[Code, str]) -> dict[str, tuple[Code, str]]:
    return {n: per_node.get(n, OK) for n in ("a1", "a2", "b1", "b2", "x")}


@pytest.mark.parametrize(("p", "want"), [
    pytest.param(pod(), expect(), id="no-constraints-skip"),
    pytest.param(spread(), expect(a1=SKEW, a2=SKEW, x=MISSING),
                 id="skew-zone-a-3-vs-b-1"),
    pytest.param(spread(skew=2), expect(a1=SKEW, a2=SKEW, x=MISSING), id="skew-2-still-3"),
    pytest.param(spread(skew=3), expect(x=MISSING), id="skew-3-fits"),
    pytest.param(spread(labels={"app": "other"}, skew=2), expect(x=MISSING),
                 id="pod-not-matching-itself-adds-nothing"),
    pytest.param(spread(minDomains=3, skew=2), expect(a1=SKEW, a2=SKEW, x=MISSING),
                 id="min-domains-unmet-min-is-zero"),
    pytest.param(spread(minDomains=3), expect(a1=SKEW, a2=SKEW, b1=SKEW, b2=SKEW, x=MISSING),
                 id="min-domains-blocks-all"),
    pytest.param(spread(key=HOST), expect(a1=SKEW, a2=SKEW, b1=SKEW, x=SKEW),
                 id="hostname-other-namespace-not-counted"),
    pytest.param(pod(labels={"app": "web"}, nodeSelector={"zone": "a"},
                     topologySpreadConstraints=[{
                         "maxSkew": 1, "topologyKey": "zone",
                         "whenUnsatisfiable": "DoNotSchedule",
                         "labelSelector": {"matchLabels": {"app": "web"}}}]),
                 expect(x=MISSING), id="affinity-policy-honor-counts-only-zone-a"),
    pytest.param(with_policy(pod(labels={"app": "web"}, nodeSelector={"zone": "a"},
                                 topologySpreadConstraints=[{
                                     "maxSkew": 1, "topologyKey": "zone",
                                     "whenUnsatisfiable": "DoNotSchedule",
                                     "labelSelector": {"matchLabels": {"app": "web"}}}]),
                             nodeAffinityPolicy="Ignore"),
                 expect(a1=SKEW, a2=SKEW, x=MISSING), id="affinity-policy-ignore"),
    pytest.param(spread(when="ScheduleAnyway"), expect(), id="soft-constraint-not-filtered"),
])
def test_filter(p: dict[str, Any], want: dict[str, tuple[Code, str]]) -> None:
    got = {n: (s.code, s.message()) for n, s in run_filter(PodTopologySpread(), p,
                                                             SNAP).items()}
    assert got == want


def test_taints_policy_honor_skips_tainted_domain() -> None:
    nodes = [zoned("a1", "a"), node("b1", labels={HOST: "b1", "zone": "b"},
                                    taints=[{"key": "k", "effect": "NoSchedule"}])]
    snap = Snapshot.from_objects(nodes, [web("w1", "a1")])
    ignore = run_filter(PodTopologySpread(), spread(), snap)
    assert [ignore["a1"].ok, ignore["b1"].ok] == [False, True]  # tainted b counts as 0
    honor = run_filter(PodTopologySpread(), with_policy(spread(), nodeTaintsPolicy="Honor"),
                       snap)
    assert [honor["a1"].ok, honor["b1"].ok] == [True, True]  # b not a domain: min is 1


@pytest.mark.parametrize(("p", "want"), [
    pytest.param(pod(), dict.fromkeys(("a1", "a2", "b1", "b2", "x"), 0), id="skipped"),
    # zone counts a=3 b=1, weight ln(4): a 4.16 -> 4, b 1.39 -> 1; (4 + 1 - s) * 100 // 4
    pytest.param(spread(when="ScheduleAnyway"),
                 {"a1": 25, "a2": 25, "b1": 100, "b2": 100, "x": 0}, id="zone-emptier-wins"),
    # hostname: per-node counts a1 2, a2 1, b1 1, b2 0 (other ns), x 1; weight ln(7);
    # raw round(c * 1.95): 4, 2, 2, 0, 2 -> (4 + 0 - s) * 100 // 4
    pytest.param(spread(when="ScheduleAnyway", key=HOST),
                 {"a1": 0, "a2": 50, "b1": 50, "b2": 100, "x": 50}, id="hostname"),
    # maxSkew adds maxSkew-1 to every node: a 6, b 3 -> (6 + 3 - s) * 100 // 6
    pytest.param(spread(when="ScheduleAnyway", skew=3),
                 {"a1": 50, "a2": 50, "b1": 100, "b2": 100, "x": 0}, id="max-skew-offset"),
])
def test_score(p: dict[str, Any], want: dict[str, int]) -> None:
    assert run_scores(PodTopologySpread(), p, SNAP) == want


def test_score_counts_only_domains_of_feasible_nodes() -> None:
    # only b nodes feasible: every feasible node is in zone b, so all score the same
    got = run_scores(PodTopologySpread(), spread(when="ScheduleAnyway"), SNAP,
                     nodes=["b1", "b2"])
    assert got == {"b1": 100, "b2": 100}
