"""Object validation: the kind, the name and every bad field in one message."""

from __future__ import annotations

import pytest

from api import kinds


def cm(**over: object) -> dict[str, object]:
    obj: dict[str, object] = {"apiVersion": "v1", "kind": "ConfigMap",
                              "metadata": {"name": "app", "namespace": "default"},
                              "data": {"k": "v"}}
    obj.update(over)
    return obj


def test_valid_objects() -> None:
    assert kinds.validate(cm()).resource == "configmaps"
    ns = kinds.validate({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod"}})
    assert ns.namespaced is False


@pytest.mark.parametrize("obj,message", [
    pytest.param(cm(metadata={"name": "App_1"}),
                 "ConfigMap App_1: metadata.name: 'App_1' is not a lowercase RFC 1123 "
                 "subdomain", id="bad-name"),
    pytest.param(cm(data={"k": 1}, immutable="yes"),
                 "ConfigMap app: data['k']: must be a string, got integer 1; immutable: "
                 "must be a boolean, got string 'yes'", id="every-error"),
    pytest.param(cm(metadata={"name": "app", "labels": {"tier": "we b"}}),
                 "ConfigMap app: metadata.labels: invalid label value 'we b'", id="label"),
    pytest.param(cm(metadata={}), "ConfigMap: metadata.name: is required", id="no-name"),
    pytest.param(cm(spec={}), "ConfigMap app: spec: unknown field", id="unknown-field"),
    pytest.param(cm(kind="Widget"), "Widget app: kind: no kind 'Widget' in 'v1'",
                 id="unknown-kind"),
    pytest.param({"apiVersion": "v1", "kind": "Namespace",
                  "metadata": {"name": "a", "namespace": "b"}},
                 "Namespace a: metadata.namespace: Namespace is cluster-scoped",
                 id="cluster-scoped"),
    pytest.param({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a.b"}},
                 "Namespace a.b: metadata.name: 'a.b' is not a lowercase RFC 1123 label",
                 id="namespace-name-is-a-label"),
])
def test_invalid_objects(obj: dict[str, object], message: str) -> None:
    with pytest.raises(kinds.Invalid) as e:
        kinds.validate(obj)
    assert str(e.value).startswith(message), str(e.value)
