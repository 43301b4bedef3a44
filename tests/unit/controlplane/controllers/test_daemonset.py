"""daemonset_plan: which nodes get a daemon pod, which pods go, rolling updates, status."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.controllers import daemonset_plan as dp
from controlplane.controllers.plan_util import rfc3339

NOW = 1_800_000_000.0
UID = "ds-uid"


def ds(*, node_selector: dict[str, str] | None = None, tolerations: list[Any] | None = None,
       strategy: dict[str, Any] | None = None, image: str = "agent:1",
       affinity: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": image}]}
    if node_selector:
        spec["nodeSelector"] = node_selector
    if tolerations:
        spec["tolerations"] = tolerations
    if affinity:
        spec["affinity"] = affinity
    return {"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "kube", "uid": UID, "generation": 3},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "template": {"metadata": {"labels": {"app": "agent"}}, "spec": spec},
                     "updateStrategy": strategy or {"type": "RollingUpdate",
                                                    "rollingUpdate": {"maxUnavailable": 1}}}}


def node(name: str, labels: dict[str, str] | None = None,
         taints: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}},
            "spec": {"taints": taints} if taints else {}}


CURRENT = dp.template_hash(ds())
OLD = dp.template_hash(ds(image="agent:0"))


def pod(name: str, node_name: str, *, hash_: str = CURRENT, ready: bool = True,
        phase: str = "Running", deleting: bool = False, bound: bool = True,
        created: float = NOW - 100) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {dp.HASH_LABEL: hash_},
                            "creationTimestamp": rfc3339(created),
                            "ownerReferences": [{"uid": UID, "controller": True}]}
    if deleting:
        meta["deletionTimestamp"] = rfc3339(NOW)
    spec: dict[str, Any] = {"nodeName": node_name} if bound else dp.new_pod(
        ds(), node_name)["spec"]
    status: dict[str, Any] = {"phase": phase}
    if ready:
        status["conditions"] = [{"type": "Ready", "status": "True",
                                 "lastTransitionTime": rfc3339(NOW - 60)}]
    return {"metadata": meta, "spec": spec, "status": status}


THREE = [node("n1"), node("n2"), node("n3")]
NO_SCHED = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
NO_EXEC = {"key": "dedicated", "value": "gpu", "effect": "NoExecute"}


@pytest.mark.parametrize("the_ds,nodes,pods,create,delete", [
    pytest.param(ds(), THREE, [], ("n1", "n2", "n3"), (), id="every-node"),
    pytest.param(ds(), THREE, [pod("a", "n1")], ("n2", "n3"), (), id="missing-nodes"),
    pytest.param(ds(node_selector={"disk": "ssd"}),
                 [node("n1", {"disk": "ssd"}), node("n2")], [], ("n1",), (),
                 id="node-selector"),
    pytest.param(ds(node_selector={"disk": "ssd"}),
                 [node("n1", {"disk": "ssd"}), node("n2")], [pod("b", "n2")], ("n1",),
                 ("b",), id="relabelled-node-loses-pod"),
    pytest.param(ds(affinity={"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}}),
                 [node("n1", {"zone": "a"}), node("n2", {"zone": "b"})], [], ("n1",), (),
                 id="required-affinity"),
    pytest.param(ds(), [node("n1"), node("n2", taints=[NO_SCHED])], [], ("n1",), (),
                 id="no-schedule-taint-no-new-pod"),
    pytest.param(ds(), [node("n1", taints=[NO_SCHED])], [pod("a", "n1")], (), (),
                 id="no-schedule-taint-keeps-running-pod"),
    pytest.param(ds(), [node("n1", taints=[NO_EXEC])], [pod("a", "n1")], (), ("a",),
                 id="no-execute-taint-evicts"),
    pytest.param(ds(tolerations=[{"key": "dedicated", "operator": "Exists"}]),
                 [node("n1", taints=[NO_SCHED, NO_EXEC])], [], ("n1",), (),
                 id="tolerated-taints"),
    pytest.param(ds(), [node("n1", taints=[
        {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},
        {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
        {"key": "node.kubernetes.io/disk-pressure", "effect": "NoSchedule"}])], [],
                 ("n1",), (), id="automatic-tolerations"),
    pytest.param(ds(), [node("n1")], [pod("a", "n1"), pod("b", "n1", created=NOW - 10)],
                 (), ("b",), id="duplicate-newest-deleted"),
    pytest.param(ds(), [node("n1")], [pod("a", "n1", phase="Failed")], ("n1",), ("a",),
                 id="failed-pod-replaced"),
    pytest.param(ds(), [node("n1")], [pod("a", "n1", deleting=True)], (), (),
                 id="wait-for-terminating-pod"),
    pytest.param(ds(), [node("n1")], [pod("a", "n1"), pod("z", "gone")], (), ("z",),
                 id="node-removed"),
])
def test_create_and_delete(the_ds: dict[str, Any], nodes: list[dict[str, Any]],
                           pods: list[dict[str, Any]], create: tuple[str, ...],
                           delete: tuple[str, ...]) -> None:
    plan = dp.plan(the_ds, nodes, pods, NOW)
    assert plan.create == create
    assert plan.delete == delete


def test_unbound_pod_is_bound_not_recreated() -> None:
    plan = dp.plan(ds(), [node("n1")], [pod("a", "n1", bound=False)], NOW)
    assert plan.bind == (("a", "n1"),) and plan.create == ()


@pytest.mark.parametrize("strategy,pods,delete", [
    pytest.param(None, [pod(f"p{i}", f"n{i}", hash_=OLD) for i in (1, 2, 3)], ("p1",),
                 id="max-unavailable-1"),
    pytest.param({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}},
                 [pod(f"p{i}", f"n{i}", hash_=OLD) for i in (1, 2, 3)], ("p1", "p2"),
                 id="max-unavailable-2"),
    pytest.param({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "50%"}},
                 [pod(f"p{i}", f"n{i}", hash_=OLD) for i in (1, 2, 3)], ("p1", "p2"),
                 id="percent-rounds-up"),
    pytest.param(None, [pod("p1", "n1", hash_=OLD), pod("p2", "n2", hash_=OLD)], (),
                 id="budget-used-by-missing-pod"),
    pytest.param(None, [pod("p1", "n1"), pod("p2", "n2", hash_=OLD, ready=False),
                        pod("p3", "n3", hash_=OLD)], ("p2",),
                 id="unavailable-old-pod-first"),
    pytest.param({"type": "OnDelete"},
                 [pod(f"p{i}", f"n{i}", hash_=OLD) for i in (1, 2, 3)], (), id="on-delete"),
])
def test_rolling_update(strategy: dict[str, Any] | None, pods: list[dict[str, Any]],
                        delete: tuple[str, ...]) -> None:
    plan = dp.plan(ds(strategy=strategy), THREE, pods, NOW)
    assert plan.delete == delete


def test_status_counts() -> None:
    nodes = [*THREE, node("n4", taints=[NO_SCHED])]
    pods = [pod("a", "n1"), pod("b", "n2", hash_=OLD), pod("c", "n3", ready=False),
            pod("d", "n4")]
    plan = dp.plan(ds(), nodes, pods, NOW)
    assert plan.status == {
        "desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberMisscheduled": 1,
        "numberReady": 2, "numberAvailable": 2, "updatedNumberScheduled": 2,
        "numberUnavailable": 1, "observedGeneration": 3}


def test_min_ready_seconds_requeues() -> None:
    the_ds = ds()
    the_ds["spec"]["minReadySeconds"] = 100
    plan = dp.plan(the_ds, [node("n1")], [pod("a", "n1")], NOW)  # ready 60 s ago
    assert plan.status["numberAvailable"] == 0
    assert plan.requeue_after == 40.0


def test_new_pod_is_pinned_to_its_node() -> None:
    the_ds = ds(tolerations=[{"key": "x", "operator": "Exists"}])
    p = dp.new_pod(the_ds, "n7")
    assert p["metadata"]["labels"] == {"app": "agent",
                                       dp.HASH_LABEL: dp.template_hash(the_ds)}
    assert p["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet"
    assert dp.target_node(p) == "n7"
    keys = [t.get("key") for t in p["spec"]["tolerations"]]
    assert keys[0] == "x" and "node.kubernetes.io/unreachable" in keys
    assert "nodeName" not in p["spec"]


def test_template_hash_follows_template() -> None:
    assert dp.template_hash(ds()) == CURRENT != OLD
