"""Node status.capacity / status.allocatable: nonsense is rejected with the field named, as
Kubernetes' ValidateNodeResources rejects it; what Kubernetes accepts is accepted."""

from __future__ import annotations

from typing import Any

import pytest

from api import kinds
from api.core import integer_resource


def node(capacity: dict[str, Any], allocatable: dict[str, Any] | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"capacity": capacity}
    if allocatable is not None:
        status["allocatable"] = allocatable
    obj: dict[str, Any] = kinds.defaults({"apiVersion": "v1", "kind": "Node",
                                          "metadata": {"name": "n1"}, "status": status})
    return obj


GOOD = {"cpu": "4", "memory": "8Gi", "pods": "110"}


@pytest.mark.parametrize(("capacity", "allocatable", "message"), [
    pytest.param({**GOOD, "cpu": "-1"}, None,
                 "Node n1: status.capacity['cpu']: must be a non-negative quantity, got '-1'",
                 id="negative-cpu"),
    pytest.param(GOOD, {**GOOD, "memory": "-1Gi"},
                 "Node n1: status.allocatable['memory']: must be a non-negative quantity, "
                 "got '-1Gi'", id="negative-allocatable-memory"),
    pytest.param({**GOOD, "memory": "lots"}, None,
                 "Node n1: status.capacity['memory']: must be a quantity like 500m or 1Gi, "
                 "got 'lots'", id="memory-not-a-quantity"),
    pytest.param({**GOOD, "cpu": "4 cores"}, None,
                 "Node n1: status.capacity['cpu']: must be a quantity like 500m or 1Gi, "
                 "got '4 cores'", id="cpu-with-words"),
    pytest.param({**GOOD, "cpu": True}, None,
                 "Node n1: status.capacity['cpu']: must be a quantity, got boolean True",
                 id="cpu-boolean"),
    pytest.param({**GOOD, "pods": "1.5"}, None,
                 "Node n1: status.capacity['pods']: must be an integer, got '1.5'",
                 id="pods-fraction"),
    pytest.param({**GOOD, "pods": "500m"}, None,
                 "Node n1: status.capacity['pods']: must be an integer, got '500m'",
                 id="pods-milli"),
    pytest.param(GOOD, {**GOOD, "pods": 2.5},
                 "Node n1: status.allocatable['pods']: must be an integer, got 2.5",
                 id="allocatable-pods-float"),
    pytest.param({**GOOD, "example.com/gpu": "0.5"}, None,
                 "Node n1: status.capacity['example.com/gpu']: must be an integer, got '0.5'",
                 id="extended-resource-fraction"),
    pytest.param("64 cpus", None,
                 "Node n1: status.capacity: must be a map, got string '64 cpus'",
                 id="capacity-not-a-map"),
])
def test_nonsense_capacity_is_rejected_naming_the_field(
        capacity: Any, allocatable: dict[str, Any] | None, message: str) -> None:
    with pytest.raises(kinds.Invalid) as info:
        kinds.validate(node(capacity, allocatable))
    assert str(info.value) == message
    assert info.value.kind == "Node" and info.value.name == "n1"


@pytest.mark.parametrize(("capacity", "allocatable"), [
    pytest.param(GOOD, GOOD, id="plain"),
    pytest.param({"cpu": 2, "memory": 4123456789, "pods": 110}, None, id="yaml-numbers"),
    pytest.param({"cpu": "1900m", "memory": "3.5Gi", "pods": "1k"}, None,
                 id="fractional-cpu-and-memory-whole-pods"),
    pytest.param({"cpu": "0", "memory": "0", "pods": "0"}, None, id="zero"),
    pytest.param({**GOOD, "example.com/gpu": "4", "hugepages-2Mi": "0.5Gi"}, None,
                 id="extended-and-hugepages"),
    pytest.param({**GOOD, "kubernetes.io/batch-cpu": "1500m"}, None,
                 id="native-prefixed-may-be-fractional"),
    # Kubernetes' ValidateNode does not compare allocatable with capacity (the kubelet
    # computes allocatable); corral follows it.
    pytest.param(GOOD, {"cpu": "64", "memory": "1Ti", "pods": "1000"},
                 id="allocatable-above-capacity"),
])
def test_sensible_capacity_is_accepted(capacity: dict[str, Any],
                                       allocatable: dict[str, Any] | None) -> None:
    assert kinds.validate(node(capacity, allocatable)).kind == "Node"


@pytest.mark.parametrize(("name", "integer"), [
    pytest.param("pods", True, id="pods"),
    pytest.param("cpu", False, id="cpu"),
    pytest.param("memory", False, id="memory"),
    pytest.param("hugepages-1Gi", False, id="hugepages"),
    pytest.param("example.com/gpu", True, id="extended"),
    pytest.param("nvidia.com/gpu", True, id="extended-vendor"),
    pytest.param("kubernetes.io/something", False, id="native-prefixed"),
    pytest.param("node.kubernetes.io/something", False, id="native-subdomain"),
    pytest.param("requests.example.com/gpu", False, id="quota-requests-prefix"),
])
def test_integer_resources_follow_kubernetes(name: str, integer: bool) -> None:
    assert integer_resource(name) is integer


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(kinds.Invalid) as info:
        kinds.validate(node({"cpu": "-2", "memory": "x"}, {"cpu": "-1"}))
    paths = sorted(err.path for err in info.value.errors)
    assert paths == ["status.allocatable['cpu']", "status.capacity['cpu']",
                     "status.capacity['memory']"]
