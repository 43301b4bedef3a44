from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import pytest

from controlplane.scheduler.framework import (
    SUCCESS,
    Code,
    CycleState,
    Pod,
    Profile,
    Registry,
    Status,
    unschedulable,
)
from controlplane.scheduler.plugins import DEFAULT_CONFIG, default_registry
from controlplane.scheduler.schedule import NO_NODES, fit_message, schedule_one
from controlplane.scheduler.snapshot import NodeInfo, Snapshot

from .harness import Cluster, default_profile, node, pod, sized

GPU = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}


def test_mixed_reasons_message_in_kubernetes_format() -> None:
    nodes = [node(f"small{i}", cpu="1") for i in range(3)]
    nodes += [node(f"gpu{i}", taints=[GPU]) for i in range(2)]
    d = schedule_one(sized(cpu="2"), Snapshot.from_objects(nodes), default_profile())
    assert d.node is None
    # Kubernetes sorts the rendered "<count> <reason>" strings, so "2 node(s)" comes first
    assert d.message == ("0/5 nodes are available: 2 node(s) had untolerated taint "
                         "{dedicated: gpu}, 3 Insufficient cpu.")
    assert d.status.code is Code.UNSCHEDULABLE  # preemption could free the cpu
    assert sorted(d.node_statuses) == ["gpu0", "gpu1", "small0", "small1", "small2"]
    assert {s.plugin for s in d.node_statuses.values()} == {"NodeResourcesFit",
                                                            "TaintToleration"}


def test_all_reasons_of_a_node_are_counted() -> None:
    d = Cluster([node("a", cpu="1", memory="1Gi"), node("b", cpu="1")]).schedule(
        sized(cpu="2", memory="2Gi"))[0]
    assert d.message == "0/2 nodes are available: 1 Insufficient memory, 2 Insufficient cpu."


def test_unresolvable_when_every_node_is() -> None:
    d = Cluster([node("a", taints=[GPU]), node("b", unschedulable=True)]).schedule(pod())[0]
    assert d.status.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    assert d.message == ("0/2 nodes are available: 1 node(s) had untolerated taint "
                         "{dedicated: gpu}, 1 node(s) were unschedulable.")


@pytest.mark.parametrize(("counts", "want"), [
    pytest.param({"Insufficient cpu": 2, "Too many pods": 1},
                 "1 Too many pods, 2 Insufficient cpu", id="sorted-by-count-then-text"),
    pytest.param({"b": 10, "a": 2}, "10 b, 2 a", id="go-string-order-not-numeric"),
    pytest.param({"b": 1, "a": 1}, "1 a, 1 b", id="same-count-by-reason"),
])
def test_fit_message_sorts_like_sort_strings(counts: dict[str, int], want: str) -> None:
    statuses = {}
    for reason, n in counts.items():
        for i in range(n):
            statuses[f"{reason}-{i}"] = unschedulable("P", reason)
    assert fit_message(99, statuses) == f"0/99 nodes are available: {want}."


def test_no_nodes() -> None:
    d = schedule_one(pod(), Snapshot(), default_profile())
    assert (d.node, d.message) == (None, NO_NODES)


def test_scoring_picks_least_allocated_node() -> None:
    c = Cluster([node("busy"), node("idle"), node("half")],
                [sized("x", cpu="3", memory="6Gi", node_name="busy"),
                 sized("y", cpu="2", memory="4Gi", node_name="half")])
    d = c.schedule(sized(cpu="500m", memory="1Gi"))[0]
    assert d.node == "idle"
    assert d.scores["idle"] > d.scores["half"] > d.scores["busy"]


def test_filters_then_scores_extended_resources() -> None:
    c = Cluster([node("cpu-only"), node("gpu-full", example_com__gpu="1"),
                 node("gpu-free", example_com__gpu="1")],
                [pod("t", containers=[{"name": "c", "image": "x", "resources": {
                    "requests": {"example.com/gpu": "1"}}}], node_name="gpu-full")])
    want = pod("train", containers=[{"name": "c", "image": "x", "resources": {
        "requests": {"example.com/gpu": "1"}}}])
    d = c.schedule(want)[0]
    assert d.node == "gpu-free"
    again = c.schedule(want)[0]
    assert again.message == "0/3 nodes are available: 3 Insufficient example.com/gpu."


def test_harness_spreads_pods_over_identical_nodes() -> None:
    c = Cluster([node("n1"), node("n2"), node("n3")])
    decisions = c.schedule(*(sized(f"p{i}", cpu="1", memory="1Gi") for i in range(6)))
    placed = [d.node for d in decisions]
    assert sorted(placed) == ["n1", "n1", "n2", "n2", "n3", "n3"]
    assert placed[:3] == ["n1", "n2", "n3"]  # ties go to the first name


def test_seeded_tie_break_is_repeatable() -> None:
    snap = Snapshot.from_objects([node(f"n{i}") for i in range(8)])
    picks = {schedule_one(pod(), snap, default_profile(), random.Random(seed)).node
             for seed in range(20)}
    assert len(picks) > 1
    again = [schedule_one(pod(), snap, default_profile(), random.Random(7)).node
             for _ in range(3)]
    assert len(set(again)) == 1


