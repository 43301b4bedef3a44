"""track_update's shortcuts (subtrees equal before and after are not compared path by
path; paths seen while walking the new object need no look-up; no deep copy) give exactly
what the plain algorithm gives: each case is run through both, and through random
objects and edits."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.apiserver import apply as ssa
from controlplane.apiserver.apply import track_update
from controlplane.apiserver.fieldset import (
    MISSING,
    FieldSet,
    Nodes,
    fields_of,
    value_at,
    walk_fields,
)
from controlplane.apiserver.patch import json_equal

NOW, LATER = "2026-01-01T00:00:00Z", "2026-01-01T00:00:09Z"


def plain_track(old: dict[str, Any] | None, new: dict[str, Any], *, manager: str,
                now: str) -> dict[str, Any]:
    """track_update as first written: every path of NEW compared, every owned path
    looked up, NEW deep-copied."""
    result = copy.deepcopy(new)
    entries, original = ssa._entries(old), ssa._entries(old)
    before = old or {}
    changed = FieldSet(
        p for p in fields_of(result)
        if value_at(result, p) is not MISSING and (
            value_at(before, p) is MISSING
            or not json_equal(value_at(before, p), value_at(result, p))))
    for e in entries:
        if not (e.manager == manager and e.operation == ssa.UPDATE):
            e.fields = e.fields - changed
    if changed:
        entry = ssa._mine(entries, manager=manager, operation=ssa.UPDATE,
                          api_version=str(result.get("apiVersion") or ""), now=now)
        entry.fields |= changed
    for e in entries:
        e.fields = FieldSet(p for p in e.fields if value_at(result, p) is not MISSING)
    if old is not None and ssa._unchanged(old, result, original, entries):
        original_meta = (old.get("metadata") or {}).get("managedFields")
        ssa._store(result, [])
        if original_meta:
            result.setdefault("metadata", {})["managedFields"] = copy.deepcopy(original_meta)
        return result
    ssa._store(result, entries)
    return result


def pod(containers: list[Any], **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default", "labels": {"app": "a"},
                         "finalizers": ["x"]},
            "spec": {"containers": containers}, **extra}


def with_status(obj: dict[str, Any], status: Any) -> dict[str, Any]:
    return {**copy.deepcopy(obj), "status": status}


WEB = {"name": "web", "image": "nginx:1", "ports": [{"containerPort": 80}]}
BASE = pod([WEB])

CASES = [
    pytest.param(None, BASE, id="create"),
    pytest.param(BASE, with_status(BASE, {"phase": "Running"}), id="status-only"),
    pytest.param(BASE, copy.deepcopy(BASE), id="no-op"),
    pytest.param(BASE, pod([{**WEB, "image": "nginx:2"}]), id="spec-change"),
    pytest.param(BASE, pod([]), id="containers-emptied"),
    pytest.param(BASE, {**pod([WEB]), "metadata": {"name": "p", "labels": {"app": "b"}}},
                 id="labels-changed-finalizers-dropped"),
    pytest.param(pod([WEB, {**WEB, "image": "other"}]), pod([WEB, {**WEB, "image": "x"}]),
                 id="duplicate-container-names"),
    pytest.param(pod([{**WEB, "ports": [{"containerPort": 80.0}]}]), BASE,
                 id="float-key-becomes-int"),
    pytest.param(BASE, pod([{**WEB, "ports": [{"containerPort": 80.0, "name": "h"}]}]),
                 id="int-key-becomes-float"),
    pytest.param(BASE, {**BASE, "metadata": {**BASE["metadata"],
                                             "finalizers": [float("nan"), "x"]}},
                 id="nan-in-a-set"),
    pytest.param(BASE, {**BASE, "metadata": {**BASE["metadata"], "finalizers": [1, True]}},
                 id="set-of-one-and-true"),
    pytest.param(BASE, {**BASE, "spec": {"containers": [WEB], "x": None}},
                 id="null-field"),
    pytest.param(BASE, {**BASE, "spec": {"containers": [WEB], "y": {}}}, id="empty-map"),
    pytest.param(BASE, {**BASE, "spec": {"containers": [{**WEB, "ports": None}]}},
                 id="null-list"),
    pytest.param(BASE, {**BASE, "spec": {"containers": [WEB], "flag": 1}},
                 id="number-field"),
    pytest.param({**BASE, "spec": {"containers": [WEB], "flag": True}},
                 {**BASE, "spec": {"containers": [WEB], "flag": 1}}, id="true-becomes-1"),
]


def _managed(obj: dict[str, Any] | None, manager: str, now: str) -> dict[str, Any] | None:
    """OBJ as stored after MANAGER wrote it (None stays None)."""
    return None if obj is None else plain_track(None, obj, manager=manager, now=now)


@pytest.mark.parametrize(("old", "new"), CASES)
@pytest.mark.parametrize("manager", ["creator", "other"])
def test_same_result_as_the_plain_algorithm(old: dict[str, Any] | None, new: dict[str, Any],
                                            manager: str) -> None:
    stored = _managed(old, "creator", NOW)
    want = plain_track(stored, new, manager=manager, now=LATER)
    new_before, stored_before = copy.deepcopy(new), copy.deepcopy(stored)
    got = track_update(stored, new, manager=manager, now=LATER)
    assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True)
    # inputs are left as they were (the result shares all but metadata with NEW)
    assert json.dumps(new, sort_keys=True) == json.dumps(new_before, sort_keys=True)
    assert json.dumps(stored, sort_keys=True) == json.dumps(stored_before, sort_keys=True)
    assert got["metadata"] is not new.get("metadata")


def test_an_unchanged_write_keeps_the_entry_times() -> None:
    stored = _managed(BASE, "creator", NOW)
    assert stored is not None
    got = track_update(stored, copy.deepcopy(stored), manager="other", now=LATER)
    assert got["metadata"]["managedFields"] == stored["metadata"]["managedFields"]
    assert {m["time"] for m in got["metadata"]["managedFields"]} == {NOW}


def test_a_status_write_is_owned_by_its_writer_only_for_the_status() -> None:
    stored = _managed(BASE, "creator", NOW)
    got = track_update(stored, with_status(BASE, {"phase": "Running"}), manager="agent",
                       now=LATER)
    entries = {m["manager"]: m["fieldsV1"] for m in got["metadata"]["managedFields"]}
    assert entries["agent"] == {"f:status": {".": {}, "f:phase": {}}} or \
        entries["agent"] == {"f:status": {"f:phase": {}}}
    assert "f:spec" in entries["creator"] and "f:status" not in entries["creator"]


@pytest.mark.parametrize(("obj", "exact"), [
    pytest.param(BASE, True, id="plain"),
    pytest.param(pod([WEB, WEB]), False, id="duplicate-key"),
    pytest.param(pod([{**WEB, "ports": [{"containerPort": 8.0}]}]), False, id="float-key"),
    pytest.param({**BASE, "metadata": {"finalizers": [0.5]}}, False, id="float-in-a-set"),
])
def test_walked_paths_are_found_where_exact(obj: dict[str, Any], exact: bool) -> None:
    nodes = Nodes()
    fields = walk_fields(obj, nodes)
    assert fields == fields_of(obj)
    assert nodes.exact is exact
    assert fields.paths <= nodes.paths
    # what _existing and changed_fields may take as found without a look-up
    assert Nodes.known(nodes) == (nodes.paths if exact else frozenset())
    assert Nodes.known(None) == frozenset()
    if exact:
        assert all(value_at(obj, p) is not MISSING for p in nodes.paths)


# -- random objects and edits ----------------------------------------------------------

_scalars = st.one_of(st.sampled_from(["a", "b", ""]), st.integers(-2, 2), st.booleans(),
                     st.sampled_from([1.0, 2.5]), st.none())
_names = st.sampled_from(["a", "b", "c"])
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(_names, inner, max_size=3)), max_leaves=8)
_container = st.fixed_dictionaries(
    {"name": st.sampled_from(["web", "side", 1, 2.0])},
    optional={"image": _values,
              "ports": st.lists(st.fixed_dictionaries(
                  {"containerPort": st.sampled_from([80, 80.0, 443, True])},
                  optional={"name": _values}), max_size=2)})
_pods = st.builds(
    lambda containers, labels, fins, status, extra: {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "labels": labels, "finalizers": fins},
        "spec": {"containers": containers, **extra}, "status": status},
    st.lists(_container, max_size=3), st.dictionaries(_names, _scalars, max_size=2),
    st.lists(st.sampled_from(["x", "y", 1, 1.0, True]), max_size=3),
    st.dictionaries(_names, _values, max_size=3), st.dictionaries(_names, _values,
                                                                  max_size=2))


@settings(max_examples=300, deadline=None)
@given(first=_pods, second=_pods, third=_pods, share=st.booleans())
def test_random_writes_agree_with_the_plain_algorithm(
        first: dict[str, Any], second: dict[str, Any], third: dict[str, Any],
        share: bool) -> None:
    if share:  # an edit of the status only: the rest as it was
        second = {**first, "status": second["status"]}
    try:
        stored = plain_track(None, first, manager="one", now=NOW)
    except ssa.FieldSetError:
        with pytest.raises(ssa.FieldSetError):
            track_update(None, first, manager="one", now=NOW)
        return
    assert track_update(None, first, manager="one", now=NOW) == stored
    for manager, new in (("two", second), ("one", third)):
        try:
            want = plain_track(stored, new, manager=manager, now=LATER)
        except ssa.FieldSetError:
            with pytest.raises(ssa.FieldSetError):
                track_update(stored, new, manager=manager, now=LATER)
            return
        got = track_update(stored, new, manager=manager, now=LATER)
        assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True)
        stored = got


# -- the equal-value shortcuts: same_json, kept walks, kept FieldsV1 ----------------------

_NAN, _INF = float("nan"), float("inf")
_SHARED_NAN = {"x": [_NAN]}


class _Str(str):
    pass


@pytest.mark.parametrize(("a", "b"), [
    pytest.param({"a": 1, "b": [1, 2]}, {"a": 1, "b": [1, 2]}, id="equal"),
    pytest.param({"a": 1, "b": 2}, {"b": 2, "a": 1}, id="key-order"),
    pytest.param({"a": 1}, {"a": 1.0}, id="int-float"),
    pytest.param({"a": True}, {"a": 1}, id="true-one"),
    pytest.param([False], [0.0], id="false-zero"),
    pytest.param(_SHARED_NAN, _SHARED_NAN, id="one-nan-object-both-sides"),
    pytest.param({"x": [_NAN]}, {"x": [float("nan")]}, id="two-nans"),
    pytest.param([None], [_NAN], id="null-nan"),
    pytest.param([_INF], [_INF], id="infinity"),
    pytest.param([None, "null"], [None, "null"], id="null-itself"),
    pytest.param((1,), [1], id="tuple-list"),
    pytest.param({"s": _Str("a")}, {"s": "a"}, id="str-subclass"),
    pytest.param({"n": 2 ** 70}, {"n": 2 ** 70}, id="big-int"),
    pytest.param({"a": 0.0}, {"a": -0.0}, id="signed-zero"),
])
def test_same_json_is_json_equal(a: Any, b: Any) -> None:
    from controlplane.apiserver.patch import same_json
    assert same_json(a, b) is json_equal(a, b)
    assert same_json(b, a) is json_equal(b, a)


_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2, 2), st.sampled_from(
        [0.0, -0.0, 1.0, _NAN, _INF]), st.sampled_from(["a", "null", ""])),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(["a", "b"]), inner, max_size=2)),
    max_leaves=6)


@settings(max_examples=300, deadline=None)
@given(a=_json, b=_json)
def test_same_json_agrees_with_json_equal_on_random_values(a: Any, b: Any) -> None:
    from controlplane.apiserver.patch import same_json
    assert same_json(a, b) is json_equal(a, b)
    assert same_json(a, a) is json_equal(a, a)


@pytest.mark.parametrize("specs", [
    pytest.param([{"flag": True}, {"flag": 1}, {"flag": 1.0}], id="true-one-float"),
    pytest.param([{"containers": [WEB, WEB]}, {"containers": [WEB, {**WEB, "name": "b"}]}],
                 id="duplicate-keys-then-not"),
    pytest.param([{"containers": [{**WEB, "ports": [{"containerPort": 8.0}]}]},
                  {"containers": [{**WEB, "ports": [{"containerPort": 8}]}]}],
                 id="float-key-then-int"),
    pytest.param([{"x": [_NAN]}, {"x": [None]}, {"x": (1,)}, {"x": [1]}],
                 id="nan-null-tuple-list"),
])
def test_kept_walks_are_the_walks(specs: list[Any]) -> None:
    """A value walked before (an unchanged spec) is not walked again: what is kept is
    exactly what a walk gives, for values Python's == cannot tell apart too."""
    for spec in specs * 2:
        obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}
        fresh, kept = Nodes(), Nodes()
        assert walk_fields(obj, kept, unchanged={"spec"}) == walk_fields(obj, fresh)
        assert (kept.paths, kept.exact) == (fresh.paths, fresh.exact)


def test_set_operations_that_change_nothing_give_the_set_and_its_kept_fields_v1() -> None:
    a = FieldSet([("f:spec", "f:x"), ("f:spec", "f:y")])
    b = FieldSet([("f:status", "f:phase")])
    assert a - b is a and a | FieldSet([("f:spec", "f:x")]) is a and a & a is a
    assert a - FieldSet() is a
    assert (a | b) is not a and (a - a) == FieldSet()
    tree = a.to_fields_v1()
    tree["f:spec"]["f:z"] = {}  # the caller's own tree: the set keeps its form
    assert a.to_fields_v1() == {"f:spec": {"f:x": {}, "f:y": {}}}
    parsed = FieldSet.from_fields_v1({"f:spec": {"f:x": {}, "f:y": {}}})
    assert parsed == a
    assert FieldSet.from_fields_v1({"f:spec": {"f:x": {}, "f:y": {}}}) is parsed  # kept
    with pytest.raises(ssa.FieldSetError):
        FieldSet.from_fields_v1({"f:spec": {"x": {}}})
