"""The object service's REST semantics over the in-memory Store (the same Store protocol
etcd passes in integration/); patch and apply have their own tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from api import errors as e
from controlplane.apiserver.objects import ObjectService
from controlplane.apiserver.resources import RESOURCES
from controlplane.storage import InMemoryStore

pytestmark = pytest.mark.asyncio

PODS, DEPLOYS, NS, CMS = (RESOURCES[r] for r in ("pods", "deployments", "namespaces",
                                                   "configmaps"))
SECRETS, JOBS, NODES = RESOURCES["secrets"], RESOURCES["jobs"], RESOURCES["nodes"]


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest_asyncio.fixture
async def svc() -> AsyncIterator[ObjectService]:
    s = ObjectService(InMemoryStore(), clock=Clock())
    await s.create(NS, {"apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": "default"}})
    yield s


def pod(name: str = "web", **spec: Any) -> dict[str, Any]:
    labels = spec.pop("labels", {"app": "web"})
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "busybox:1"}], **spec}}


def cm(name: str = "cfg", **over: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
            "data": {"a": "1"}, **over}


def deploy(name: str = "web", replicas: int = 2) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c",
                                                           "image": "busybox:1"}]}}}}


async def reason(coro: Any) -> tuple[e.Reason, str]:
    with pytest.raises(e.APIError) as info:
        await coro
    return info.value.reason, info.value.message


# ---- create -------------------------------------------------------------------------

async def test_create_sets_server_metadata_and_defaults(svc: ObjectService) -> None:
    out = await svc.create(PODS, pod(), namespace="default")
    m = out["metadata"]
    assert m["namespace"] == "default" and m["generation"] == 1
    assert len(m["uid"]) == 36 and m["creationTimestamp"] == "2027-01-15T08:00:00Z"
    assert int(m["resourceVersion"]) > 0
    assert out["spec"]["restartPolicy"] == "Always"  # a Kubernetes default
    got = await svc.get(PODS, namespace="default", name="web")
    assert got == out


async def test_create_twice_is_already_exists_naming_the_object(svc: ObjectService) -> None:
    await svc.create(CMS, cm(), namespace="default")
    r, msg = await reason(svc.create(CMS, cm(), namespace="default"))
    assert r is e.Reason.ALREADY_EXISTS
    assert msg == "ConfigMap 'cfg' already exists in namespace 'default'"


async def test_generate_name(svc: ObjectService) -> None:
    body = cm()
    body["metadata"] = {"generateName": "cfg-"}
    a = await svc.create(CMS, body, namespace="default")
    b = await svc.create(CMS, body, namespace="default")
    assert a["metadata"]["name"].startswith("cfg-") and len(a["metadata"]["name"]) == 9
    assert a["metadata"]["name"] != b["metadata"]["name"]


@pytest.mark.parametrize(("body", "ns", "want"), [
    pytest.param(deploy(replicas=-1), "default", (
        e.Reason.INVALID, "Deployment web: spec.replicas: must be >= 0, got -1"), id="invalid"),
    pytest.param({**cm(), "datta": {}}, "default", (
        e.Reason.INVALID, "ConfigMap cfg: datta: unknown field"), id="unknown-field"),
    pytest.param(cm(), "nope", (e.Reason.NOT_FOUND, "namespaces 'nope' not found"),
                 id="no-namespace"),
    pytest.param(pod(), "", (e.Reason.BAD_REQUEST, "Pod is namespaced"), id="no-ns-given"),
    pytest.param({**cm(), "kind": "Secret"}, "default", (
        e.Reason.BAD_REQUEST, "does not match resource configmaps"), id="wrong-kind"),
    pytest.param({**cm(), "metadata": {"name": "cfg", "namespace": "other"}}, "default", (
        e.Reason.BAD_REQUEST, "metadata.namespace 'other' does not match"), id="ns-mismatch"),
    pytest.param({**cm(), "metadata": {"name": "cfg", "resourceVersion": "5"}}, "default", (
        e.Reason.BAD_REQUEST, "resourceVersion must not be set on create"), id="rv-on-create"),
    pytest.param("not an object", "default", (e.Reason.BAD_REQUEST, "must be a JSON object"),
                 id="not-object"),
])
async def test_create_rejects_bad_input_and_stores_nothing(
        svc: ObjectService, body: Any, ns: str, want: tuple[e.Reason, str]) -> None:
    r, msg = await reason(svc.create(RESOURCES["configmaps"] if not isinstance(body, dict)
                                     or (body.get("kind") != "Deployment" and
                                     body.get("kind") != "Pod") else
                                     (DEPLOYS if body["kind"] == "Deployment" else PODS),
                                     body, namespace=ns))
    assert r is want[0]
    assert want[1] in msg
    listed = await svc.list(CMS, namespace="")
    assert listed["items"] == []


async def test_terminating_namespace_refuses_new_objects(svc: ObjectService) -> None:
    await svc.create(NS, {"apiVersion": "v1", "kind": "Namespace",
                          "metadata": {"name": "old"}})
    marked = await svc.delete(NS, name="old")
    assert marked["status"]["phase"] == "Terminating"
    assert marked["metadata"]["deletionTimestamp"]
    r, msg = await reason(svc.create(CMS, cm(), namespace="old"))
    assert r is e.Reason.FORBIDDEN and "being terminated" in msg


async def test_dry_run_stores_nothing(svc: ObjectService) -> None:
    out = await svc.create(CMS, cm(), namespace="default", dry_run=True)
    assert out["metadata"]["uid"]
    assert (await svc.list(CMS))["items"] == []


# ---- update -------------------------------------------------------------------------

async def test_update_is_compare_and_swap_naming_the_current_version(
        svc: ObjectService) -> None:
    first = await svc.create(CMS, cm(), namespace="default")
    a = {**first, "data": {"a": "2"}}
    b = {**first, "data": {"a": "3"}}
    won = await svc.update(CMS, a, namespace="default", name="cfg")
    r, msg = await reason(svc.update(CMS, b, namespace="default", name="cfg"))
    assert r is e.Reason.CONFLICT
    assert f"current resourceVersion {won['metadata']['resourceVersion']}" in msg
    assert (await svc.get(CMS, namespace="default", name="cfg"))["data"] == {"a": "2"}


@pytest.mark.parametrize("manager", [pytest.param("", id="no-field-manager"),
                                     pytest.param("ctl", id="field-manager-tracked")])
async def test_update_returns_the_stored_resource_version(svc: ObjectService,
                                                          manager: str) -> None:
    first = await svc.create(CMS, cm(), namespace="default", field_manager=manager)
    out = await svc.update(CMS, {**first, "data": {"a": "2"}}, namespace="default",
                           name="cfg", field_manager=manager)
    stored = await svc.get(CMS, namespace="default", name="cfg")
    assert out["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]
    assert int(out["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])


async def test_update_without_resource_version_is_unconditional(svc: ObjectService) -> None:
    await svc.create(CMS, cm(), namespace="default")
    out = await svc.update(CMS, cm(data={"a": "9"}), namespace="default", name="cfg")
    assert out["data"] == {"a": "9"}


async def test_update_keeps_server_fields_and_bumps_generation_on_spec_change(
        svc: ObjectService) -> None:
    made = await svc.create(DEPLOYS, deploy(), namespace="default")
    body = deploy(replicas=5)
    body["metadata"].update(uid="forged", creationTimestamp="1999-01-01T00:00:00Z")
    body["status"] = {"replicas": 42}
    out = await svc.update(DEPLOYS, body, namespace="default", name="web")
    assert out["metadata"]["uid"] == made["metadata"]["uid"]
    assert out["metadata"]["creationTimestamp"] == made["metadata"]["creationTimestamp"]
    assert out["metadata"]["generation"] == 2
    assert "status" not in out or out["status"].get("replicas") != 42
    labels_only = {**out, "metadata": {**out["metadata"], "labels": {"x": "y"}}}
    again = await svc.update(DEPLOYS, labels_only, namespace="default", name="web")
    assert again["metadata"]["generation"] == 2


async def test_status_subresource_writes_only_status(svc: ObjectService) -> None:
    made = await svc.create(DEPLOYS, deploy(), namespace="default")
    body = {**made, "spec": {**made["spec"], "replicas": 9}, "status": {"replicas": 2}}
    out = await svc.update(DEPLOYS, body, namespace="default", name="web",
                           subresource="status")
    assert out["status"] == {"replicas": 2} and out["spec"]["replicas"] == 2
    assert out["metadata"]["generation"] == 1


async def test_unchanged_update_writes_nothing(svc: ObjectService) -> None:
    made = await svc.create(CMS, cm(), namespace="default")
    out = await svc.update(CMS, made, namespace="default", name="cfg")
    assert out["metadata"]["resourceVersion"] == made["metadata"]["resourceVersion"]


@pytest.mark.parametrize("verb", [pytest.param("update", id="update"),
                                  pytest.param("patch", id="patch")])
async def test_an_unchanged_tracked_write_is_decided_once_and_writes_nothing(
        svc: ObjectService, verb: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """stored.same decides a no-op before field ownership is tracked: nothing is written,
    resourceVersion and managedFields stay, and track_update is not run at all."""
    from controlplane.apiserver import apply as ssa
    made = await svc.create(CMS, cm(), namespace="default", field_manager="maker")
    tracked: list[str] = []
    real = ssa.track_update

    def counting(old: Any, new: Any, *, manager: str, now: str) -> dict[str, Any]:
        tracked.append(manager)
        return real(old, new, manager=manager, now=now)
    monkeypatch.setattr(ssa, "track_update", counting)
    svc.clock.t += 60  # type: ignore[attr-defined]
    if verb == "update":
        out = await svc.update(CMS, made, namespace="default", name="cfg",
                               field_manager="editor")
    else:
        out = await svc.patch(CMS, namespace="default", name="cfg",
                              patch=b'{"data": {"a": "1"}}',
                              patch_type="application/merge-patch+json",
                              field_manager="editor")
    assert tracked == []
    assert out["metadata"]["resourceVersion"] == made["metadata"]["resourceVersion"]
    assert out["metadata"]["managedFields"] == made["metadata"]["managedFields"]
    changed = {**made, "data": {"a": "2"}}
    out = await svc.update(CMS, changed, namespace="default", name="cfg",
                           field_manager="editor")
    assert tracked == ["editor"]  # a real change is tracked, and written
    assert int(out["metadata"]["resourceVersion"]) > int(made["metadata"]["resourceVersion"])


@pytest.mark.parametrize(("res", "make", "change", "field"), [
    pytest.param(DEPLOYS, deploy, lambda o: o["spec"].update(
        selector={"matchLabels": {"app": "other"}}, template={
            **o["spec"]["template"], "metadata": {"labels": {"app": "other"}}}),
        "spec.selector", id="deployment-selector"),
    pytest.param(PODS, pod, lambda o: o["spec"].update(restartPolicy="Never"),
                 "spec.restartPolicy", id="pod-spec"),
    pytest.param(PODS, pod, lambda o: o["spec"].update(nodeName="n1"), "spec.nodeName",
                 id="pod-nodename-without-binding"),
    pytest.param(CMS, lambda: cm(immutable=True), lambda o: o["data"].update(a="2"), "data",
                 id="immutable-configmap"),
])
async def test_immutable_fields(svc: ObjectService, res: Any, make: Any, change: Any,
                                field: str) -> None:
    made = await svc.create(res, make(), namespace="default")
    change(made)
    r, msg = await reason(svc.update(res, made, namespace="default",
                                     name=made["metadata"]["name"]))
    assert r is e.Reason.INVALID
    assert f": {field}: " in msg


async def test_pod_image_may_change(svc: ObjectService) -> None:
    made = await svc.create(PODS, pod(), namespace="default")
    made["spec"]["containers"][0]["image"] = "busybox:2"
    out = await svc.update(PODS, made, namespace="default", name="web")
    assert out["spec"]["containers"][0]["image"] == "busybox:2"


# ---- binding and scale --------------------------------------------------------------

async def test_binding_sets_node_once(svc: ObjectService) -> None:
    await svc.create(PODS, pod(), namespace="default")
    binding: dict[str, Any] = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "web"},
               "target": {"kind": "Node", "name": "n1"}}
    out = await svc.create(PODS, binding, namespace="default", subresource="binding")
    assert out["spec"]["nodeName"] == "n1"
    assert {"type": "PodScheduled", "status": "True"}.items() <= \
        out["status"]["conditions"][0].items()
    binding["target"]["name"] = "n2"
    r, msg = await reason(svc.create(PODS, binding, namespace="default",
                                     subresource="binding"))
    assert r is e.Reason.CONFLICT and "already assigned to node n1" in msg


async def test_scale_subresource(svc: ObjectService) -> None:
    await svc.create(DEPLOYS, deploy(), namespace="default")
    scale = await svc.get(DEPLOYS, namespace="default", name="web", subresource="scale")
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 2
    assert scale["status"]["selector"] == "app=web"
    scale["spec"]["replicas"] = 7
    out = await svc.update(DEPLOYS, scale, namespace="default", name="web",
                           subresource="scale")
    assert out["spec"]["replicas"] == 7
    assert (await svc.get(DEPLOYS, namespace="default", name="web"))["spec"]["replicas"] == 7
    scale["spec"]["replicas"] = -1
    r, msg = await reason(svc.update(DEPLOYS, scale, namespace="default", name="web",
                                     subresource="scale"))
    assert r is e.Reason.INVALID and "spec.replicas" in msg


# ---- delete -------------------------------------------------------------------------

async def test_delete_removes_and_returns_the_object(svc: ObjectService) -> None:
    await svc.create(CMS, cm(), namespace="default")
    out = await svc.delete(CMS, namespace="default", name="cfg")
    assert out["metadata"]["name"] == "cfg"
    r, _ = await reason(svc.get(CMS, namespace="default", name="cfg"))
    assert r is e.Reason.NOT_FOUND


async def test_finalizers_hold_deletion_until_removed(svc: ObjectService) -> None:
    body = cm()
    body["metadata"]["finalizers"] = ["example.com/hold"]
    await svc.create(CMS, body, namespace="default")
    marked = await svc.delete(CMS, namespace="default", name="cfg")
    assert marked["metadata"]["deletionTimestamp"]
    held = await svc.get(CMS, namespace="default", name="cfg")
    r, msg = await reason(svc.update(CMS, {**held, "metadata": {
        **held["metadata"], "finalizers": ["example.com/hold", "example.com/more"]}},
        namespace="default", name="cfg"))
    assert r is e.Reason.FORBIDDEN and "no new finalizers" in msg
    held["metadata"]["finalizers"] = []
    await svc.update(CMS, held, namespace="default", name="cfg")
    r, _ = await reason(svc.get(CMS, namespace="default", name="cfg"))
    assert r is e.Reason.NOT_FOUND


@pytest.mark.parametrize(("policy", "finalizer"), [
    pytest.param("Foreground", "foregroundDeletion", id="foreground"),
    pytest.param("Orphan", "orphan", id="orphan"),
])
async def test_propagation_policy_adds_its_finalizer(svc: ObjectService, policy: str,
                                                     finalizer: str) -> None:
    await svc.create(DEPLOYS, deploy(), namespace="default")
    out = await svc.delete(DEPLOYS, namespace="default", name="web", propagation=policy)
    assert out["metadata"]["finalizers"] == [finalizer]
    assert out["metadata"]["deletionTimestamp"]


async def test_bound_pod_gets_a_grace_period_then_goes(svc: ObjectService) -> None:
    await svc.create(PODS, pod(terminationGracePeriodSeconds=20), namespace="default")
    await svc.create(PODS, {"apiVersion": "v1", "kind": "Binding",
                            "metadata": {"name": "web"}, "target": {"name": "n1"}},
                     namespace="default", subresource="binding")
    marked = await svc.delete(PODS, namespace="default", name="web")
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 20
    assert marked["metadata"]["deletionTimestamp"] == "2027-01-15T08:00:20Z"
    shorter = await svc.delete(PODS, namespace="default", name="web", grace_period=5)
    assert shorter["metadata"]["deletionGracePeriodSeconds"] == 5
    longer = await svc.delete(PODS, namespace="default", name="web", grace_period=60)
    assert longer["metadata"]["deletionGracePeriodSeconds"] == 5  # may only shorten
    await svc.delete(PODS, namespace="default", name="web", grace_period=0)
    r, _ = await reason(svc.get(PODS, namespace="default", name="web"))
    assert r is e.Reason.NOT_FOUND


async def test_unbound_pod_is_deleted_at_once(svc: ObjectService) -> None:
    await svc.create(PODS, pod(), namespace="default")
    await svc.delete(PODS, namespace="default", name="web")
    r, _ = await reason(svc.get(PODS, namespace="default", name="web"))
    assert r is e.Reason.NOT_FOUND


async def test_delete_precondition(svc: ObjectService) -> None:
    await svc.create(CMS, cm(), namespace="default")
    r, msg = await reason(svc.delete(CMS, namespace="default", name="cfg",
                                     preconditions={"uid": "other"}))
    assert r is e.Reason.CONFLICT and "precondition failed: uid" in msg


async def test_delete_collection_by_label(svc: ObjectService) -> None:
    for name, app in (("a", "x"), ("b", "x"), ("c", "y")):
        await svc.create(PODS, pod(name, labels={"app": app}), namespace="default")
    gone = await svc.delete_collection(PODS, namespace="default", label_selector="app=x")
    assert sorted(p["metadata"]["name"] for p in gone) == ["a", "b"]
    left = await svc.list(PODS, namespace="default")
    assert [p["metadata"]["name"] for p in left["items"]] == ["c"]


# ---- list and watch -----------------------------------------------------------------

async def test_list_filters_and_pages(svc: ObjectService) -> None:
    for i in range(10):
        await svc.create(PODS, pod(f"p{i}", labels={"parity": "even" if i % 2 == 0
                                                    else "odd"}), namespace="default")
    names: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await svc.list(PODS, namespace="default", label_selector="parity=even",
                              limit=2, continue_token=token)
        names += [p["metadata"]["name"] for p in page["items"]]
        pages += 1
        token = page["metadata"].get("continue", "")
        if not token:
            break
    assert names == ["p0", "p2", "p4", "p6", "p8"]
    assert pages >= 3
    assert page["kind"] == "PodList"


async def test_list_field_selector_and_errors(svc: ObjectService) -> None:
    await svc.create(PODS, pod("a"), namespace="default")
    got = await svc.list(PODS, field_selector="metadata.name=a")
    assert [p["metadata"]["name"] for p in got["items"]] == ["a"]
    r, msg = await reason(svc.list(PODS, field_selector="spec.nope=1"))
    assert r is e.Reason.BAD_REQUEST and "spec.nope" in msg
    r, msg = await reason(svc.list(PODS, label_selector="a in (b"))
    assert r is e.Reason.BAD_REQUEST and "labelSelector" in msg


async def test_list_at_an_old_resource_version(svc: ObjectService) -> None:
    a = await svc.create(CMS, cm("a"), namespace="default")
    await svc.create(CMS, cm("b"), namespace="default")
    old = await svc.list(CMS, resource_version=a["metadata"]["resourceVersion"])
    assert [c["metadata"]["name"] for c in old["items"]] == ["a"]


async def test_watch_with_selector_sees_objects_enter_and_leave(svc: ObjectService) -> None:
    start = await svc.list(PODS)
    events: list[tuple[str, str]] = []
    stream = svc.watch(PODS, namespace="default", label_selector="app=web",
                       resource_version=start["metadata"]["resourceVersion"])

    async def collect() -> None:
        async for ev in stream:
            events.append((ev["type"], ev["object"]["metadata"]["name"]))
            if len(events) == 4:
                return

    task = asyncio.create_task(collect())
    made = await svc.create(PODS, pod("a"), namespace="default")
    await svc.create(PODS, pod("other", labels={"app": "db"}), namespace="default")
    made["metadata"]["labels"] = {"app": "db"}
    moved = await svc.update(PODS, made, namespace="default", name="a")
    moved["metadata"]["labels"] = {"app": "web"}
    await svc.update(PODS, moved, namespace="default", name="a")
    await svc.delete(PODS, namespace="default", name="a")
    async with asyncio.timeout(5):
        await task
    with contextlib.suppress(Exception):
        await stream.aclose()  # type: ignore[attr-defined]
    assert events == [("ADDED", "a"), ("DELETED", "a"), ("ADDED", "a"), ("DELETED", "a")]


async def test_unknown_resource_version_text_is_bad_request(svc: ObjectService) -> None:
    r, msg = await reason(svc.list(CMS, resource_version="abc"))
    assert r is e.Reason.BAD_REQUEST and "resourceVersion 'abc'" in msg


async def test_too_large_object_is_refused_clearly(svc: ObjectService) -> None:
    big = cm(data={"blob": "x" * (1600 * 1024)})
    r, msg = await reason(svc.create(CMS, big, namespace="default"))
    assert r is e.Reason.TOO_LARGE
    assert msg.startswith("ConfigMap cfg: the object is ") and "limit" in msg


async def test_secret_and_job_rules(svc: ObjectService) -> None:
    s = await svc.create(SECRETS, {"apiVersion": "v1", "kind": "Secret",
                                   "metadata": {"name": "s"}, "type": "Opaque",
                                   "data": {"k": "dg=="}}, namespace="default")
    s["type"] = "kubernetes.io/tls"
    r, msg = await reason(svc.update(SECRETS, s, namespace="default", name="s"))
    assert r is e.Reason.INVALID and "type: field is immutable" in msg
    node = await svc.create(NODES, {"apiVersion": "v1", "kind": "Node",
                                    "metadata": {"name": "n1"}})
    assert "namespace" not in node["metadata"]
    assert JOBS.status


async def test_generate_name_with_a_field_manager(svc: ObjectService) -> None:
    body = cm()
    body["metadata"] = {"generateName": "cfg-"}
    made = await svc.create(CMS, body, namespace="default", field_manager="tester")
    assert made["metadata"]["name"].startswith("cfg-")
    assert made["metadata"]["managedFields"][0]["manager"] == "tester"
    listed = await svc.list(CMS, namespace="default")
    assert [c["metadata"]["name"] for c in listed["items"]] == [made["metadata"]["name"]]


async def test_pods_get_kubernetes_default_tolerations(svc: ObjectService) -> None:
    mine = {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
            "effect": "NoExecute", "tolerationSeconds": 7}
    made = await svc.create(PODS, pod(tolerations=[mine]), namespace="default")
    tol = made["spec"]["tolerations"]
    assert mine in tol  # the pod's own stays as it is
    assert {"key": "node.kubernetes.io/not-ready", "operator": "Exists",
            "effect": "NoExecute", "tolerationSeconds": 300} in tol
    assert len(tol) == 2


async def test_pod_may_be_created_already_bound(svc: ObjectService) -> None:
    made = await svc.create(PODS, pod(nodeName="n1"), namespace="default")
    assert made["spec"]["nodeName"] == "n1"


async def _cm_service() -> ObjectService:
    svc = ObjectService(InMemoryStore(), watch_cache=False)
    await svc.create(RESOURCES["namespaces"], {"apiVersion": "v1", "kind": "Namespace",
                                               "metadata": {"name": "default"}})
    return svc


@pytest.mark.asyncio
async def test_an_apply_that_changes_only_ownership_is_recorded() -> None:
    """A second manager applying the same values owns them too (Kubernetes); when the
    first stops applying a field, the second still holds it and the value stays."""
    svc, cm = await _cm_service(), RESOURCES["configmaps"]
    both = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
            "data": {"a": "1", "b": "2"}}
    await svc.apply(cm, both, namespace="default", name="c", field_manager="one")
    await svc.apply(cm, {**both, "data": {"a": "1"}}, namespace="default", name="c",
                    field_manager="two")
    stored = await svc.get(cm, namespace="default", name="c")
    assert sorted(m["manager"] for m in stored["metadata"]["managedFields"]) == ["one", "two"]
    await svc.apply(cm, {**both, "data": {"b": "2"}}, namespace="default", name="c",
                    field_manager="one")
    stored = await svc.get(cm, namespace="default", name="c")
    assert stored["data"] == {"a": "1", "b": "2"}
    await svc.close()
