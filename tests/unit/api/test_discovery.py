"""v1 Endpoints: the manifest Kubernetes users write, its registration and its checks."""

from __future__ import annotations

from typing import Any

import pytest

from api import kinds
from controlplane.apiserver import resources


def endpoints(**subset: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "addresses": [{"ip": "10.1.0.5", "nodeName": "n1",
                       "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "default"}}],
        "notReadyAddresses": [{"ip": "fd00::7"}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}
    base.update(subset)
    return {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web"},
            "subsets": [base]}


def test_valid_endpoints() -> None:
    assert kinds.validate(endpoints()).resource == "endpoints"


def test_port_protocol_defaults_to_tcp() -> None:
    out = kinds.defaults(endpoints(ports=[{"port": 53}]))
    assert out["subsets"][0]["ports"] == [{"port": 53, "protocol": "TCP"}]


@pytest.mark.parametrize("subset,path", [
    pytest.param({"addresses": [{"ip": "10.1.0"}]}, "subsets[0].addresses[0].ip",
                 id="bad-ip"),
    pytest.param({"addresses": [{"nodeName": "n1"}]}, "subsets[0].addresses[0].ip",
                 id="ip-required"),
    pytest.param({"ports": [{"port": 70000}]}, "subsets[0].ports[0].port", id="port-range"),
    pytest.param({"ports": [{"port": 80, "protocol": "HTTP"}]},
                 "subsets[0].ports[0].protocol", id="protocol"),
    pytest.param({"adresses": []}, "subsets[0].adresses", id="unknown-field"),
])
def test_invalid_endpoints_name_the_field(subset: dict[str, Any], path: str) -> None:
    with pytest.raises(kinds.Invalid) as err:
        kinds.validate(endpoints(**subset))
    assert f"Endpoints web: {path}:" in str(err.value)


def test_registered_as_namespaced_resource_with_short_name() -> None:
    res = resources.resolve("ep")
    assert res is not None
    assert (res.name, res.kind, res.api_version, res.namespaced) == (
        "endpoints", "Endpoints", "v1", True)
    assert resources.resolve("endpoints") is res
