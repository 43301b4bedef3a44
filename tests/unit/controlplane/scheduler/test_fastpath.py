"""The fast path decides exactly as the plugin framework: random clusters and pod streams,
each pod scheduled by both (same snapshot state, same rng seed), every Decision compared."""

from __future__ import annotations

import random
from typing import Any

import pytest

from controlplane.scheduler.fastpath import FastPath, class_key, nth
from controlplane.scheduler.framework import Profile
from controlplane.scheduler.plugins import DEFAULT_CONFIG, default_registry
from controlplane.scheduler.schedule import Decision, schedule_one
from controlplane.scheduler.snapshot import NodeInfo, Snapshot

from .harness import container, default_profile, node, pod, sized

ZONES = ("a", "b", "c")
TAINTS = (
    {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
    {"key": "spot", "value": "yes", "effect": "PreferNoSchedule"},
    {"key": "drain", "value": "", "effect": "NoExecute"},
)
IMAGES = ("busybox", "nginx:1.25", "registry.k8s.io/pause:3.9")


def random_node(r: random.Random, i: int) -> dict[str, Any]:
    kind = r.random()
    taints = [r.choice(TAINTS)] if kind < 0.12 else []
    images = {r.choice(IMAGES): r.choice((30, 300, 900)) * 1024 * 1024} if kind > 0.9 else {}
    return node(f"n{r.randrange(1000):03d}-{i}", cpu=r.choice(("1", "2", "4", "8")),
                memory=r.choice(("1Gi", "4Gi", "16Gi")), pods=r.choice((3, 10, 110)),
                labels={"zone": r.choice(ZONES), "disk": r.choice(("ssd", "hdd"))},
                taints=taints, unschedulable=0.12 <= kind < 0.17, images=images)


def random_template(r: random.Random) -> dict[str, Any]:
    """A pod shape; most are plain, the rest exercise what the fast path must refuse or
    serve through the real plugins (selectors, tolerations, preferred terms, affinity)."""
    reqs = {k: v for k, v in (("cpu", r.choice((None, "100m", "500m", "1500m"))),
                              ("memory", r.choice((None, "128Mi", "1Gi", "3Gi")))) if v}
    spec: dict[str, Any] = {"containers": [container(image=r.choice(IMAGES), **reqs)]}
    extra = r.random()
    if extra < 0.15:
        spec["nodeSelector"] = {"zone": r.choice(ZONES)}
    elif extra < 0.25:
        spec["tolerations"] = [{"key": r.choice(("dedicated", "spot", "drain")),
                                "operator": "Exists"}]
    elif extra < 0.3:
        spec["affinity"] = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 5, "preference": {"matchExpressions": [
                {"key": "disk", "operator": "In", "values": ["ssd"]}]}}]}}
    elif extra < 0.33:
        spec["affinity"] = {"podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [{
                "labelSelector": {"matchLabels": {"app": "x"}}, "topologyKey": "zone"}]}}
    elif extra < 0.36:
        spec["topologySpreadConstraints"] = [{
            "maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app": "x"}}}]
    return spec


def same(fast: Decision, full: Decision) -> None:
    assert (fast.node, fast.scores, fast.node_statuses, fast.evaluated, fast.message,
            fast.status) == (full.node, full.scores, full.node_statuses, full.evaluated,
                             full.message, full.status)


@pytest.mark.parametrize("block", [pytest.param(3, id="block3"),
                                   pytest.param(64, id="block64")])
@pytest.mark.parametrize("seed", [pytest.param(s, id=f"seed{s}") for s in range(12)])
def test_fast_path_decides_as_the_framework(seed: int, block: int) -> None:
    r = random.Random(seed)
    nodes = [random_node(r, i) for i in range(r.choice((5, 40, 130, 260)))]
    if seed % 2 == 0:  # in name order, as listed from etcd: max and ties by blocks of nodes
        nodes.sort(key=lambda n: n["metadata"]["name"])
    snap = Snapshot.from_objects(nodes)
    profile = default_profile()
    fast = FastPath(profile, block=block)
    rng_fast, rng_full = random.Random(seed), random.Random(seed)
    templates = [random_template(r) for _ in range(8)]
    plain = [t for t in templates if class_key(pod(**t)) is not None] or [{}]
    start = 0
    for k in range(150):  # pods with pod affinity or spread come last: they slow all down
        shapes = plain if k < 100 else templates
        p = pod(f"p{k}", labels={"app": r.choice(("x", "y"))}, **r.choice(shapes))
        percentage = r.choice((0, 0, 0, 30, 100))
        full = schedule_one(p, snap, profile, rng_full, start=start, percentage=percentage)
        got = fast.schedule_one(p, snap, rng_fast, start=start, percentage=percentage)
        same(got, full)
        start = (start + (full.evaluated or len(snap))) % len(snap)
        if full.node is not None:
            snap.assume_in_place({**p, "spec": {**p["spec"], "nodeName": full.node}},
                                 full.node)
        if r.random() < 0.05:  # a node changes in place: relabelled, or tainted
            info = r.choice(list(snap.infos))
            changed = node(info.name, labels={"zone": r.choice(ZONES)},
                           taints=[r.choice(TAINTS)] if r.random() < 0.5 else [])
            snap.put(NodeInfo.from_node(changed, info.pods))
    assert fast.hits > 0
    assert fast.hits + fast.fallbacks == 150


