"""ReplicaSet plans, table-driven, without I/O; and the Expectations bookkeeping."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.controllers import podutil as pu
from controlplane.controllers.controller import Expectations
from controlplane.controllers.replicaset import create_in_batches, plan, pod_from_template

Obj = dict[str, Any]
NOW = 1_800_000_000.0
RS_UID = "rs-uid"


def rs(replicas: int = 3, *, min_ready: int = 0, deleting: bool = False) -> Obj:
    meta: Obj = {"name": "web", "namespace": "default", "uid": RS_UID, "generation": 4}
    if deleting:
        meta["deletionTimestamp"] = "2027-01-01T00:00:00Z"
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": meta,
            "spec": {"replicas": replicas, "minReadySeconds": min_ready,
                     "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web", "tier": "fe"}},
                                  "spec": {"containers": [{"name": "c", "image": "b"}]}}}}


def pod(name: str, *, owner: str | None = RS_UID, labels: Obj | None = None,
        ready_at: float | None = None, node: str = "", phase: str = "Running",
        created: float = NOW - 100, deleting: bool = False, version: str = "1") -> Obj:
    meta: Obj = {"name": name, "namespace": "default", "uid": f"uid-{name}",
                 "resourceVersion": version,
                 "labels": {"app": "web", "tier": "fe"} if labels is None else labels,
                 "creationTimestamp": pu.rfc3339(created)}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                    "name": "x", "uid": owner, "controller": True}]
    if deleting:
        meta["deletionTimestamp"] = pu.rfc3339(NOW)
    status: Obj = {"phase": phase}
    if ready_at is not None:
        status["conditions"] = [{"type": "Ready", "status": "True",
                                 "lastTransitionTime": pu.rfc3339(ready_at)}]
    return {"metadata": meta, "spec": {"nodeName": node} if node else {}, "status": status}


R = NOW - 60  # ready a minute ago


@pytest.mark.parametrize(("the_rs", "pods", "create", "delete", "adopt", "release"), [
    pytest.param(rs(3), [], 3, [], [], [], id="empty-creates-all"),
    pytest.param(rs(3), [pod("a", ready_at=R)], 2, [], [], [], id="creates-the-rest"),
    pytest.param(rs(1), [pod("old", ready_at=R, node="n", created=NOW - 500),
                         pod("new", ready_at=R, node="n", created=NOW - 10)],
                 0, ["new"], [], [], id="deletes-newer-first"),
    pytest.param(rs(2), [pod("ready", ready_at=R, node="n"), pod("unsched"),
                         pod("notready", node="n"), pod("pending", node="n",
                                                        phase="Pending")],
                 0, ["unsched", "pending"], [], [], id="unscheduled-then-pending"),
    pytest.param(rs(1), [pod("ready", ready_at=R, node="n"), pod("notready", node="n")],
                 0, ["notready"], [], [], id="not-ready-before-ready"),
    pytest.param(rs(1), [pod("long", ready_at=NOW - 900, node="n"),
                         pod("short", ready_at=NOW - 5, node="n")],
                 0, ["short"], [], [], id="recently-ready-first"),
    pytest.param(rs(2), [pod("orphan", owner=None, ready_at=R)], 1, [], ["orphan"], [],
                 id="adopts-matching-orphan"),
    pytest.param(rs(2), [pod("theirs", owner="other", ready_at=R)], 2, [], [], [],
                 id="ignores-other-controllers-pods"),
    pytest.param(rs(1), [pod("moved", labels={"app": "db"}), pod("a", ready_at=R)],
                 0, [], [], ["moved"], id="releases-non-matching"),
    pytest.param(rs(2), [pod("gone", deleting=True), pod("done", phase="Succeeded"),
                         pod("a")], 1, [], [], [], id="terminating-and-finished-dont-count"),
    pytest.param(rs(2, deleting=True), [pod("orphan", owner=None)], 0, [], [], [],
                 id="being-deleted-does-nothing"),
])
def test_plan(the_rs: Obj, pods: list[Obj], create: int, delete: list[str],
              adopt: list[str], release: list[str]) -> None:
    p = plan(the_rs, pods, now=NOW)
    assert (p.create, sorted(p.delete), p.adopt, p.release) == (
        create, sorted(delete), adopt, release)


def test_pending_expectations_stop_creates_and_deletes() -> None:
    p = plan(rs(3), [], now=NOW, manage=False)
    assert (p.create, p.delete) == (0, [])
    assert p.status["replicas"] == 0


@pytest.mark.parametrize(("min_ready", "pods", "expect"), [
    pytest.param(0, [pod("a", ready_at=R), pod("b"), pod("c", labels={"app": "web"})],
                 {"replicas": 3, "readyReplicas": 1, "availableReplicas": 1,
                  "fullyLabeledReplicas": 2}, id="counts"),
    pytest.param(30, [pod("a", ready_at=NOW - 60), pod("b", ready_at=NOW - 10)],
                 {"replicas": 2, "readyReplicas": 2, "availableReplicas": 1,
                  "fullyLabeledReplicas": 2}, id="min-ready-seconds"),
])
def test_status(min_ready: int, pods: list[Obj], expect: Obj) -> None:
    p = plan(rs(len(pods), min_ready=min_ready), pods, now=NOW)
    assert {k: p.status[k] for k in expect} == expect
    assert p.status["observedGeneration"] == 4


def test_status_counts_what_remains_after_deletes() -> None:
    p = plan(rs(1), [pod("a", ready_at=R, node="n"), pod("b", ready_at=R, node="n",
                                                         created=NOW - 1)], now=NOW)
    assert p.delete == ["b"] and p.status["replicas"] == 1


def test_new_pod_comes_from_the_template_owned_by_the_rs() -> None:
    new = pod_from_template(rs())
    assert new["metadata"]["generateName"] == "web-"
    assert new["metadata"]["labels"] == {"app": "web", "tier": "fe"}
    (ref,) = new["metadata"]["ownerReferences"]
    assert (ref["uid"], ref["controller"], ref["blockOwnerDeletion"]) == (RS_UID, True, True)
    assert new["spec"]["containers"][0]["image"] == "b"


@pytest.mark.asyncio
async def test_creates_in_growing_batches_and_stops_at_a_failure() -> None:
    calls = []

    async def create() -> None:
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("quota")

    errors = await create_in_batches(20, create)
    assert len(calls) == 7  # batches 1, 2, 4: the third batch failed
    assert len(errors) == 14  # one failure plus 13 never tried


def test_expectations() -> None:
    t = [0.0]
    exp = Expectations(clock=lambda: t[0])
    assert exp.satisfied("k")
    exp.expect("k", adds=2)
    exp.creation_observed("k")
    assert not exp.satisfied("k")
    exp.creation_observed("k")
    assert exp.satisfied("k")
    exp.expect("k", deletes=["ns/a", "ns/b"])
    exp.deletion_observed("k", "ns/a")
    exp.deletion_observed("k", "ns/a")
    assert not exp.satisfied("k")
    t[0] = 301.0  # gives up after five minutes
    assert exp.satisfied("k")


# ---- scale-down order and the facts memo ------------------------------------------------

def _random_pods(n: int, seed: int) -> list[Obj]:
    import random
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        ready = rnd.random() < 0.6
        out.append(pod(f"p{i:04d}", node=rnd.choice(["", "n1", "n2"]),
                       phase=rnd.choice(["Pending", "Unknown", "Running", "Running"]),
                       ready_at=NOW - rnd.choice([5, 60, 900]) if ready else None,
                       created=NOW - rnd.choice([10, 100, 500])))  # many ties: names decide
    return out


@pytest.mark.parametrize(("n", "replicas"), [
    pytest.param(40, 39, id="one-too-many"),
    pytest.param(40, 10, id="most-go"),
    pytest.param(40, 0, id="all-go"),
    pytest.param(700, 100, id="more-than-a-burst"),
])
def test_scale_down_deletes_in_kubernetes_order(n: int, replicas: int) -> None:
    """The pods deleted are the first of Kubernetes' ActivePods order (unscheduled,
    Pending before Unknown before Running, not ready, recently ready, newest; then the
    name), in that order, at most BURST of them, whatever order they are given in."""
    from controlplane.controllers.replicaset import BURST
    pods = _random_pods(n, seed=n + replicas)
    want = [p["metadata"]["name"] for p in sorted(pods, key=pu.deletion_rank)]
    want = want[:min(n - replicas, BURST)]
    for given in (pods, list(reversed(pods))):
        p = plan(rs(replicas), given, now=NOW)
        assert p.delete == want
        assert p.status["replicas"] == n - len(want)


def test_the_memo_reads_only_changed_pods_and_gives_the_same_plans() -> None:
    from controlplane.controllers import replicaset
    memo = replicaset.PlanMemo()
    pods = _random_pods(50, seed=1)
    pods.append(pod("orphan", owner=None))
    pods.append(pod("moved", labels={"app": "db"}))
    first = plan(rs(30, min_ready=30), pods, now=NOW, memo=memo)
    assert first == plan(rs(30, min_ready=30), pods, now=NOW)
    read: list[str] = []
    real = replicaset._facts

    def counting(p: Obj, **kw: Any) -> Any:
        read.append(p["metadata"]["name"])
        return real(p, **kw)
    import unittest.mock
    with unittest.mock.patch.object(replicaset, "_facts", counting):
        changed = pod("p0007", node="n1", ready_at=NOW - 1000, version="2")  # an update
        pods[7] = changed
        again = plan(rs(30, min_ready=30), pods, now=NOW + 5, memo=memo)
        assert read == ["p0007"]
        assert again == plan(rs(30, min_ready=30), pods, now=NOW + 5)
        # another selector or template: every pod is read again
        other = rs(30, min_ready=30)
        other["spec"]["template"]["metadata"]["labels"]["tier"] = "be"
        read.clear()
        with_memo = plan(other, pods, now=NOW, memo=memo)
        assert len(read) == len(pods)
        assert with_memo == plan(other, pods, now=NOW)
    # a pod no longer given is no longer held
    plan(other, pods[:10], now=NOW, memo=memo)
    assert len(memo.facts) == 10