def test_single_feasible_node_is_chosen_without_scoring() -> None:
    d = Cluster([node("a", taints=[GPU]), node("b")]).schedule(pod())[0]
    assert (d.node, d.scores) == ("b", {})
    assert list(d.node_statuses) == ["a"]


def test_node_name_pins_pod() -> None:
    d = Cluster([node("a"), node("b")]).schedule(pod(node_name="b"))[0]
    assert d.node == "b"


class _Fixed:
    """A test plugin: filter/score results from tables, optional normalization."""

    def __init__(self, name: str, scores: Mapping[str, int], reject: str = "",
                 code: Code = Code.UNSCHEDULABLE) -> None:
        self.name, self.scores, self.reject, self.code = name, scores, reject, code

    def pre_filter(self, state: CycleState, pod: Pod) -> Status:
        return Status(self.code, ["pod has a bad volume"], self.name) if self.reject == "*" \
            else SUCCESS

    def filter(self, state: CycleState, pod: Pod, node: NodeInfo) -> Status:
        return Status(self.code, ["nope"], self.name) if node.name == self.reject else SUCCESS

    def score(self, state: CycleState, pod: Pod, node: NodeInfo) -> tuple[int, Status]:
        return self.scores.get(node.name, 0), SUCCESS


def _profile(*plugins: tuple[_Fixed, int]) -> Profile:
    reg = Registry({p.name: (lambda _args, p=p: p) for p, _ in plugins})
    return Profile.from_config({"plugins": {
        "preFilter": [p.name for p, _ in plugins],
        "filter": [p.name for p, _ in plugins],
        "score": [{"name": p.name, "weight": w} for p, w in plugins]}}, reg)


def test_scores_are_weighted_sums() -> None:
    snap = Snapshot.from_objects([node("a"), node("b")])
    prof = _profile((_Fixed("A", {"a": 100, "b": 0}), 1), (_Fixed("B", {"a": 0, "b": 60}), 2))
    d = schedule_one(pod(), snap, prof)
    assert (d.node, d.scores) == ("b", {"a": 100, "b": 120})


def test_out_of_range_score_is_an_error() -> None:
    snap = Snapshot.from_objects([node("a"), node("b")])
    d = schedule_one(pod(), snap, _profile((_Fixed("A", {"a": 101}), 1)))
    assert d.node is None and d.status.code is Code.ERROR and d.status.plugin == "A"


def test_filter_error_aborts_the_cycle() -> None:
    snap = Snapshot.from_objects([node("a"), node("b")])
    d = schedule_one(pod(), snap, _profile((_Fixed("A", {}, reject="b", code=Code.ERROR), 1)))
    assert (d.node, d.status.code, d.message) == (None, Code.ERROR, "nope")


def test_pre_filter_rejection_reports_once() -> None:
    snap = Snapshot.from_objects([node("a"), node("b")])
    d = schedule_one(pod(), snap, _profile((_Fixed("A", {}, reject="*"), 1)))
    assert d.message == "0/2 nodes are available: pod has a bad volume."
    assert d.node_statuses == {}


def test_default_profile_order() -> None:
    prof = Profile.from_config(DEFAULT_CONFIG, default_registry())
    assert [p.name for p in prof.filter] == DEFAULT_CONFIG["plugins"]["filter"]
    assert dict((p.name, w) for p, w in prof.score) == {
        "LeastAllocated": 1, "BalancedAllocation": 1, "ImageLocality": 1,
        "InterPodAffinity": 2, "NodeAffinity": 2, "PodTopologySpread": 2,
        "TaintToleration": 3}
    assert [p.name for p in prof.post_filter] == ["DefaultPreemption"]
    # one instance per plugin, shared by its extension points
    assert prof.pre_filter[0] is prof.filter[4]
    assert prof.pre_score[-1] is prof.score[-1][0]


@pytest.mark.parametrize(("plugins", "match"), [
    pytest.param({"filter": ["Nope"]}, "no plugin named 'Nope'", id="unknown-plugin"),
    pytest.param({"sort": ["NodeName"]}, "unknown extension point", id="unknown-point"),
    pytest.param({"score": ["NodeName"]}, "does not implement score", id="wrong-point"),
    pytest.param({"score": [{"name": "LeastAllocated", "weight": 0}]}, "positive integer",
                 id="zero-weight"),
])
def test_profile_config_errors(plugins: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Profile.from_config({"plugins": plugins}, default_registry())


def test_registry_rejects_duplicates() -> None:
    reg = default_registry()
    with pytest.raises(ValueError, match="already registered"):
        reg.register("NodeName", reg["NodeName"])


def test_cycle_state_is_a_mapping() -> None:
    s = CycleState()
    s["k"] = 1
    assert (dict(s), len(s), s.get("x")) == ({"k": 1}, 1, None)
    del s["k"]
    assert "k" not in s
