"""agent/nodeapi.py's pure parts: who may call, which container, which instance, and the
logs options, with the errors' codes and messages."""

from __future__ import annotations

from typing import Any

import grpc  # type: ignore[import-untyped]
import pytest

from agent import cri as C
from agent import nodeapi as NA
from api.v1 import node_pb2 as npb
from controlplane.apiserver.pki import create_ca, issue

CA = create_ca()


def cert(cn: str, groups: list[str]) -> bytes:
    return issue(CA, common_name=cn, organizations=groups, client=True).cert_pem


@pytest.mark.parametrize(("ctx", "code", "match"), [
    pytest.param({"x509_pem_cert": [cert("admin", ["ops", "system:masters"])]}, None, "",
                 id="masters"),
    pytest.param({"x509_pem_cert": [cert("system:node:n2", ["system:nodes"])]},
                 grpc.StatusCode.PERMISSION_DENIED,
                 "node n1: user 'system:node:n2' .* needs group system:masters", id="a-node"),
    pytest.param({"x509_pem_cert": [cert("dev", [])]}, grpc.StatusCode.PERMISSION_DENIED,
                 "groups \\[\\]", id="no-group"),
    pytest.param({}, grpc.StatusCode.UNAUTHENTICATED, "client certificate is required",
                 id="no-certificate"),
])
def test_authorize(ctx: dict[str, Any], code: grpc.StatusCode | None, match: str) -> None:
    if code is None:
        assert NA.authorize(ctx, node="n1") == "admin"
        return
    with pytest.raises(NA.NodeAPIError, match=match) as err:
        NA.authorize(ctx, node="n1")
    assert err.value.code == code


def bound(containers: list[str], *, init: list[str] = (),  # type: ignore[assignment]
          default: str = "", runtime: C.PodRuntime | None = None) -> NA.BoundPod:
    meta: dict[str, Any] = {"name": "web-1", "namespace": "default", "uid": "u1"}
    if default:
        meta["annotations"] = {NA.DEFAULT_CONTAINER_ANNOTATION: default}
    pod = {"metadata": meta, "spec": {"containers": [{"name": n} for n in containers],
                                      "initContainers": [{"name": n} for n in init]}}
    return NA.BoundPod(pod, runtime or C.PodRuntime("u1"))


@pytest.mark.parametrize(("pod", "requested", "want"), [
    pytest.param(bound(["app"]), "", "app", id="only-container"),
    pytest.param(bound(["app", "side"]), "side", "side", id="named"),
    pytest.param(bound(["app"], init=["setup"]), "setup", "setup", id="init-container"),
    pytest.param(bound(["app", "side"], default="side"), "", "side", id="annotation"),
])
def test_container_name(pod: NA.BoundPod, requested: str, want: str) -> None:
    assert NA.container_name(pod, requested) == want


@pytest.mark.parametrize(("pod", "requested", "code", "match"), [
    pytest.param(bound(["app"]), "db", grpc.StatusCode.NOT_FOUND,
                 'pod default/web-1: container "db" not found', id="unknown"),
    pytest.param(bound(["app", "side"]), "", grpc.StatusCode.INVALID_ARGUMENT,
                 "pod default/web-1: container: a name is required, choose one of: app, side",
                 id="ambiguous"),
])
def test_container_name_errors(pod: NA.BoundPod, requested: str, code: grpc.StatusCode,
                               match: str) -> None:
    with pytest.raises(NA.NodeAPIError, match=match) as err:
        NA.container_name(pod, requested)
    assert err.value.code == code


def info(cid: str, attempt: int, state: str) -> C.ContainerInfo:
    return C.ContainerInfo(id=cid, name="app", attempt=attempt, state=state, sandbox_id="s1",
                           created_at=attempt)


RT = C.PodRuntime("u1", sandboxes=[C.SandboxInfo("s1", 0, True)],
                  containers=[info("c0", 0, "exited"), info("c1", 1, "running")])


@pytest.mark.parametrize(("runtime", "previous", "want", "code", "match"), [
    pytest.param(RT, False, "c1", None, "", id="current"),
    pytest.param(RT, True, "c0", None, "", id="previous"),
    pytest.param(C.PodRuntime("u1"), False, "", grpc.StatusCode.FAILED_PRECONDITION,
                 'container "app" is waiting to start', id="not-started"),
    pytest.param(C.PodRuntime("u1", containers=[info("c0", 0, "running")]), True, "",
                 grpc.StatusCode.NOT_FOUND, 'container "app": no previous instance',
                 id="never-restarted"),
])
def test_instance(runtime: C.PodRuntime, previous: bool, want: str,
                  code: grpc.StatusCode | None, match: str) -> None:
    pod = bound(["app"], runtime=runtime)
    if code is None:
        assert NA.instance(pod, "app", previous=previous).id == want
        return
    with pytest.raises(NA.NodeAPIError, match=match) as err:
        NA.instance(pod, "app", previous=previous)
    assert err.value.code == code


@pytest.mark.parametrize(("fields", "match"), [
    pytest.param({"tail_lines": -1}, "tail_lines: must be >= 0, got -1", id="tail"),
    pytest.param({"since_seconds": 0}, "since_seconds: must be >= 1, got 0", id="since"),
    pytest.param({"limit_bytes": 0}, "limit_bytes: must be >= 1, got 0", id="limit"),
])
def test_log_options_rejects(fields: dict[str, int], match: str) -> None:
    req = npb.LogsRequest(**fields)  # type: ignore[arg-type]
    with pytest.raises(NA.NodeAPIError, match="logs of pod default/web-1: " + match) as err:
        NA.log_options(req, where="pod default/web-1", now_ns=0)
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_log_options() -> None:
    req = npb.LogsRequest(follow=True, tail_lines=0, since_seconds=5, timestamps=True)
    got = NA.log_options(req, where="x", now_ns=10 * 10**9)
    assert got == NA.L.LogOptions(follow=True, tail_lines=0, since_ns=5 * 10**9,
                                  timestamps=True, limit_bytes=None)


def test_running_of_keeps_the_current_sandboxes_running_containers() -> None:
    rt = C.PodRuntime("u1", sandboxes=[C.SandboxInfo("s1", 1, True), C.SandboxInfo("s0", 0,
                                                                                   False)],
                      containers=[info("c1", 1, "running"), info("c0", 0, "exited"),
                                  C.ContainerInfo(id="old", name="app", attempt=0,
                                                  state="running", sandbox_id="s0")])
    got = NA.running_of([bound(["app"], runtime=rt)])
    assert [(r.namespace, r.pod, r.container, r.container_id) for r in got] == [
        ("default", "web-1", "app", "c1")]
