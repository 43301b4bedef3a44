"""InterPodAffinity: filter (affinity, anti-affinity, existing pods' anti-affinity) and score,
table-driven over one small zoned cluster."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.scheduler.framework import Code, CycleState, Status
from controlplane.scheduler.plugins import InterPodAffinity
from controlplane.scheduler.snapshot import Snapshot

from .harness import node, pod, run_filter, run_scores

HOST = "kubernetes.io/hostname"
AFF = (Code.UNSCHEDULABLE_AND_UNRESOLVABLE, "node(s) didn't match pod affinity rules")
ANTI = (Code.UNSCHEDULABLE, "node(s) didn't match pod anti-affinity rules")
EXISTING = (Code.UNSCHEDULABLE, "node(s) didn't satisfy existing pods anti-affinity rules")
OK = (Code.SUCCESS, "")
NAMES = ("n1", "n2", "n3", "n4", "n5")


def zoned(name: str, zone: str | None) -> dict[str, Any]:
    labels = {HOST: name} | ({"zone": zone} if zone else {})
    return node(name, labels=labels)


def term(key: str, *, app: str | None = "web", **extra: Any) -> dict[str, Any]:
    t: dict[str, Any] = {"topologyKey": key, **extra}
    if app is not None:
        t["labelSelector"] = {"matchLabels": {"app": app}}
    return t


def required(kind: str, *terms: dict[str, Any]) -> dict[str, Any]:
    return {kind: {"requiredDuringSchedulingIgnoredDuringExecution": list(terms)}}


def preferred(kind: str, *weighted: tuple[int, dict[str, Any]]) -> dict[str, Any]:
    return {kind: {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": w, "podAffinityTerm": t} for w, t in weighted]}}


NODES = [zoned("n1", "a"), zoned("n2", "a"), zoned("n3", "b"), zoned("n4", "b"),
         zoned("n5", None)]
EXISTING_PODS = [
    pod("web", labels={"app": "web"}, node_name="n1"),
    pod("db", labels={"app": "db"}, namespace="prod", node_name="n3"),
    pod("lonely", node_name="n4",
        affinity=required("podAntiAffinity", term("zone", app="batch"))),
]
NAMESPACES = [{"metadata": {"name": "prod", "labels": {"team": "data"}}},
              {"metadata": {"name": "default", "labels": {}}}]
SNAP = Snapshot.from_objects(NODES, EXISTING_PODS, NAMESPACES)


def outcome(statuses: dict[str, Status]) -> dict[str, tuple[Code, str]]:
    return {n: (s.code, s.message()) for n, s in statuses.items()}


def expect(**per_node: tuple[Code, str]) -> dict[str, tuple[Code, str]]:
    return {n: per_node.get(n, OK) for n in NAMES}


@pytest.mark.parametrize(("p", "want"), [
    pytest.param(pod(), expect(), id="no-affinity-skips"),
    pytest.param(pod(affinity=required("podAffinity", term("zone"))),
                 expect(n3=AFF, n4=AFF, n5=AFF), id="affinity-same-zone"),
    pytest.param(pod(affinity=required("podAffinity", term(HOST))),
                 expect(n2=AFF, n3=AFF, n4=AFF, n5=AFF), id="affinity-same-host"),
    pytest.param(pod(affinity=required("podAffinity", term("zone", app="cache"))),
                 expect(n1=AFF, n2=AFF, n3=AFF, n4=AFF, n5=AFF), id="affinity-no-match"),
    pytest.param(pod(labels={"app": "cache"},
                     affinity=required("podAffinity", term("zone", app="cache"))),
                 expect(n5=AFF), id="first-of-group-matches-itself"),
    pytest.param(pod(affinity=required("podAffinity", term("zone"), term(HOST, app="db"))),
                 expect(n1=AFF, n2=AFF, n3=AFF, n4=AFF, n5=AFF),
                 id="pod-must-match-all-terms"),
    pytest.param(pod(affinity=required("podAffinity", term("zone", app=None))),
                 expect(n1=AFF, n2=AFF, n3=AFF, n4=AFF, n5=AFF),
                 id="missing-selector-matches-nothing"),
    pytest.param(pod(affinity=required("podAffinity", term("zone", app="db"))),
                 expect(n1=AFF, n2=AFF, n3=AFF, n4=AFF, n5=AFF),
                 id="other-namespace-not-seen"),
    pytest.param(pod(affinity=required("podAffinity", term("zone", app="db",
                                                            namespaces=["prod"]))),
                 expect(n1=AFF, n2=AFF, n5=AFF), id="namespaces-list"),
    pytest.param(pod(affinity=required("podAffinity", term(
        "zone", app="db", namespaceSelector={"matchLabels": {"team": "data"}}))),
                 expect(n1=AFF, n2=AFF, n5=AFF), id="namespace-selector-labels"),
    pytest.param(pod(affinity=required("podAffinity", term(
        "zone", app="db", namespaceSelector={"matchLabels": {"team": "web"}}))),
                 expect(n1=AFF, n2=AFF, n3=AFF, n4=AFF, n5=AFF),
                 id="namespace-selector-mismatch"),
    pytest.param(pod(affinity=required("podAffinity", term("zone", app="db",
                                                            namespaceSelector={}))),
                 expect(n1=AFF, n2=AFF, n5=AFF), id="empty-namespace-selector-all"),
    pytest.param(pod(affinity=required("podAntiAffinity", term(HOST))),
                 expect(n1=ANTI), id="anti-affinity-host"),
    pytest.param(pod(affinity=required("podAntiAffinity", term("zone"))),
                 expect(n1=ANTI, n2=ANTI), id="anti-affinity-zone-unlabelled-node-ok"),
    pytest.param(pod(labels={"app": "batch"}), expect(n3=EXISTING, n4=EXISTING),
                 id="existing-anti-affinity-symmetry"),
    pytest.param(pod(labels={"app": "batch"}, namespace="prod"), expect(),
                 id="existing-anti-affinity-own-namespace-only"),
    pytest.param(pod(labels={"app": "batch"},
                     affinity=required("podAffinity", term("zone", app="db",
                                                           namespaces=["prod"]))),
                 expect(n1=AFF, n2=AFF, n3=EXISTING, n4=EXISTING, n5=AFF),
                 id="affinity-then-symmetry"),
])
def test_filter(p: dict[str, Any], want: dict[str, tuple[Code, str]]) -> None:
    got = outcome(run_filter(InterPodAffinity(), p, SNAP))
    assert got == want
    for status in run_filter(InterPodAffinity(), p, SNAP).values():
        assert status.ok or status.plugin == "InterPodAffinity"


def test_pre_filter_skips_when_nothing_constrains() -> None:
    snap = Snapshot.from_objects(NODES, EXISTING_PODS[:2])
    state = CycleState(snap)
    assert InterPodAffinity().pre_filter(state, pod(labels={"app": "batch"})).code is Code.SKIP


FAN = pod("fan", node_name="n3",
          affinity=preferred("podAffinity", (10, term("zone", app="batch"))))
HARD = pod("hard", node_name="n2", affinity=required("podAffinity", term(HOST, app="batch")))


@pytest.mark.parametrize(("existing", "p", "want"), [
    pytest.param([], pod(), dict.fromkeys(NAMES, 0), id="nothing-skipped"),
    pytest.param([], pod(affinity=preferred("podAffinity", (50, term("zone")))),
                 {"n1": 100, "n2": 100, "n3": 0, "n4": 0, "n5": 0}, id="preferred-affinity"),
    pytest.param([], pod(affinity=preferred("podAntiAffinity", (50, term("zone")))),
                 {"n1": 0, "n2": 0, "n3": 100, "n4": 100, "n5": 100}, id="preferred-anti"),
    pytest.param([], pod(affinity=preferred("podAffinity", (80, term(HOST)),
                                            (20, term("zone")))),
                 {"n1": 100, "n2": 20, "n3": 0, "n4": 0, "n5": 0}, id="weights-add-up"),
    pytest.param([FAN], pod(labels={"app": "batch"}),
                 {"n1": 0, "n2": 0, "n3": 100, "n4": 100, "n5": 0},
                 id="existing-pod-preferred-affinity-symmetric"),
    pytest.param([HARD], pod(labels={"app": "batch"}),
                 {"n1": 0, "n2": 100, "n3": 0, "n4": 0, "n5": 0},
                 id="existing-required-affinity-hard-weight"),
    pytest.param([FAN], pod(labels={"app": "batch"},
                            affinity=preferred("podAntiAffinity", (30, term(HOST)))),
                 # raw: n1 -30 (web there), n3 n4 +10 (fan's zone), n2 n5 0: over -30..10
                 {"n1": 0, "n2": 75, "n3": 100, "n4": 100, "n5": 75},
                 id="mixed-normalized-min-to-max"),
])
def test_score(existing: list[dict[str, Any]], p: dict[str, Any],
               want: dict[str, int]) -> None:
    snap = Snapshot.from_objects(NODES, EXISTING_PODS + existing, NAMESPACES)
    assert run_scores(InterPodAffinity(), p, snap) == want
