"""endpoints_plan: a Service's Endpoints subsets from the pods of its namespace."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.controllers import endpoints_plan as ep


def svc(*ports: dict[str, Any], selector: dict[str, str] | None = None,
        publish: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"ports": list(ports) or [{"port": 80, "targetPort": 8080,
                                                      "protocol": "TCP"}]}
    if selector is not None:
        spec["selector"] = selector
    if publish:
        spec["publishNotReadyAddresses"] = True
    return {"metadata": {"name": "web", "namespace": "default", "labels": {"tier": "fe"}},
            "spec": spec}


def pod(name: str, ip: str | None, *, ready: bool = True, labels: dict[str, str] | None = None,
        phase: str = "Running", deleting: bool = False,
        ports: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "default", "uid": f"u-{name}",
                            "labels": {"app": "web"} if labels is None else labels}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    status: dict[str, Any] = {"phase": phase,
                              "conditions": [{"type": "Ready",
                                              "status": "True" if ready else "False"}]}
    if ip:
        status["podIP"] = ip
    return {"metadata": meta, "status": status,
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "web",
                                                       "ports": ports or []}]}}


SEL = {"app": "web"}
P80 = [{"port": 8080, "protocol": "TCP"}]


def addr(name: str, ip: str) -> dict[str, Any]:
    return {"ip": ip, "nodeName": "n1", "targetRef": {"kind": "Pod", "namespace": "default",
                                                      "name": name, "uid": f"u-{name}"}}


@pytest.mark.parametrize("service,pods,expected", [
    pytest.param(svc(selector=SEL), [pod("a", "10.0.0.2"), pod("b", "10.0.0.1", ready=False)],
                 [{"addresses": [addr("a", "10.0.0.2")],
                   "notReadyAddresses": [addr("b", "10.0.0.1")], "ports": P80}],
                 id="ready-and-not-ready"),
    pytest.param(svc(selector=SEL), [pod("b", "10.0.0.9"), pod("a", "10.0.0.1")],
                 [{"addresses": [addr("a", "10.0.0.1"), addr("b", "10.0.0.9")],
                   "ports": P80}], id="sorted-by-ip"),
    pytest.param(svc(selector=SEL), [pod("a", None)], [], id="no-ip-yet"),
    pytest.param(svc(selector=SEL), [pod("a", "10.0.0.1", deleting=True)], [],
                 id="terminating"),
    pytest.param(svc(selector=SEL), [pod("a", "10.0.0.1", phase="Succeeded")], [],
                 id="finished"),
    pytest.param(svc(selector=SEL), [pod("a", "10.0.0.1", labels={"app": "db"})], [],
                 id="not-selected"),
    pytest.param(svc(), [pod("a", "10.0.0.1")], [], id="no-selector"),
    pytest.param(svc(selector=SEL, publish=True), [pod("a", "10.0.0.1", ready=False)],
                 [{"addresses": [addr("a", "10.0.0.1")], "ports": P80}],
                 id="publish-not-ready"),
    pytest.param(svc({"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"},
                     selector=SEL),
                 [pod("a", "10.0.0.1", ports=[{"name": "web", "containerPort": 8000}]),
                  pod("b", "10.0.0.2", ports=[{"name": "web", "containerPort": 9000}]),
                  pod("c", "10.0.0.3", ports=[{"name": "other", "containerPort": 1}])],
                 [{"addresses": [addr("a", "10.0.0.1")],
                   "ports": [{"name": "http", "port": 8000, "protocol": "TCP"}]},
                  {"addresses": [addr("b", "10.0.0.2")],
                   "ports": [{"name": "http", "port": 9000, "protocol": "TCP"}]}],
                 id="named-target-port-subsets"),
    pytest.param(svc({"name": "dns", "port": 53, "targetPort": "dns", "protocol": "UDP"},
                     selector=SEL),
                 [pod("a", "10.0.0.1", ports=[{"name": "dns", "containerPort": 53,
                                               "protocol": "TCP"}])], [],
                 id="named-port-protocol-must-match"),
])
def test_endpoints_for(service: dict[str, Any], pods: list[dict[str, Any]],
                       expected: list[dict[str, Any]]) -> None:
    assert ep.endpoints_for(service, pods) == expected


def test_endpoints_object_carries_name_and_labels() -> None:
    obj = ep.endpoints_object(svc(selector=SEL), [])
    assert obj["metadata"] == {"name": "web", "namespace": "default",
                               "labels": {"tier": "fe"}}
    assert (obj["apiVersion"], obj["kind"], obj["subsets"]) == ("v1", "Endpoints", [])


def test_endpoints_object_validates() -> None:
    from api import kinds
    obj = ep.endpoints_object(svc(selector=SEL), ep.endpoints_for(
        svc(selector=SEL), [pod("a", "10.0.0.1"), pod("b", "10.0.0.2", ready=False)]))
    assert kinds.validate(kinds.defaults(obj)).kind == "Endpoints"
