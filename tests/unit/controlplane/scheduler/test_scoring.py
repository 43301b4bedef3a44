from __future__ import annotations

from typing import Any

import pytest

from controlplane.scheduler.framework import CycleState, ScorePlugin
from controlplane.scheduler.plugins import (
    BalancedAllocation,
    ImageLocality,
    LeastAllocated,
    NodeAffinity,
    TaintToleration,
)
from controlplane.scheduler.snapshot import NodeInfo, Snapshot, normalize_image

from .harness import container, info, node, pod, run_scores, sized

EMPTY = info(node("n1", cpu="4", memory="8Gi"))
HALF_CPU = info(node("n1", cpu="4", memory="8Gi"), sized("a", cpu="2"))


def score(plugin: ScorePlugin, p: dict[str, Any], n: NodeInfo) -> int:
    value, status = plugin.score(CycleState(), p, n)
    assert status.ok
    return value


@pytest.mark.parametrize(("p", "n", "want"), [
    pytest.param(sized(cpu="1", memory="2Gi"), EMPTY, 75, id="quarter-used"),
    pytest.param(sized(cpu="2", memory="2Gi"), EMPTY, 62, id="mean-of-50-and-75-floored"),
    pytest.param(pod(), EMPTY, 97, id="best-effort-uses-defaults"),
    pytest.param(sized(cpu="2", memory="2Gi"), HALF_CPU, 36,
                 id="existing-pods-count-with-memory-default"),
    pytest.param(sized(cpu="8", memory="8Gi"), EMPTY, 0, id="over-capacity-is-zero"),
])
def test_least_allocated(p: dict[str, Any], n: NodeInfo, want: int) -> None:
    assert score(LeastAllocated(), p, n) == want


def test_least_allocated_resource_weights() -> None:
    plugin = LeastAllocated({"resources": [{"name": "cpu", "weight": 3},
                                           {"name": "memory", "weight": 1}]})
    # cpu 50 * 3 + memory 75 * 1 = 225, / 4
    assert score(plugin, sized(cpu="2", memory="2Gi"), EMPTY) == 56


@pytest.mark.parametrize(("p", "n", "want"), [
    pytest.param(sized(cpu="1", memory="2Gi"), EMPTY, 100, id="balanced"),
    pytest.param(sized(cpu="2", memory="2Gi"), EMPTY, 87, id="half-and-quarter"),
    pytest.param(sized(cpu="4"), EMPTY, 50, id="all-cpu-no-memory"),
    pytest.param(sized(cpu="16", memory="0"), EMPTY, 50, id="fraction-capped-at-one"),
    pytest.param(sized(memory="4Gi"), HALF_CPU, 100, id="existing-pods-count"),
])
def test_balanced_allocation(p: dict[str, Any], n: NodeInfo, want: int) -> None:
    assert score(BalancedAllocation(), p, n) == want


# ---- NodeAffinity preferred terms -------------------------------------------------------

