"""Server-side apply and field ownership: field sets in FieldsV1 form, apply (create,
re-apply, removal, sharing, conflicts, force) and the bookkeeping of ordinary writes."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.apiserver.apply import (
    ApplyConflict,
    FieldConflict,
    apply,
    track_update,
)
from controlplane.apiserver.fieldset import (
    MISSING,
    FieldSet,
    FieldSetError,
    fields_of,
    path_string,
    value_at,
)

WEB_KEY = 'k:{"name":"web"}'
CONTAINERS = ("f:spec", "f:template", "f:spec", "f:containers")


def deployment(*, replicas: int | None = 3, containers: list[dict[str, Any]] | None = None,
               labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"template": {"spec": {"containers": containers if containers
                                                   is not None else
                                                   [{"name": "web", "image": "nginx:1"}]}}}
    if replicas is not None:
        body["replicas"] = replicas
    meta: dict[str, Any] = {"name": "web", "namespace": "default"}
    if labels is not None:
        meta["labels"] = labels
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
            "spec": {**body, **spec}}


def managers(obj: dict[str, Any]) -> dict[tuple[str, str], FieldSet]:
    return {(m["manager"], m["operation"]): FieldSet.from_fields_v1(m["fieldsV1"])
            for m in obj["metadata"].get("managedFields", [])}


def owned(obj: dict[str, Any], manager: str, operation: str = "Apply") -> set[str]:
    return {path_string(p) for p in managers(obj).get((manager, operation), FieldSet())}


def containers_of(obj: dict[str, Any]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = obj["spec"]["template"]["spec"]["containers"]
    return result


# ---- field sets ------------------------------------------------------------------------

def test_fields_of_a_deployment_in_fieldsv1_form() -> None:
    obj = deployment(labels={"app": "web"})
    obj["metadata"].update(uid="u", resourceVersion="7", finalizers=["a.io/x"],
                           managedFields=[{"manager": "m"}])
    obj["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"containerPort": 80}]
    obj["spec"]["template"]["spec"]["containers"][0]["args"] = ["-v"]
    obj["spec"]["template"]["spec"]["volumes"] = [{"name": "d", "emptyDir": {}}]
    assert fields_of(obj).to_fields_v1() == {
        "f:metadata": {"f:finalizers": {'v:"a.io/x"': {}}, "f:labels": {"f:app": {}}},
        "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {
            "f:containers": {WEB_KEY: {
                ".": {}, "f:args": {}, "f:image": {}, "f:name": {},
                "f:ports": {'k:{"containerPort":80}': {".": {}, "f:containerPort": {}}}}},
            "f:volumes": {'k:{"name":"d"}': {".": {}, "f:emptyDir": {}, "f:name": {}}}}}}}


@pytest.mark.parametrize(("obj", "want"), [
    pytest.param({"apiVersion": "v1", "kind": "Service", "spec": {"ports": [{"port": 80}]}},
                 {'.spec.ports[port=80]', '.spec.ports[port=80].port'},
                 id="service-ports-keyed-by-port"),
    pytest.param({"kind": "Pod", "metadata": {"name": "p", "generation": 2,
                                              "annotations": {"a.io/b": "x"}}},
                 {".metadata.annotations.a.io/b"}, id="only-owned-metadata"),
    pytest.param({"kind": "Pod", "spec": {"tolerations": [{"key": "a"}], "x": None}},
                 {".spec.tolerations"}, id="atomic-list-and-null"),
    pytest.param({"kind": "Pod", "metadata": {"ownerReferences": [{"uid": "u1"}]}},
                 {'.metadata.ownerReferences[uid="u1"]',
                  '.metadata.ownerReferences[uid="u1"].uid'}, id="ownerReferences-by-uid"),
    pytest.param({"kind": "Pod", "status": {"conditions": [{"type": "Ready", "status": "True"}]}},
                 {'.status.conditions[type="Ready"]', '.status.conditions[type="Ready"].type',
                  '.status.conditions[type="Ready"].status'}, id="conditions-by-type"),
])
def test_fields_of(obj: dict[str, Any], want: set[str]) -> None:
    assert {path_string(p) for p in fields_of(obj)} == want


def test_fieldsv1_round_trip_and_set_operations() -> None:
    a = fields_of(deployment(labels={"x": "1"}))
    b = fields_of(deployment(replicas=None, labels={"y": "2"}))
    assert FieldSet.from_fields_v1(a.to_fields_v1()) == a
    assert FieldSet.from_fields_v1(json.loads(json.dumps(a.to_fields_v1()))) == a
    assert {path_string(p) for p in a - b} == {".spec.replicas", ".metadata.labels.x"}
    assert {path_string(p) for p in b - a} == {".metadata.labels.y"}
    assert a & b == b - FieldSet([("f:metadata", "f:labels", "f:y")])
    assert (a | b) - (a & b) == (a - b) | (b - a)
    assert FieldSet.from_fields_v1({}) == FieldSet() and not FieldSet()
    assert (*CONTAINERS, WEB_KEY) in a and a.has_prefix(CONTAINERS)


@pytest.mark.parametrize("data", [
    pytest.param([], id="not-a-map"), pytest.param({"spec": {}}, id="no-prefix"),
    pytest.param({"f:spec": {"k:notjson": {}}}, id="key-not-json"),
    pytest.param({"f:spec": {"k:[1]": {}}}, id="key-not-object"),
    pytest.param({"f:spec": 1}, id="child-not-map"),
])
def test_bad_fieldsv1(data: Any) -> None:
    with pytest.raises(FieldSetError):
        FieldSet.from_fields_v1(data)


def test_associative_item_without_its_key_is_an_error() -> None:
    with pytest.raises(FieldSetError, match=r"\.spec\.template\.spec\.containers: .*'name'"):
        fields_of(deployment(containers=[{"image": "x"}]))


# ---- apply -----------------------------------------------------------------------------

def test_create() -> None:
    applied = deployment(labels={"app": "web"})
    out = apply(None, applied, manager="alice", force=False, now="T1")
    entry = out["metadata"].pop("managedFields")
    assert out == applied
    assert entry == [{"manager": "alice", "operation": "Apply", "apiVersion": "apps/v1",
                      "time": "T1", "fieldsType": "FieldsV1",
                      "fieldsV1": fields_of(applied).to_fields_v1()}]


def test_reapply_same_changes_nothing() -> None:
    live = apply(None, deployment(), manager="alice", force=False, now="T1")
    live["metadata"]["resourceVersion"] = "5"
    again = apply(live, deployment(), manager="alice", force=False, now="T2")
    assert again == live
    assert again["metadata"]["managedFields"][0]["time"] == "T1"


def test_apply_removing_a_field_it_owned() -> None:
    live = apply(None, deployment(labels={"a": "1", "b": "2"}, paused=True),
                 manager="alice", force=False, now="T1")
    out = apply(live, deployment(replicas=None, labels={"a": "1"}), manager="alice",
                force=False, now="T2")
    assert "replicas" not in out["spec"] and "paused" not in out["spec"]
    assert out["metadata"]["labels"] == {"a": "1"}
    assert owned(out, "alice") == {".metadata.labels.a", *owned(live, "alice")} - {
        ".spec.replicas", ".spec.paused", ".metadata.labels.b"}
    gone = apply(out, deployment(replicas=None), manager="alice", force=False, now="T3")
    assert "labels" not in gone["metadata"]


def test_two_managers_share_a_field() -> None:
    live = apply(None, deployment(replicas=3), manager="alice", force=False, now="T1")
    shared = apply(live, deployment(replicas=3), manager="bob", force=False, now="T2")
    assert ".spec.replicas" in owned(shared, "alice") & owned(shared, "bob")
    alice_drops = apply(shared, deployment(replicas=None), manager="alice", force=False,
                        now="T3")
    assert alice_drops["spec"]["replicas"] == 3  # bob still owns it
    assert ".spec.replicas" not in owned(alice_drops, "alice")
    bob_drops = apply(alice_drops, deployment(replicas=None), manager="bob", force=False,
                      now="T4")
    assert "replicas" not in bob_drops["spec"]


def _edited(live: dict[str, Any], manager: str, change: Any) -> dict[str, Any]:
    new = copy.deepcopy(live)
    change(new)
    return track_update(live, new, manager=manager, now="T5")


def test_conflict_with_an_update_manager() -> None:
    live = apply(None, deployment(replicas=3), manager="alice", force=False, now="T1")
    edited = _edited(live, "clusterctl-edit", lambda o: o["spec"].update(replicas=5))
    assert owned(edited, "clusterctl-edit", "Update") == {".spec.replicas"}
    assert ".spec.replicas" not in owned(edited, "alice")
    before = copy.deepcopy(edited)
    with pytest.raises(ApplyConflict) as info:
        apply(edited, deployment(replicas=4), manager="alice", force=False, now="T6")
    assert info.value.conflicts == [FieldConflict("clusterctl-edit", ".spec.replicas")]
    assert str(info.value) == ('Apply failed with 1 conflict: conflict with '
                               '"clusterctl-edit" using apps/v1: .spec.replicas')
    assert edited == before
    # the same value is no conflict: ownership is shared
    same = apply(edited, deployment(replicas=5), manager="alice", force=False, now="T6")
    assert ".spec.replicas" in owned(same, "alice") & owned(same, "clusterctl-edit", "Update")


def test_conflicts_with_several_fields_and_managers_reported_at_once() -> None:
    live = apply(None, deployment(labels={"a": "1"}), manager="alice", force=False, now="T1")
    bob = apply(live, deployment(replicas=None, containers=[
        {"name": "web", "image": "nginx:2"}], labels={"a": "1"}),
        manager="bob", force=True, now="T2")
    edited = _edited(bob, "editor", lambda o: o["spec"].update(replicas=9))
    with pytest.raises(ApplyConflict) as info:
        apply(edited, deployment(replicas=4, containers=[{"name": "web", "image": "nginx:3"}],
                                 labels={"a": "2"}), manager="carol", force=False, now="T3")
    got = sorted((c.manager, c.path) for c in info.value.conflicts)
    assert got == [("alice", ".metadata.labels.a"),
                   ("bob", ".metadata.labels.a"),
                   ("bob", '.spec.template.spec.containers[name="web"].image'),
                   ("editor", ".spec.replicas")]
    assert str(info.value) == (
        "Apply failed with 4 conflicts: conflicts with \"alice\":\n- .metadata.labels.a\n"
        "conflicts with \"bob\":\n- .metadata.labels.a\n"
        "- .spec.template.spec.containers[name=\"web\"].image\n"
        "conflicts with \"editor\" using apps/v1:\n- .spec.replicas")


def test_force_takes_ownership() -> None:
    live = apply(None, deployment(replicas=3), manager="alice", force=False, now="T1")
    edited = _edited(live, "editor", lambda o: o["spec"].update(replicas=5))
    out = apply(edited, deployment(replicas=4), manager="alice", force=True, now="T2")
    assert out["spec"]["replicas"] == 4
    assert ".spec.replicas" in owned(out, "alice")
    assert ("editor", "Update") not in managers(out)  # its only field is gone: entry dropped
    image = _edited(out, "editor", lambda o: containers_of(o)[0].update(image="n:9"))
    forced = apply(image, deployment(replicas=None, labels={"z": "1"}), manager="bob",
                   force=True, now="T3")
    assert containers_of(forced)[0]["image"] == "nginx:1"
    assert '.spec.template.spec.containers[name="web"].image' not in owned(
        forced, "editor", "Update")


def test_apply_after_track_update() -> None:
    created = track_update(None, deployment(labels={"app": "web"}), manager="clusterctl-create",
                           now="T0")
    assert owned(created, "clusterctl-create", "Update") == {
        path_string(p) for p in fields_of(deployment(labels={"app": "web"}))}
    # apply the same config: shared, no conflict; then drop replicas: kept (still owned)
    applied = apply(created, deployment(labels={"app": "web"}), manager="alice", force=False,
                    now="T1")
    assert applied["spec"] == created["spec"]
    dropped = apply(applied, deployment(replicas=None, labels={"app": "web"}),
                    manager="alice", force=False, now="T2")
    assert dropped["spec"]["replicas"] == 3


def test_associative_list_items_owned_per_item() -> None:
    live = apply(None, deployment(), manager="alice", force=False, now="T1")
    side = {"name": "side", "image": "busybox"}
    both = apply(live, deployment(replicas=None, containers=[side]), manager="bob",
                 force=False, now="T2")
    assert [c["name"] for c in containers_of(both)] == ["web", "side"]
    assert owned(both, "bob") == {'.spec.template.spec.containers[name="side"]',
                                  '.spec.template.spec.containers[name="side"].name',
                                  '.spec.template.spec.containers[name="side"].image'}
    # alice changes her item only; bob's is untouched
    changed = apply(both, deployment(containers=[{"name": "web", "image": "nginx:2"}]),
                    manager="alice", force=False, now="T3")
    assert containers_of(changed) == [{"name": "web", "image": "nginx:2"}, side]
    # bob stops applying his item: it goes, alice's stays
    gone = apply(changed, deployment(replicas=None, containers=[]), manager="bob",
                 force=False, now="T4")
    assert containers_of(gone) == [{"name": "web", "image": "nginx:2"}]


def test_item_kept_while_another_manager_owns_a_field_in_it() -> None:
    live = apply(None, deployment(containers=[{"name": "web", "image": "nginx:1",
                                               "args": ["-v"]}]),
                 manager="alice", force=False, now="T1")
    edited = _edited(live, "editor", lambda o: containers_of(o)[0].update(image="nginx:2"))
    out = apply(edited, deployment(containers=[]), manager="alice", force=False, now="T2")
    assert containers_of(out) == [{"name": "web", "image": "nginx:2"}]


def test_finalizers_are_a_set() -> None:
    a = deployment()
    a["metadata"]["finalizers"] = ["a.io/x"]
    b = deployment(replicas=None)
    b["metadata"]["finalizers"] = ["b.io/y"]
    live = apply(None, a, manager="alice", force=False, now="T1")
    both = apply(live, b, manager="bob", force=False, now="T2")
    assert both["metadata"]["finalizers"] == ["a.io/x", "b.io/y"]
    assert '.metadata.finalizers[="b.io/y"]' in owned(both, "bob")
    b["metadata"]["finalizers"] = []
    left = apply(both, b, manager="bob", force=False, now="T3")
    assert left["metadata"]["finalizers"] == ["a.io/x"]


def test_server_metadata_and_nulls_in_the_config() -> None:
    live = apply(None, deployment(), manager="alice", force=False, now="T1")
    live["metadata"].update(uid="u1", resourceVersion="8", generation=2)
    config = deployment(paused=None)
    config["metadata"].update(uid="other", resourceVersion="1", managedFields=[{"x": 1}])
    out = apply(live, config, manager="alice", force=False, now="T2")
    assert (out["metadata"]["uid"], out["metadata"]["resourceVersion"]) == ("u1", "8")
    assert "paused" not in out["spec"] and out == live


def test_entries_of_other_managers_survive_untouched() -> None:
    live = apply(None, deployment(), manager="alice", force=False, now="T1")
    live["metadata"]["managedFields"].append(
        {"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": "T0",
         "subresource": "status", "fieldsType": "FieldsV1",
         "fieldsV1": {"f:status": {"f:replicas": {}}}})
    live["status"] = {"replicas": 3}
    out = apply(live, deployment(replicas=2), manager="alice", force=False, now="T2")
    assert out["metadata"]["managedFields"][1] == live["metadata"]["managedFields"][1]


# ---- track_update ----------------------------------------------------------------------

def test_track_update_moves_changed_fields_and_drops_removed_ones() -> None:
    live = apply(None, deployment(labels={"a": "1"}), manager="alice", force=False, now="T1")
    new = copy.deepcopy(live)
    new["spec"]["replicas"] = 7
    del new["metadata"]["labels"]
    new["metadata"]["annotations"] = {"note": "x"}
    out = track_update(live, new, manager="editor", now="T2")
    assert owned(out, "editor", "Update") == {".spec.replicas", ".metadata.annotations.note"}
    assert not owned(out, "alice") & {".spec.replicas", ".metadata.labels.a"}
    assert out["metadata"]["managedFields"][1]["time"] == "T2"
    assert new["metadata"]["managedFields"] == live["metadata"]["managedFields"]


def test_track_update_without_changes_keeps_managed_fields() -> None:
    live = apply(None, deployment(), manager="alice", force=False, now="T1")
    new = copy.deepcopy(live)
    new["metadata"]["resourceVersion"] = "9"
    new["metadata"].pop("managedFields")
    out = track_update(live, new, manager="editor", now="T2")
    assert out["metadata"]["managedFields"] == live["metadata"]["managedFields"]


# ---- properties ------------------------------------------------------------------------

_NAMES = st.sampled_from(["web", "side", "log"])
_CONTAINERS = st.lists(st.fixed_dictionaries(
    {"name": _NAMES, "image": st.sampled_from(["a", "b"])},
    optional={"args": st.lists(st.sampled_from(["-x", "-y"]), max_size=2)}),
    max_size=3, unique_by=lambda c: str(c["name"]))
_CONFIGS = st.builds(
    lambda replicas, containers, labels: deployment(replicas=replicas, containers=containers,
                                                    labels=labels),
    st.one_of(st.none(), st.integers(0, 3)), _CONTAINERS,
    st.dictionaries(st.sampled_from(["a", "b"]), st.sampled_from(["1", "2"]), max_size=2))


@settings(max_examples=150, deadline=None)
@given(_CONFIGS, _CONFIGS, _CONFIGS, st.booleans())
def test_apply_properties(first: dict[str, Any], second: dict[str, Any],
                          third: dict[str, Any], force: bool) -> None:
    snapshot = copy.deepcopy((first, second, third))
    live = apply(None, first, manager="alice", force=False, now="T1")
    try:
        two = apply(live, second, manager="bob", force=force, now="T2")
    except ApplyConflict as e:
        assert not force and e.conflicts
        two = apply(live, second, manager="bob", force=True, now="T2")
    live_before = copy.deepcopy(two)
    new = copy.deepcopy(two)
    new["spec"]["paused"] = True
    three = track_update(two, new, manager="editor", now="T3")
    try:
        out = apply(three, third, manager="alice", force=force, now="T4")
    except ApplyConflict:
        out = apply(three, third, manager="alice", force=True, now="T4")
    assert (first, second, third) == snapshot and two == live_before
    # the applier owns exactly what it applied, and every owned field exists
    assert managers(out).get(("alice", "Apply"), FieldSet()) == fields_of(third)
    for fields in managers(out).values():
        assert fields and all(value_at(out, p) is not MISSING for p in fields)
    # what alice applied is in the object; re-applying it changes nothing
    for c in third["spec"]["template"]["spec"]["containers"]:
        assert any(c.items() <= o.items() for o in containers_of(out))
    assert apply(out, third, manager="alice", force=False, now="T5") == out
