"""The schema nodes: every error at once with its path, defaults, explain."""

from __future__ import annotations

import pytest

from api import schema as s

CONTAINER = s.Obj({
    "name": s.string("Name of the container.", checks=(
        lambda v: None if v.islower() else "must be lower case",)),
    "image": s.string("Image to run."),
    "imagePullPolicy": s.string(enum=("Always", "IfNotPresent", "Never")),
    "ports": s.List(s.Obj({"containerPort": s.integer(minimum=1, maximum=65535),
                           "protocol": s.string(default="TCP", enum=("TCP", "UDP"))},
                          required=("containerPort",))),
}, required=("name", "image"), doc="A container of a pod.")

SPEC = s.Obj({
    "replicas": s.integer("Desired number of pods.", default=1, minimum=0),
    "paused": s.boolean(),
    "maxSurge": s.int_or_string(default="25%"),
    "labels": s.Map(s.string()),
    "containers": s.List(CONTAINER, doc="The containers."),
}, doc="The desired state.")


def errors_of(value: object) -> list[str]:
    errs: s.Errors = []
    SPEC.validate(value, "spec", errs)
    return [str(e) for e in errs]


def test_valid_object_has_no_errors() -> None:
    assert errors_of({"replicas": 3, "containers": [{"name": "web", "image": "busybox",
                                                      "ports": [{"containerPort": 80}]}]}) == []


@pytest.mark.parametrize("value,expected", [
    pytest.param({"replicas": -1}, ["spec.replicas: must be >= 0, got -1"], id="minimum"),
    pytest.param({"replicas": "3"}, ["spec.replicas: must be an integer, got string '3'"],
                 id="type"),
    pytest.param({"replicas": True}, ["spec.replicas: must be an integer, got boolean True"],
                 id="bool-is-not-int"),
    pytest.param({"replcas": 3}, ["spec.replcas: unknown field (did you mean 'replicas'?)"],
                 id="typo"),
    pytest.param({"labels": {"a": 1}}, ["spec.labels['a']: must be a string, got integer 1"],
                 id="map-value"),
    pytest.param({"containers": [{"name": "Web"}]},
                 ["spec.containers[0].image: is required",
                  "spec.containers[0].name: must be lower case"], id="all-errors-at-once"),
    pytest.param({"containers": [{"name": "a", "image": "b", "imagePullPolicy": "Sometimes",
                                  "ports": [{"containerPort": 70000}]}]},
                 ["spec.containers[0].imagePullPolicy: must be one of Always, IfNotPresent, "
                  "Never; got 'Sometimes'",
                  "spec.containers[0].ports[0].containerPort: must be <= 65535, got 70000"],
                 id="nested"),
    pytest.param([], ["spec: must be an object, got list"], id="not-an-object"),
])
def test_errors_name_their_field(value: object, expected: list[str]) -> None:
    assert errors_of(value) == expected


def test_defaults_fill_missing_fields_without_touching_the_input() -> None:
    given = {"containers": [{"name": "a", "image": "b", "ports": [{"containerPort": 80}]}]}
    out = SPEC.with_defaults(given)
    assert out["replicas"] == 1 and out["maxSurge"] == "25%"
    assert out["containers"][0]["ports"][0]["protocol"] == "TCP"
    assert "replicas" not in given and "protocol" not in given["containers"][0]["ports"][0]
    assert SPEC.with_defaults({"replicas": 0})["replicas"] == 0  # an explicit 0 stays


def test_explain() -> None:
    text = s.explain(SPEC, "spec")
    assert "FIELD: spec <an object>" in text and "The desired state." in text
    assert "  containers\t<a list>" in text and "    The containers." in text
    path, node = SPEC.describe("containers.ports")
    assert isinstance(node, s.List)
    assert "containerPort\t<an integer> -required-" in s.explain(node, path)
    with pytest.raises(KeyError, match="did you mean 'image'"):
        SPEC.describe("containers.imag")