def preferred(*weighted: tuple[int, dict[str, Any]]) -> dict[str, Any]:
    return {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": w, "preference": {"matchExpressions": [e]}} for w, e in weighted]}}


ZONES = Snapshot.from_objects([node("a", labels={"zone": "a", "disk": "ssd"}),
                               node("b", labels={"zone": "b"}), node("c")])
ZONE_A = {"key": "zone", "operator": "In", "values": ["a"]}
ZONE_B = {"key": "zone", "operator": "In", "values": ["b"]}
SSD = {"key": "disk", "operator": "Exists"}


@pytest.mark.parametrize(("affinity", "want"), [
    pytest.param({}, {"a": 0, "b": 0, "c": 0}, id="no-preferences-skipped"),
    pytest.param(preferred((10, ZONE_A), (30, SSD)), {"a": 100, "b": 0, "c": 0},
                 id="weights-summed-best-is-100"),
    pytest.param(preferred((20, ZONE_A), (60, ZONE_B)), {"a": 33, "b": 100, "c": 0},
                 id="scaled-to-max-floored"),
    pytest.param(preferred((5, {"key": "gpu", "operator": "Exists"})),
                 {"a": 0, "b": 0, "c": 0}, id="nothing-matches-stays-zero"),
])
def test_node_affinity_preferred(affinity: dict[str, Any], want: dict[str, int]) -> None:
    p = pod(affinity=affinity) if affinity else pod()
    assert run_scores(NodeAffinity(), p, ZONES) == want


# ---- TaintToleration scoring ------------------------------------------------------------

def soft(key: str) -> dict[str, str]:
    return {"key": key, "value": "x", "effect": "PreferNoSchedule"}


TAINTED = Snapshot.from_objects([
    node("clean"), node("one", taints=[soft("k1")]),
    node("two", taints=[soft("k1"), soft("k2"), {"key": "hard", "effect": "NoSchedule"}])])


@pytest.mark.parametrize(("tolerations", "want"), [
    pytest.param([], {"clean": 100, "one": 50, "two": 0}, id="fewest-untolerated-wins"),
    pytest.param([{"key": "k1", "operator": "Exists", "effect": "PreferNoSchedule"}],
                 {"clean": 100, "one": 100, "two": 0}, id="tolerated-taint-not-counted"),
    pytest.param([{"key": "k1", "operator": "Exists", "effect": "NoSchedule"}],
                 {"clean": 100, "one": 50, "two": 0}, id="other-effect-toleration-ignored"),
    pytest.param([{"operator": "Exists"}], {"clean": 100, "one": 100, "two": 100},
                 id="tolerate-all-everything-equal"),
])
def test_taint_toleration_score(tolerations: list[dict[str, str]],
                                want: dict[str, int]) -> None:
    assert run_scores(TaintToleration(), pod(tolerations=tolerations), TAINTED) == want


def test_taint_toleration_score_without_soft_taints_is_flat() -> None:
    snap = Snapshot.from_objects([node("a"), node("b")])
    assert run_scores(TaintToleration(), pod(), snap) == {"a": 100, "b": 100}


# ---- ImageLocality ----------------------------------------------------------------------

MB = 1024 * 1024
IMAGES = Snapshot.from_objects([
    node("a", images={"docker.io/library/nginx:1.0": 500 * MB,
                      "docker.io/library/busybox:latest": 10 * MB,
                      "example.com/big:2": 3000 * MB}),
    node("b", images={"docker.io/library/nginx:1.0": 500 * MB,
                      "docker.io/library/busybox:latest": 10 * MB,
                      "example.com/big:2": 3000 * MB}),
    node("c", images={"docker.io/library/busybox:latest": 10 * MB,
                      "example.com/big:2": 3000 * MB}),
    node("d", images={"docker.io/library/busybox:latest": 10 * MB,
                      "example.com/big:2": 3000 * MB})])


def images_pod(*images: str) -> dict[str, Any]:
    return pod(containers=[container(f"c{i}", image=im) for i, im in enumerate(images)])


@pytest.mark.parametrize(("p", "want"), [
    # 500 MB * 2/4 nodes = 250 MB; (250 - 23) * 100 // (1000 - 23) = 23
    pytest.param(images_pod("nginx:1.0"), {"a": 23, "b": 23, "c": 0, "d": 0},
                 id="scaled-by-spread-and-short-name-normalized"),
    pytest.param(images_pod("busybox"), {"a": 0, "b": 0, "c": 0, "d": 0},
                 id="below-23mb-threshold"),
    pytest.param(images_pod("example.com/big:2"), {"a": 100, "b": 100, "c": 100, "d": 100},
                 id="clamped-at-1000mb-per-container"),
    # two containers: 250 MB + 0 against 23 .. 2000 MB: 227 * 100 // 1977 = 11
    pytest.param(images_pod("nginx:1.0", "redis:7"), {"a": 11, "b": 11, "c": 0, "d": 0},
                 id="threshold-grows-with-containers"),
    pytest.param(images_pod("nginx"), {"a": 0, "b": 0, "c": 0, "d": 0},
                 id="untagged-means-latest-not-1.0"),
])
def test_image_locality(p: dict[str, Any], want: dict[str, int]) -> None:
    assert run_scores(ImageLocality(), p, IMAGES) == want


@pytest.mark.parametrize(("name", "want"), [
    pytest.param("busybox", "docker.io/library/busybox:latest", id="bare"),
    pytest.param("user/app:1", "docker.io/user/app:1", id="hub-user"),
    pytest.param("localhost:5000/app", "localhost:5000/app:latest", id="registry-port"),
    pytest.param("quay.io/x/y@sha256:ab", "quay.io/x/y@sha256:ab", id="digest-kept"),
])
def test_normalize_image(name: str, want: str) -> None:
    assert normalize_image(name) == want
