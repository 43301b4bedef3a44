"""The node proxy's decisions: which node, which container, which address, which error."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from api import errors as e
from controlplane.apiserver import nodeproxy as np


def pod(*containers: str, init: tuple[str, ...] = (), node: str = "n1",
        default: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "web", "namespace": "default"}
    if default is not None:
        meta["annotations"] = {np.DEFAULT_CONTAINER_ANNOTATION: default}
    spec: dict[str, Any] = {"containers": [{"name": c} for c in containers]}
    if init:
        spec["initContainers"] = [{"name": c} for c in init]
    if node:
        spec["nodeName"] = node
    return {"metadata": meta, "spec": spec}


@pytest.mark.parametrize(("obj", "requested", "want"), [
    pytest.param(pod("app"), "", "app", id="the-only-one"),
    pytest.param(pod("app", "side"), "side", "side", id="named"),
    pytest.param(pod("app", "side", default="side"), "", "side", id="annotation"),
    pytest.param(pod("app", "side", default="side"), "app", "app", id="named-beats-annotation"),
    pytest.param(pod("app", default="gone"), "", "app", id="stale-annotation-only-one"),
    pytest.param(pod("app", init=("setup",)), "setup", "setup", id="init-container"),
])
def test_container_is_resolved(obj: dict[str, Any], requested: str, want: str) -> None:
    assert np.resolve_container(obj, requested) == want


@pytest.mark.parametrize(("obj", "requested", "message"), [
    pytest.param(pod("app", "side"), "", "Pod default/web: a container name must be "
                 "specified, choose one of: [app side]", id="ambiguous"),
    pytest.param(pod("app", "side", init=("setup",)), "", "Pod default/web: a container "
                 "name must be specified, choose one of: [app side] or one of the init "
                 "containers: [setup]", id="ambiguous-with-init"),
    pytest.param(pod("app", "side", default="gone"), "", "choose one of: [app side]",
                 id="stale-annotation"),
    pytest.param(pod("app"), "nope", 'Pod default/web: container "nope" is not valid, '
                 "choose one of: [app]", id="unknown"),
    pytest.param(pod(), "", "Pod default/web: spec.containers: the pod has no containers",
                 id="none"),
])
def test_container_errors_list_the_choices(obj: dict[str, Any], requested: str,
                                           message: str) -> None:
    with pytest.raises(e.APIError) as info:
        np.resolve_container(obj, requested)
    assert info.value.reason is e.Reason.BAD_REQUEST
    assert message in info.value.message


def test_a_pod_must_be_bound() -> None:
    assert np.bound_node(pod("app", node="n7")) == "n7"
    with pytest.raises(e.APIError) as info:
        np.bound_node(pod("app", node=""))
    assert (info.value.reason, info.value.message) == (
        e.Reason.BAD_REQUEST, "Pod default/web: not scheduled to a node yet")


def node(addresses: list[dict[str, str]], port: Any) -> dict[str, Any]:
    status: dict[str, Any] = {"addresses": addresses}
    if port is not None:
        status["daemonEndpoints"] = {"kubeletEndpoint": {"Port": port}}
    return {"metadata": {"name": "n2"}, "status": status}


INTERNAL = {"type": "InternalIP", "address": "10.99.0.3"}


@pytest.mark.parametrize(("obj", "want"), [
    pytest.param(node([INTERNAL], 10250), "10.99.0.3:10250", id="internal-ip"),
    pytest.param(node([{"type": "Hostname", "address": "n2"},
                       {"type": "ExternalIP", "address": "1.2.3.4"}, INTERNAL], 10250),
                 "10.99.0.3:10250", id="internal-ip-among-others"),
    pytest.param(node([{"type": "InternalIP", "address": "fd00::3"}], 10250),
                 "[fd00::3]:10250", id="ipv6"),
])
def test_node_endpoint(obj: dict[str, Any], want: str) -> None:
    assert str(np.node_endpoint(obj)) == want


@pytest.mark.parametrize(("obj", "message"), [
    pytest.param(node([], 10250), "Node n2: status.addresses: no InternalIP", id="no-address"),
    pytest.param(node([{"type": "Hostname", "address": "n2"}], 10250),
                 "Node n2: status.addresses: no InternalIP", id="hostname-only"),
    pytest.param(node([INTERNAL], None), "Node n2: status.daemonEndpoints.kubeletEndpoint."
                 "Port: no port reported by the node's agent (got None)", id="no-port"),
    pytest.param(node([INTERNAL], 0), "(got 0)", id="port-zero"),
    pytest.param(node([INTERNAL], "10250"), "(got '10250')", id="port-text"),
])
def test_node_endpoint_errors_name_the_field(obj: dict[str, Any], message: str) -> None:
    with pytest.raises(e.APIError) as info:
        np.node_endpoint(obj)
    assert info.value.reason is e.Reason.UNAVAILABLE
    assert message in info.value.message


EP = np.Endpoint("10.99.0.3", 10250)


@pytest.mark.parametrize(("code", "reason", "message"), [
    pytest.param(grpc.StatusCode.UNAVAILABLE, e.Reason.UNAVAILABLE,
                 "node node-2: agent at 10.99.0.3:10250 unreachable: boom", id="unreachable"),
    pytest.param(grpc.StatusCode.NOT_FOUND, e.Reason.NOT_FOUND, "node node-2: boom",
                 id="not-found"),
    pytest.param(grpc.StatusCode.INVALID_ARGUMENT, e.Reason.BAD_REQUEST, "node node-2: boom",
                 id="invalid"),
    pytest.param(grpc.StatusCode.DEADLINE_EXCEEDED, e.Reason.TIMEOUT,
                 "node node-2: agent at 10.99.0.3:10250 did not answer in time: boom",
                 id="deadline"),
    pytest.param(grpc.StatusCode.PERMISSION_DENIED, e.Reason.FORBIDDEN, "node node-2: boom",
                 id="agent-refused"),
    pytest.param(grpc.StatusCode.UNKNOWN, e.Reason.INTERNAL, "node node-2: boom",
                 id="unknown"),
])
def test_agent_errors_keep_their_code_and_name_the_node(code: Any, reason: e.Reason,
                                                        message: str) -> None:
    err = np.agent_error(code, "boom", node="node-2", endpoint=EP)
    assert (err.reason, err.message) == (reason, message)