def test_plain_pods_take_the_fast_path_after_warm_up() -> None:
    snap = Snapshot.from_objects([node(f"n{i}") for i in range(200)])
    fast = FastPath(default_profile())
    decisions = [fast.schedule_one(sized(f"p{i}", cpu="100m"), snap, random.Random(1))
                 for i in range(3)]
    assert (fast.fallbacks, fast.hits) == (1, 2)  # the first sight of a snapshot warms up
    assert all(d.node is not None for d in decisions)


@pytest.mark.parametrize("spec", [
    pytest.param({"affinity": {"podAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": {}, "topologyKey": "zone"}]}}}, id="pod-affinity"),
    pytest.param({"topologySpreadConstraints": [{
        "maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {}}]}, id="spread"),
])
def test_pods_that_read_other_pods_have_no_class(spec: dict[str, Any]) -> None:
    assert class_key(pod(**spec)) is None
    assert class_key(pod()) is not None


def test_a_preferred_taint_is_normalized_as_the_plugin_does() -> None:
    prefer = {"key": "spot", "value": "yes", "effect": "PreferNoSchedule"}
    snap = Snapshot.from_objects([node("a", taints=[prefer]), node("b"),
                                  node("c", taints=[prefer, {**prefer, "key": "x"}])])
    fast = FastPath(default_profile())
    for _ in range(2):
        d = fast.schedule_one(pod(), snap)
        assert d.node == "b"
        # TaintToleration (weight 3): 2 taints are the most, so c 0, a 50, b 100
        assert d.scores["b"] - d.scores["a"] == 150
        assert d.scores["b"] - d.scores["c"] == 300
    assert (fast.hits, fast.fallbacks) == (1, 1)

def test_pods_with_terms_elsewhere_still_take_it_when_none_match() -> None:
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
        "labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}]}}
    snap = Snapshot.from_objects([node("a", labels={"zone": "z"}), node("b")],
                                 [pod("db", node_name="a", labels={"app": "db"},
                                      affinity=anti)])
    fast = FastPath(default_profile())
    profile = default_profile()
    for p in [pod(f"w{i}", labels={"app": "web"}) for i in range(2)] + [
            pod("db2", labels={"app": "db"})]:
        same(fast.schedule_one(p, snap), schedule_one(p, snap, profile))
    assert (fast.hits, fast.fallbacks) == (1, 2)  # warm-up, web, db2 (the term matches it)
    assert schedule_one(pod("db2", labels={"app": "db"}), snap, profile).node == "b"


@pytest.mark.parametrize(("seq", "k", "want"), [
    pytest.param([5, 1, 5, 5], 0, 0, id="first"),
    pytest.param([5, 1, 5, 5], 2, 3, id="last"),
    pytest.param([1] * 130 + [7, 7], 1, 131, id="past-a-chunk"),
])
def test_nth(seq: list[int], k: int, want: int) -> None:
    assert nth(seq, seq[want], k) == want


def test_unknown_plugins_disable_it() -> None:
    config = {**DEFAULT_CONFIG, "plugins": {**DEFAULT_CONFIG["plugins"],
                                            "filter": ["NodeResourcesFit"]}}
    assert FastPath(Profile.from_config(config, default_registry())).enabled

    class Custom:
        name = "Custom"

        def filter(self, state: Any, p: Any, info: Any) -> Any:
            raise AssertionError("not called")

    profile = default_profile()
    profile.filter.append(Custom())  # type: ignore[arg-type]
    assert not FastPath(profile).enabled


def test_nothing_fits_falls_back_for_the_message() -> None:
    snap = Snapshot.from_objects([node("a", cpu="1")])
    fast = FastPath(default_profile())
    for _ in range(2):
        d = fast.schedule_one(sized(cpu="2"), snap)
    assert d.message == "0/1 nodes are available: 1 Insufficient cpu."
    assert fast.hits == 0
