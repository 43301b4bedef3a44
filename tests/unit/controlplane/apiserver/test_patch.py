"""The PATCH verb's three patch types: RFC 7386, RFC 6902 and Kubernetes' strategic merge
patch, with their own examples, every directive, and their errors."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.apiserver.patch import (
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    PatchError,
    apply_patch,
    json_equal,
    json_merge_patch,
    json_patch,
    merge_patch_diff,
    merge_patch_value,
    strategic_merge_patch,
)

# ---- RFC 7386 --------------------------------------------------------------------------

RFC7386_EXAMPLE_TARGET = {
    "title": "Goodbye!",
    "author": {"givenName": "John", "familyName": "Doe"},
    "tags": ["example", "sample"],
    "content": "This will be unchanged",
}
RFC7386_EXAMPLE_PATCH = {
    "title": "Hello!",
    "phoneNumber": "+01-123-456-7890",
    "author": {"familyName": None},
    "tags": ["example"],
}
RFC7386_EXAMPLE_RESULT = {
    "title": "Hello!",
    "author": {"givenName": "John"},
    "tags": ["example"],
    "content": "This will be unchanged",
    "phoneNumber": "+01-123-456-7890",
}


@pytest.mark.parametrize(("target", "patch", "want"), [
    pytest.param(RFC7386_EXAMPLE_TARGET, RFC7386_EXAMPLE_PATCH, RFC7386_EXAMPLE_RESULT,
                 id="section-3-example"),
    pytest.param({"a": "b"}, {"a": "c"}, {"a": "c"}, id="A1-replace-member"),
    pytest.param({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}, id="A2-add-member"),
    pytest.param({"a": "b"}, {"a": None}, {}, id="A3-null-deletes"),
    pytest.param({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}, id="A4-delete-one"),
    pytest.param({"a": ["b"]}, {"a": "c"}, {"a": "c"}, id="A5-list-to-scalar"),
    pytest.param({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}, id="A6-scalar-to-list"),
    pytest.param({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}},
                 id="A7-nested"),
    pytest.param({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}, id="A8-lists-replace"),
    pytest.param(["a", "b"], ["c", "d"], ["c", "d"], id="A9-array-target"),
    pytest.param({"a": "b"}, ["c"], ["c"], id="A10-array-patch"),
    pytest.param({"a": "foo"}, None, None, id="A11-null-patch"),
    pytest.param({"a": "foo"}, "bar", "bar", id="A12-string-patch"),
    pytest.param({"e": None}, {"a": 1}, {"e": None, "a": 1}, id="A13-null-in-target-kept"),
    pytest.param([1, 2], {"a": "b", "c": None}, {"a": "b"}, id="A14-array-to-object"),
    pytest.param({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}, id="A15-deep-null"),
])
def test_rfc7386_examples(target: Any, patch: Any, want: Any) -> None:
    before = copy.deepcopy(target)
    assert merge_patch_value(target, patch) == want
    assert target == before


def test_json_merge_patch_on_an_object() -> None:
    pod = {"kind": "Pod", "metadata": {"name": "p", "labels": {"a": "1", "b": "2"}},
           "spec": {"containers": [{"name": "c", "image": "x"}]}}
    out = json_merge_patch(pod, {"metadata": {"labels": {"a": None, "c": "3"}},
                                 "spec": {"containers": [{"name": "d", "image": "y"}]}})
    assert out == {"kind": "Pod", "metadata": {"name": "p", "labels": {"b": "2", "c": "3"}},
                   "spec": {"containers": [{"name": "d", "image": "y"}]}}
    assert out["metadata"] is not pod["metadata"]


@pytest.mark.parametrize("patch", [
    pytest.param([1], id="list"), pytest.param("x", id="string"),
    pytest.param(None, id="null"),
])
def test_json_merge_patch_needs_an_object(patch: Any) -> None:
    with pytest.raises(PatchError, match="merge patch must be a JSON object"):
        json_merge_patch({"a": 1}, patch)


# ---- RFC 6902 --------------------------------------------------------------------------

@pytest.mark.parametrize(("doc", "ops", "want"), [
    pytest.param({"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}],
                 {"baz": "qux", "foo": "bar"}, id="A1-add-member"),
    pytest.param({"foo": ["bar", "baz"]}, [{"op": "add", "path": "/foo/1", "value": "qux"}],
                 {"foo": ["bar", "qux", "baz"]}, id="A2-add-array-element"),
    pytest.param({"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}],
                 {"foo": "bar"}, id="A3-remove-member"),
    pytest.param({"foo": ["bar", "qux", "baz"]}, [{"op": "remove", "path": "/foo/1"}],
                 {"foo": ["bar", "baz"]}, id="A4-remove-array-element"),
    pytest.param({"baz": "qux", "foo": "bar"},
                 [{"op": "replace", "path": "/baz", "value": "boo"}],
                 {"baz": "boo", "foo": "bar"}, id="A5-replace"),
    pytest.param({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
                 [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
                 {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}},
                 id="A6-move-value"),
    pytest.param({"foo": ["all", "grass", "cows", "eat"]},
                 [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
                 {"foo": ["all", "cows", "eat", "grass"]}, id="A7-move-array-element"),
    pytest.param({"baz": "qux", "foo": ["a", 2, "c"]},
                 [{"op": "test", "path": "/baz", "value": "qux"},
                  {"op": "test", "path": "/foo/1", "value": 2}],
                 {"baz": "qux", "foo": ["a", 2, "c"]}, id="A8-test-success"),
    pytest.param({"foo": "bar"},
                 [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
                 {"foo": "bar", "child": {"grandchild": {}}}, id="A10-add-nested"),
    pytest.param({"foo": "bar"},
                 [{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}],
                 {"foo": "bar", "baz": "qux"}, id="A11-unknown-members-ignored"),
    pytest.param({"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": 10}],
                 {"/": 9, "~1": 10}, id="A14-escape-order"),
    pytest.param({"foo": ["bar"]},
                 [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
                 {"foo": ["bar", ["abc", "def"]]}, id="A16-add-array-value"),
    pytest.param({"a/b": 1, "m~n": 2}, [{"op": "replace", "path": "/a~1b", "value": 3},
                                         {"op": "remove", "path": "/m~0n"}],
                 {"a/b": 3}, id="escapes-slash-and-tilde"),
    pytest.param({"spec": {"containers": [{"name": "a"}]}},
                 [{"op": "copy", "from": "/spec/containers/0", "path": "/spec/containers/-"},
                  {"op": "replace", "path": "/spec/containers/1/name", "value": "b"}],
                 {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}},
                 id="copy-then-change-the-copy"),
    pytest.param({"a": 1}, [{"op": "replace", "path": "", "value": {"b": 2}}], {"b": 2},
                 id="replace-root"),
    pytest.param({"a": [1]}, [{"op": "add", "path": "/a/1", "value": 2}], {"a": [1, 2]},
                 id="add-at-end-index"),
    pytest.param({"a": {"b": 1}}, [{"op": "move", "from": "/a", "path": "/a"}],
                 {"a": {"b": 1}}, id="move-to-itself"),
    pytest.param({"a": 1}, [], {"a": 1}, id="no-ops"),
])
def test_rfc6902(doc: dict[str, Any], ops: list[Any], want: dict[str, Any]) -> None:
    before = copy.deepcopy(doc)
    assert json_patch(doc, ops) == want
    assert doc == before


@pytest.mark.parametrize(("doc", "ops", "error"), [
    pytest.param({"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}],
                 r"json patch op 0 \(test /baz\): test failed", id="A9-test-fails"),
    pytest.param({"foo": "bar"}, [{"op": "add", "path": "/baz/bat", "value": "qux"}],
                 r"json patch op 0 \(add /baz/bat\): path not found",
                 id="A12-add-to-missing-parent"),
    pytest.param({"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": "10"}],
                 "test failed", id="A15-string-is-not-number"),
    pytest.param({"spec": {}}, [{"op": "test", "path": "/spec", "value": {}},
                                {"op": "test", "path": "/spec", "value": {}},
                                {"op": "replace", "path": "/spec/replicas", "value": 3}],
                 r"^json patch op 2 \(replace /spec/replicas\): path not found$",
                 id="replace-missing-names-op-and-path"),
    pytest.param({"a": True}, [{"op": "test", "path": "/a", "value": 1}], "test failed",
                 id="true-is-not-1"),
    pytest.param({"a": [1]}, [{"op": "remove", "path": "/a/1"}], "out of range",
                 id="remove-past-end"),
    pytest.param({"a": [1, 2]}, [{"op": "remove", "path": "/a/01"}], "not an array index",
                 id="leading-zero-index"),
    pytest.param({"a": [1]}, [{"op": "add", "path": "/a/-1", "value": 0}],
                 "not an array index", id="negative-index"),
    pytest.param({"a": {"b": {}}}, [{"op": "move", "from": "/a", "path": "/a/b/c"}],
                 "into one of its children", id="move-into-child"),
    pytest.param({"a": 1}, [{"op": "remove", "path": "/b"}], "path not found",
                 id="remove-missing"),
    pytest.param({"a": 1}, [{"op": "frob", "path": "/a"}], "op must be one of",
                 id="unknown-op"),
    pytest.param({"a": 1}, [{"op": "add", "path": "/b"}], "value is required",
                 id="add-without-value"),
    pytest.param({"a": 1}, [{"op": "copy", "path": "/b"}], "from must be a string",
                 id="copy-without-from"),
    pytest.param({"a": 1}, [{"op": "add", "path": "a", "value": 1}], "must be empty or start",
                 id="pointer-without-slash"),
    pytest.param({"a~x": 1}, [{"op": "remove", "path": "/a~x"}], "'~' not followed",
                 id="bad-escape"),
    pytest.param({"a": 1}, [{"op": "replace", "path": "", "value": [1]}],
                 "result must be a JSON object", id="root-becomes-list"),
    pytest.param({"a": 1}, {"op": "remove", "path": "/a"}, "must be a JSON array",
                 id="ops-not-a-list"),
    pytest.param({"a": 1}, ["remove"], "json patch op 0: must be an object",
                 id="op-not-an-object"),
])
def test_rfc6902_errors(doc: dict[str, Any], ops: Any, error: str) -> None:
    before = copy.deepcopy(doc)
    with pytest.raises(PatchError, match=error):
        json_patch(doc, ops)
    assert doc == before


def test_json_patch_is_all_or_nothing() -> None:
    doc = {"a": 1}
    with pytest.raises(PatchError):
        json_patch(doc, [{"op": "replace", "path": "/a", "value": 2},
                         {"op": "remove", "path": "/missing"}])
    assert doc == {"a": 1}


# ---- strategic merge patch -------------------------------------------------------------

def _deployment(containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "finalizers": ["a.io/x", "a.io/y"]},
            "spec": {**spec, "template": {"spec": {"containers": containers}}}}


WEB = {"name": "web", "image": "nginx:1", "args": ["-a", "-b"],
       "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
       "ports": [{"containerPort": 80, "name": "http"}],
       "volumeMounts": [{"mountPath": "/data", "name": "data"}]}
SIDE = {"name": "side", "image": "busybox"}
BASE = _deployment([WEB, SIDE], replicas=2,
                   strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}})


def _containers(patch: list[Any], **extra: Any) -> dict[str, Any]:
    return {"spec": {"template": {"spec": {"containers": patch, **extra}}}}


def _merged(patch: dict[str, Any]) -> dict[str, Any]:
    return strategic_merge_patch(BASE, patch, kind="Deployment")


def _names(obj: dict[str, Any]) -> list[str]:
    return [c["name"] for c in obj["spec"]["template"]["spec"]["containers"]]


def _web(obj: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in obj["spec"]["template"]["spec"]["containers"]
                if c["name"] == "web")


@pytest.mark.parametrize(("patch", "check"), [
    pytest.param({"spec": {"replicas": 5}},
                 lambda o: o["spec"]["replicas"] == 5 and _names(o) == ["web", "side"],
                 id="scalar-replaced-rest-kept"),
    pytest.param({"spec": {"replicas": None}}, lambda o: "replicas" not in o["spec"],
                 id="null-deletes"),
    pytest.param(_containers([{"name": "web", "image": "nginx:2"}]),
                 lambda o: _web(o)["image"] == "nginx:2" and _web(o)["args"] == ["-a", "-b"]
                 and _names(o) == ["web", "side"], id="containers-merge-by-name"),
    pytest.param(_containers([{"name": "new", "image": "x"}]),
                 lambda o: _names(o) == ["web", "side", "new"], id="new-item-appended"),
    pytest.param(_containers([{"name": "side", "$patch": "delete"}]),
                 lambda o: _names(o) == ["web"], id="item-patch-delete"),
    pytest.param(_containers([{"$patch": "replace"}, {"name": "only", "image": "x"}]),
                 lambda o: o["spec"]["template"]["spec"]["containers"]
                 == [{"name": "only", "image": "x"}], id="list-patch-replace"),
    pytest.param(_containers([{"name": "web", "image": "n:3", "$patch": "replace"}]),
                 lambda o: _web(o) == {"name": "web", "image": "n:3"}
                 and _names(o) == ["web", "side"], id="item-patch-replace"),
    pytest.param(_containers([{"name": "web", "args": ["-c"]}]),
                 lambda o: _web(o)["args"] == ["-c"], id="unkeyed-list-replaced"),
    pytest.param(_containers([{"name": "web", "env": [{"name": "B", "value": "3"},
                                                      {"name": "C", "value": "4"}]}]),
                 lambda o: _web(o)["env"] == [{"name": "A", "value": "1"},
                                              {"name": "B", "value": "3"},
                                              {"name": "C", "value": "4"}],
                 id="env-merge-by-name"),
    pytest.param(_containers([{"name": "web", "env": [{"name": "A", "$patch": "delete"}]}]),
                 lambda o: _web(o)["env"] == [{"name": "B", "value": "2"}],
                 id="env-item-delete"),
    pytest.param(_containers([{"name": "web", "ports": [{"containerPort": 80,
                                                          "protocol": "TCP"}]}]),
                 lambda o: _web(o)["ports"] == [{"containerPort": 80, "name": "http",
                                                 "protocol": "TCP"}],
                 id="container-ports-by-containerPort"),
    pytest.param(_containers([{"name": "web", "volumeMounts": [
        {"mountPath": "/data", "readOnly": True}, {"mountPath": "/x", "name": "x"}]}]),
                 lambda o: _web(o)["volumeMounts"] == [
                     {"mountPath": "/data", "name": "data", "readOnly": True},
                     {"mountPath": "/x", "name": "x"}], id="volumeMounts-by-mountPath"),
    pytest.param({"spec": {"strategy": {"$patch": "delete"}}},
                 lambda o: "strategy" not in o["spec"], id="map-patch-delete"),
    pytest.param({"spec": {"strategy": {"$patch": "replace", "type": "Recreate"}}},
                 lambda o: o["spec"]["strategy"] == {"type": "Recreate"},
                 id="map-patch-replace"),
    pytest.param({"spec": {"strategy": {"$patch": "merge", "type": "Recreate"}}},
                 lambda o: o["spec"]["strategy"] == {"type": "Recreate",
                                                     "rollingUpdate": {"maxSurge": 1}},
                 id="map-patch-merge"),
    pytest.param({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}},
                 lambda o: o["spec"]["strategy"] == {"type": "Recreate"}, id="retainKeys"),
    pytest.param({"metadata": {"finalizers": ["a.io/y", "a.io/z"]}},
                 lambda o: o["metadata"]["finalizers"] == ["a.io/x", "a.io/y", "a.io/z"],
                 id="finalizers-merge-as-set"),
    pytest.param({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a.io/x"]}},
                 lambda o: o["metadata"]["finalizers"] == ["a.io/y"],
                 id="deleteFromPrimitiveList"),
    pytest.param({"metadata": {"$setElementOrder/finalizers": ["a.io/z", "a.io/y", "a.io/x"],
                               "finalizers": ["a.io/z"]}},
                 lambda o: o["metadata"] == {"name": "web",
                                             "finalizers": ["a.io/z", "a.io/y", "a.io/x"]},
                 id="setElementOrder-primitive"),
    pytest.param(_containers([{"name": "web", "image": "n:4"}]) | {
        "spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "side"}, {"name": "web"}],
            "containers": [{"name": "web", "image": "n:4"}]}}}},
                 lambda o: _names(o) == ["side", "web"] and _web(o)["image"] == "n:4"
                 and "$setElementOrder/containers" not in o["spec"]["template"]["spec"],
                 id="setElementOrder-keyed-not-stored"),
    pytest.param({"metadata": {"ownerReferences": [{"uid": "u1", "name": "a"}]}},
                 lambda o: o["metadata"]["ownerReferences"] == [{"uid": "u1", "name": "a"}],
                 id="ownerReferences-into-missing-list"),
    pytest.param({"spec": {"template": {"spec": {"volumes": [{"name": "data",
                                                              "emptyDir": {}}]}}}},
                 lambda o: o["spec"]["template"]["spec"]["volumes"]
                 == [{"name": "data", "emptyDir": {}}], id="volumes-by-name"),
    pytest.param({"spec": {"newmap": {"a": None, "b": {"$patch": "delete"}, "c": 1}}},
                 lambda o: o["spec"]["newmap"] == {"c": 1}, id="directives-in-new-map"),
])
def test_strategic_merge_patch(patch: dict[str, Any], check: Any) -> None:
    before = copy.deepcopy(BASE)
    patch_before = copy.deepcopy(patch)
    out = _merged(patch)
    assert check(out), json.dumps(out, indent=1)
    assert before == BASE and patch_before == patch
    assert "$" not in json.dumps(out)


@pytest.mark.parametrize(("kind", "target", "patch", "want"), [
    pytest.param("Service", {"spec": {"ports": [{"port": 80, "name": "http"},
                                                {"port": 443, "name": "https"}]}},
                 {"spec": {"ports": [{"port": 443, "targetPort": 8443}]}},
                 {"spec": {"ports": [{"port": 80, "name": "http"},
                                     {"port": 443, "name": "https", "targetPort": 8443}]}},
                 id="service-ports-by-port"),
    pytest.param("Pod", {"status": {"conditions": [{"type": "Ready", "status": "False"},
                                                   {"type": "Initialized", "status": "True"}]}},
                 {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
                 {"status": {"conditions": [{"type": "Ready", "status": "True"},
                                            {"type": "Initialized", "status": "True"}]}},
                 id="conditions-by-type"),
    pytest.param("Pod", {"spec": {"hostAliases": [{"ip": "1.2.3.4", "hostnames": ["a"]}],
                                  "tolerations": [{"key": "a"}]}},
                 {"spec": {"hostAliases": [{"ip": "1.2.3.5", "hostnames": ["b"]}],
                           "tolerations": [{"key": "b"}]}},
                 {"spec": {"hostAliases": [{"ip": "1.2.3.4", "hostnames": ["a"]},
                                           {"ip": "1.2.3.5", "hostnames": ["b"]}],
                           "tolerations": [{"key": "b"}]}},
                 id="hostAliases-by-ip-tolerations-replaced"),
    pytest.param("Pod", {"spec": {"imagePullSecrets": [{"name": "a"}],
                                  "topologySpreadConstraints": [{"topologyKey": "zone",
                                                                 "maxSkew": 1}]}},
                 {"spec": {"imagePullSecrets": [{"name": "b"}],
                           "topologySpreadConstraints": [{"topologyKey": "zone",
                                                          "maxSkew": 2}]}},
                 {"spec": {"imagePullSecrets": [{"name": "a"}, {"name": "b"}],
                           "topologySpreadConstraints": [{"topologyKey": "zone",
                                                          "maxSkew": 2}]}},
                 id="imagePullSecrets-and-topologySpread"),
    pytest.param("ConfigMap", {"data": {"a": "1", "b": "2"}},
                 {"data": {"$patch": "replace", "c": "3"}}, {"data": {"c": "3"}},
                 id="configmap-data-replace"),
])
def test_strategic_merge_patch_kinds(kind: str, target: dict[str, Any],
                                     patch: dict[str, Any], want: dict[str, Any]) -> None:
    assert strategic_merge_patch(target, patch, kind=kind) == want


@pytest.mark.parametrize(("kind", "patch", "error"), [
    pytest.param("Deployment", _containers([{"image": "x"}]),
                 r"spec\.template\.spec\.containers\[0\]: .*merge key 'name'",
                 id="item-without-merge-key"),
    pytest.param("Deployment", {"spec": {"$frob": 1}}, "spec: unknown directive '\\$frob'",
                 id="unknown-directive"),
    pytest.param("Deployment", {"spec": {"strategy": {"$patch": "squash"}}},
                 "spec.strategy: unknown \\$patch directive 'squash'", id="unknown-patch"),
    pytest.param("Deployment", {"spec": {"strategy": {"$retainKeys": ["type"],
                                                      "rollingUpdate": {}}}},
                 "does not list rollingUpdate", id="retainKeys-missing-a-patched-key"),
    pytest.param("Widget", {"spec": {}}, "not supported for kind 'Widget'",
                 id="unknown-kind"),
    pytest.param("Deployment", {"$patch": "delete"}, "cannot delete the object",
                 id="delete-root"),
    pytest.param("Deployment", {"metadata": {"finalizers": [{"a": 1}]}},
                 r"metadata\.finalizers\[0\]: finalizers is a list of scalars",
                 id="object-in-set-list"),
])
def test_strategic_merge_patch_errors(kind: str, patch: dict[str, Any], error: str) -> None:
    with pytest.raises(PatchError, match=error):
        strategic_merge_patch(BASE, patch, kind=kind)


def test_errors_name_the_item_by_key() -> None:
    patch = _containers([{"name": "web", "env": [{"value": "x"}]}])
    with pytest.raises(PatchError, match=r'containers\[name="web"\]\.env\[0\]'):
        strategic_merge_patch(BASE, patch, kind="Deployment")


# ---- apply_patch -----------------------------------------------------------------------

@pytest.mark.parametrize(("patch_type", "body", "replicas"), [
    pytest.param(JSON_PATCH, b'[{"op":"replace","path":"/spec/replicas","value":4}]', 4,
                 id="json"),
    pytest.param(MERGE_PATCH, b'{"spec":{"replicas":5}}', 5, id="merge"),
    pytest.param(STRATEGIC_MERGE_PATCH, b'{"spec":{"replicas":6}}', 6, id="strategic"),
    pytest.param(MERGE_PATCH + "; charset=utf-8", b'{"spec":{"replicas":7}}', 7,
                 id="with-parameter"),
])
def test_apply_patch_dispatches(patch_type: str, body: bytes, replicas: int) -> None:
    out = apply_patch(BASE, body, patch_type=patch_type, kind="Deployment")
    assert out["spec"]["replicas"] == replicas
    assert BASE["spec"]["replicas"] == 2


def test_merge_and_strategic_differ_on_lists() -> None:
    body = json.dumps(_containers([{"name": "web", "image": "n:9"}])).encode()
    merge = apply_patch(BASE, body, patch_type=MERGE_PATCH, kind="Deployment")
    strategic = apply_patch(BASE, body, patch_type=STRATEGIC_MERGE_PATCH, kind="Deployment")
    assert _names(merge) == ["web"] and _web(merge) == {"name": "web", "image": "n:9"}
    assert _names(strategic) == ["web", "side"] and _web(strategic)["args"] == ["-a", "-b"]


@pytest.mark.parametrize(("patch_type", "body", "error"), [
    pytest.param(MERGE_PATCH, b"{not json", "not valid JSON", id="bad-json"),
    pytest.param(MERGE_PATCH, b"\xff\xfe\x00", "not valid JSON", id="bad-utf8"),
    pytest.param("application/apply-patch+yaml", b"{}",
                 "unsupported patch type 'application/apply-patch\\+yaml'; supported: "
                 "application/json-patch\\+json, application/merge-patch\\+json, "
                 "application/strategic-merge-patch\\+json", id="unknown-type"),
    pytest.param(STRATEGIC_MERGE_PATCH, b"[]", "must be a JSON object", id="smp-list"),
    pytest.param(JSON_PATCH, b"{}", "must be a JSON array", id="json-patch-object"),
])
def test_apply_patch_errors(patch_type: str, body: bytes, error: str) -> None:
    with pytest.raises(PatchError, match=error):
        apply_patch(BASE, body, patch_type=patch_type, kind="Deployment")


@pytest.mark.parametrize(("a", "b", "equal"), [
    pytest.param(1, 1.0, True, id="int-float"), pytest.param(True, 1, False, id="bool-int"),
    pytest.param({"a": [1]}, {"a": [1]}, True, id="nested"),
    pytest.param({"a": 1}, {"a": 1, "b": 2}, False, id="extra-key"),
    pytest.param("1", 1, False, id="string-int"),
])
def test_json_equal(a: Any, b: Any, equal: bool) -> None:
    assert json_equal(a, b) is equal


# ---- properties ------------------------------------------------------------------------

_SCALARS = st.one_of(st.booleans(), st.integers(-5, 5), st.text(max_size=3))
_KEYS = st.sampled_from(["a", "b", "c", "d"])
_JSON = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(_KEYS, inner, max_size=3)), max_leaves=12)
_DICTS = st.dictionaries(_KEYS, _JSON, max_size=4)


@settings(max_examples=300, deadline=None)
@given(_DICTS, _DICTS)
def test_merge_patch_diff_round_trips(a: dict[str, Any], b: dict[str, Any]) -> None:
    a_before, b_before = copy.deepcopy(a), copy.deepcopy(b)
    diff = merge_patch_diff(a, b)
    diff_before = copy.deepcopy(diff)
    assert json_merge_patch(a, diff) == b
    assert (a, b, diff) == (a_before, b_before, diff_before)


_PATCH_JSON = st.recursive(st.one_of(_SCALARS, st.none()), lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(_KEYS, inner, max_size=3)), max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(_DICTS, st.dictionaries(_KEYS, _PATCH_JSON, max_size=4))
def test_patches_do_not_mutate_or_alias(target: dict[str, Any],
                                        patch: dict[str, Any]) -> None:
    t_before, p_before = copy.deepcopy(target), copy.deepcopy(patch)
    for out in (json_merge_patch(target, patch),
                strategic_merge_patch(target, patch, kind="ConfigMap")):
        assert (target, patch) == (t_before, p_before)
        json.dumps(out)  # a plain JSON value
        for value in out.values():  # mutating the result leaves the inputs alone
            if isinstance(value, dict):
                value["zz"] = 1
            elif isinstance(value, list):
                value.append("zz")
        assert (target, patch) == (t_before, p_before)
    ops = [{"op": "add", "path": f"/{k}", "value": v} for k, v in patch.items()]
    out = json_patch(target, ops)
    assert target == t_before and patch == p_before
    assert out == {**target, **patch}
