"""Deployment plans and rollout arithmetic, table-driven, without I/O."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from controlplane.controllers import podutil as pu
from controlplane.controllers import rollout as ro
from controlplane.controllers.deployment import plan

Obj = dict[str, Any]
NOW = 1_800_000_000.0
D_UID = "d-uid"


def deploy(replicas: int = 4, *, image: str = "v2", surge: Any = "25%",
           unavailable: Any = "25%", strategy: str = "RollingUpdate", **spec: Any) -> Obj:
    strat: Obj = {"type": strategy}
    if strategy == "RollingUpdate":
        strat["rollingUpdate"] = {"maxSurge": surge, "maxUnavailable": unavailable}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "uid": D_UID,
                         "generation": 2},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "strategy": strat, "revisionHistoryLimit": 10,
                     "progressDeadlineSeconds": 600,
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": image}]}},
                     **spec}}


def rs(image: str, *, spec: int, available: int | None = None, status: int | None = None,
       revision: int = 1, created: int = 0) -> Obj:
    d = deploy(image=image)
    h = ro.template_hash(d["spec"]["template"])
    template = copy.deepcopy(d["spec"]["template"])
    template["metadata"]["labels"][ro.HASH_LABEL] = h
    n = spec if status is None else status
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": f"web-{image}", "namespace": "default", "uid": f"u-{image}",
                         "generation": 1, "creationTimestamp": pu.rfc3339(NOW - 1000 + created),
                         "annotations": {ro.REVISION: str(revision)}},
            "spec": {"replicas": spec, "template": template},
            "status": {"replicas": n, "readyReplicas": n if available is None else available,
                       "availableReplicas": n if available is None else available,
                       "observedGeneration": 1}}


@pytest.mark.parametrize(("replicas", "surge", "unavailable", "want"), [
    pytest.param(4, "25%", "25%", (1, 1), id="defaults-of-4"),
    pytest.param(10, "25%", "25%", (3, 2), id="surge-up-unavailable-down"),
    pytest.param(1, "25%", "25%", (1, 0), id="one-replica"),
    pytest.param(5, 0, 0, (0, 1), id="both-zero-allows-one-unavailable"),
    pytest.param(5, 2, "40%", (2, 2), id="int-and-percent"),
])
def test_fenceposts(replicas: int, surge: Any, unavailable: Any, want: tuple[int, int]
                    ) -> None:
    assert ro.fenceposts(deploy(replicas, surge=surge, unavailable=unavailable)) == want


@pytest.mark.parametrize(("d", "new_spec", "old", "want"), [
    pytest.param(deploy(4), 0, [rs("v1", spec=4)], 1, id="surge-one"),
    pytest.param(deploy(4, surge=2), 0, [rs("v1", spec=4)], 2, id="surge-two"),
    pytest.param(deploy(4), 1, [rs("v1", spec=4)], 1, id="at-max-total"),
    pytest.param(deploy(4), 1, [rs("v1", spec=3)], 2, id="room-after-scale-down"),
    pytest.param(deploy(4), 1, [rs("v1", spec=3, status=4)], 1,
                 id="old-pods-still-going-count"),
    pytest.param(deploy(4), 0, [], 4, id="no-old-scale-to-replicas-capped"),
    pytest.param(deploy(2), 5, [], 2, id="scale-down"),
])
def test_new_rs_replicas(d: Obj, new_spec: int, old: list[Obj], want: int) -> None:
    assert ro.new_rs_replicas(d, new_spec, old) == want


@pytest.mark.parametrize(("d", "new_spec", "new_avail", "old", "want"), [
    pytest.param(deploy(4), 1, 0, [rs("v1", spec=4)], {"v1": 3}, id="one-unavailable"),
    pytest.param(deploy(4), 1, 1, [rs("v1", spec=4)], {"v1": 2}, id="new-available"),
    pytest.param(deploy(4, surge=1, unavailable=0), 1, 0, [rs("v1", spec=4)], {},
                 id="no-unavailable-waits-for-new"),
    pytest.param(deploy(4, surge=1, unavailable=0), 1, 1, [rs("v1", spec=4)], {"v1": 3},
                 id="no-unavailable-after-new-ready"),
    pytest.param(deploy(4, unavailable=2), 1, 0, [rs("v1", spec=4, available=2)],
                 {"v1": 2}, id="unhealthy-old-pods-go-first"),
    pytest.param(deploy(4), 1, 0, [rs("v1", spec=4, available=2)], {"v1": 3},
                 id="unhealthy-cleanup-bounded"),
    pytest.param(deploy(4), 4, 4, [rs("v1", spec=1)], {"v1": 0}, id="finish"),
    pytest.param(deploy(4), 2, 2, [rs("v0", spec=1, created=0), rs("v1", spec=2,
                                                                   created=5)],
                 {"v0": 0, "v1": 1}, id="oldest-first"),
])
def test_old_rs_scale_down(d: Obj, new_spec: int, new_avail: int, old: list[Obj],
                           want: dict[str, int]) -> None:
    got = ro.old_rs_scale_down(d, new_spec=new_spec, new_available=new_avail, old=old)
    assert got == {f"web-{k}": v for k, v in want.items()}


def test_template_hash_is_stable_and_ignores_its_own_label() -> None:
    t = deploy()["spec"]["template"]
    h = ro.template_hash(t)
    labelled = copy.deepcopy(t)
    labelled["metadata"]["labels"][ro.HASH_LABEL] = h
    assert ro.template_hash(labelled) == h == ro.template_hash(copy.deepcopy(t))
    assert ro.template_hash(deploy(image="v3")["spec"]["template"]) != h
    assert ro.template_hash(t, collisions=1) != h


def test_history_keeps_the_newest_idle_revisions() -> None:
    old = [rs(f"v{i}", spec=0, revision=i) for i in range(1, 6)]
    old.append(rs("busy", spec=1, revision=0))
    assert ro.history_to_delete(old, 2) == ["web-v1", "web-v2", "web-v3"]
    assert ro.history_to_delete(old, 10) == []


def test_plan_creates_the_first_replica_set() -> None:
    p = plan(deploy(4), [], pods_per_rs={}, now=NOW)
    assert p.create is not None
    h = p.create["metadata"]["labels"][ro.HASH_LABEL]
    assert p.create["metadata"]["name"] == f"web-{h}"
    assert p.create["spec"]["replicas"] == 4
    assert p.create["spec"]["selector"]["matchLabels"] == {"app": "web", ro.HASH_LABEL: h}
    assert p.create["metadata"]["annotations"][ro.REVISION] == "1"
    assert p.create["metadata"]["ownerReferences"][0]["uid"] == D_UID
    conds = {c["type"]: c for c in p.status["conditions"]}
    assert conds["Progressing"]["reason"] == "NewReplicaSetCreated"
    assert conds["Available"]["reason"] == "MinimumReplicasUnavailable"


def test_plan_template_change_creates_next_revision_within_surge() -> None:
    p = plan(deploy(4, image="v2"), [rs("v1", spec=4, revision=3)], pods_per_rs={},
             now=NOW)
    assert p.create is not None and p.create["spec"]["replicas"] == 1
    assert p.create["metadata"]["annotations"][ro.REVISION] == "4"
    assert p.scale == {}


def test_plan_rollback_bumps_the_old_rs_revision() -> None:
    p = plan(deploy(2, image="v1"), [rs("v1", spec=0, revision=1),
                                     rs("v2", spec=2, revision=2)], pods_per_rs={}, now=NOW)
    assert p.create is None
    assert p.annotate == {"web-v1": {ro.REVISION: "3"}}
    assert p.scale == {"web-v1": 1} and p.revision == "3"


@pytest.mark.parametrize(("pods_left", "scale", "creates"), [
    pytest.param(3, {"web-v1": 0}, False, id="scales-old-down-first"),
])
def test_plan_recreate(pods_left: int, scale: dict[str, int], creates: bool) -> None:
    p = plan(deploy(3, strategy="Recreate"), [rs("v1", spec=3)],
             pods_per_rs={"u-v1": pods_left}, now=NOW)
    assert p.scale == scale and (p.create is not None) == creates


@pytest.mark.parametrize(("pods_left", "creates"), [
    pytest.param(1, False, id="waits-for-old-pods"),
    pytest.param(0, True, id="then-creates-new"),
])
def test_plan_recreate_waits_for_old_pods(pods_left: int, creates: bool) -> None:
    p = plan(deploy(3, strategy="Recreate"), [rs("v1", spec=0, status=pods_left)],
             pods_per_rs={"u-v1": pods_left}, now=NOW)
    assert (p.create is not None) == creates
    if creates:
        assert p.create is not None and p.create["spec"]["replicas"] == 3


def test_plan_paused_creates_nothing_but_scales() -> None:
    p = plan(deploy(5, image="v2", paused=True), [rs("v1", spec=3)], pods_per_rs={},
             now=NOW)
    assert p.create is None and p.scale == {"web-v1": 5}
    conds = {c["type"]: c for c in p.status["conditions"]}
    assert conds["Progressing"]["reason"] == "DeploymentPaused"


def test_plan_complete_rollout_and_status_counts() -> None:
    p = plan(deploy(4, image="v2"), [rs("v1", spec=0, revision=1),
                                     rs("v2", spec=4, revision=2)], pods_per_rs={}, now=NOW)
    assert (p.create, p.scale, p.delete) == (None, {}, [])
    s = p.status
    assert (s["replicas"], s["updatedReplicas"], s["availableReplicas"],
            s["unavailableReplicas"], s["observedGeneration"]) == (4, 4, 4, 0, 2)
    conds = {c["type"]: c for c in s["conditions"]}
    assert conds["Progressing"]["reason"] == "NewReplicaSetAvailable"
    assert conds["Available"]["status"] == "True"


def _progressing(updated_at: float) -> Obj:
    return {"conditions": [{"type": "Progressing", "status": "True",
                            "reason": "ReplicaSetUpdated", "message": "",
                            "lastUpdateTime": pu.rfc3339(updated_at),
                            "lastTransitionTime": pu.rfc3339(updated_at)}],
            "replicas": 5, "updatedReplicas": 1, "readyReplicas": 4,
            "availableReplicas": 4}


@pytest.mark.parametrize(("since", "reason", "requeue"), [
    pytest.param(NOW - 100, "ReplicaSetUpdated", True, id="within-deadline"),
    pytest.param(NOW - 601, "ProgressDeadlineExceeded", False, id="past-deadline"),
])
def test_progress_deadline(since: float, reason: str, requeue: bool) -> None:
    d = deploy(4, surge=1, unavailable=0)
    d["status"] = _progressing(since)
    stuck = [rs("v1", spec=4, revision=1), rs("v2", spec=1, available=0, status=1,
                                              revision=2)]
    p = plan(d, stuck, pods_per_rs={}, now=NOW)
    conds = {c["type"]: c for c in p.status["conditions"]}
    assert conds["Progressing"]["reason"] == reason
    assert (p.requeue_after is not None) == requeue
    if requeue:
        assert p.requeue_after == pytest.approx(since + 600 - NOW + 1)
    else:
        assert conds["Progressing"]["status"] == "False"


ROLLING = [rs("v1", spec=3, revision=1), rs("v2", spec=2, available=0, status=2, revision=2)]


@pytest.mark.parametrize(("d", "rses"), [
    pytest.param(deploy(4, surge=1, unavailable=1), ROLLING, id="mid-rollout"),
    pytest.param(deploy(4), [rs("v2", spec=4, revision=2)], id="complete"),
    pytest.param(deploy(4, paused=True), [rs("v2", spec=4, revision=2)], id="paused"),
    pytest.param(deploy(4), [rs("v2", spec=4, available=1, revision=2)],
                 id="unavailable"),
])
def test_a_sync_with_nothing_changed_leaves_the_status_as_written(d: Obj,
                                                                   rses: list[Obj]) -> None:
    """The status a sync wrote comes back (the Deployment's own update event): the next
    sync must compute the very same status, conditions in the same order, or it writes
    again with nothing changed (and that write comes back too)."""
    first = plan(d, rses, pods_per_rs={}, now=NOW).status
    again = plan({**d, "status": first}, rses, pods_per_rs={}, now=NOW + 5).status
    assert again == first  # lists compare in order: the conditions too


def test_progress_still_moves_the_status_and_its_update_time() -> None:
    d = deploy(4, surge=1, unavailable=1)
    first = plan(d, ROLLING, pods_per_rs={}, now=NOW).status
    ready = [ROLLING[0], rs("v2", spec=2, available=1, status=2, revision=2)]
    later = plan({**d, "status": first}, ready, pods_per_rs={}, now=NOW + 5).status
    assert later != first
    assert later["availableReplicas"] == first["availableReplicas"] + 1
    conds = {c["type"]: c for c in later["conditions"]}
    assert conds["Progressing"]["lastUpdateTime"] == pu.rfc3339(NOW + 5)
    assert conds["Progressing"]["lastTransitionTime"] == pu.rfc3339(NOW)
