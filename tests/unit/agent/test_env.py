"""agent/env.py: expansion rules, fieldRef paths, resourceFieldRef, key refs, envFrom."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from agent import env
from api import errors


class FakeClient:
    """The one method env needs, over dicts of objects by (resource, namespace, name)."""

    def __init__(self, objects: dict[tuple[str, str, str], dict[str, Any]],
                 fail: errors.APIError | None = None) -> None:
        self.objects = objects
        self.fail = fail
        self.calls: list[tuple[str, str, str]] = []

    async def get(self, resource: str, name: str, *, namespace: str = "",
                  subresource: str = "") -> dict[str, Any]:
        self.calls.append((resource, namespace, name))
        if self.fail:
            raise self.fail
        try:
            return self.objects[(resource, namespace, name)]
        except KeyError:
            raise errors.not_found(resource, name, namespace) from None


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


POD: dict[str, Any] = {
    "metadata": {"name": "web", "namespace": "shop", "uid": "u-1",
                 "labels": {"app": "web", "tier": "front"},
                 "annotations": {"note": 'say "hi"\n'}},
    "spec": {"nodeName": "node-1", "serviceAccountName": "robot", "containers": [
        {"name": "app", "image": "x",
         "resources": {"limits": {"cpu": "1500m", "memory": "1Gi"},
                       "requests": {"cpu": "250m", "memory": "100M"}}},
        {"name": "side", "image": "y"},
    ]},
    "status": {"podIP": "10.1.0.5", "hostIP": "192.168.0.2"},
}

OBJECTS = {
    ("configmaps", "shop", "app"): {"data": {"MODE": "prod", "URL": "http://$(HOST)",
                                             "bad key": "x", "1st": "y"},
                                    "binaryData": {"BIN": b64("zz")}},
    ("secrets", "shop", "db"): {"data": {"PASSWORD": b64("s3cret"), "USER": b64("admin")}},
}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def resolve(container: dict[str, Any], **kw: Any) -> list[tuple[str, str]]:
    got: list[tuple[str, str]] = run(env.resolve(POD, {"name": "app", **container},
                                                  client=FakeClient(OBJECTS), **kw))
    return got


@pytest.mark.parametrize(("text", "defined", "want"), [
    pytest.param("plain", {}, "plain", id="no-reference"),
    pytest.param("$(A)", {"A": "1"}, "1", id="defined"),
    pytest.param("x$(A)y$(B)z", {"A": "1", "B": "2"}, "x1y2z", id="two"),
    pytest.param("$(MISSING)", {}, "$(MISSING)", id="undefined-kept"),
    pytest.param("$$(A)", {"A": "1"}, "$(A)", id="escaped"),
    pytest.param("$$$(A)", {"A": "1"}, "$1", id="escape-then-reference"),
    pytest.param("$$", {}, "$", id="double-dollar"),
    pytest.param("a$", {}, "a$", id="trailing-dollar"),
    pytest.param("$A", {"A": "1"}, "$A", id="no-parens"),
    pytest.param("$(A", {"A": "1"}, "$(A", id="unclosed"),
    pytest.param("$()", {}, "$()", id="empty-name"),
    pytest.param("$(A)$(A)", {"A": "$(B)"}, "$(B)$(B)", id="not-recursive"),
    pytest.param("100$", {}, "100$", id="dollar-at-end"),
])
def test_expansion_follows_kubernetes(text: str, defined: dict[str, str], want: str) -> None:
    assert env.expand(text, defined) == want


@pytest.mark.parametrize(("path", "want"), [
    pytest.param("metadata.name", "web", id="name"),
    pytest.param("metadata.namespace", "shop", id="namespace"),
    pytest.param("metadata.uid", "u-1", id="uid"),
    pytest.param("metadata.labels['app']", "web", id="label"),
    pytest.param("metadata.labels['nope']", "", id="missing-label"),
    pytest.param("metadata.annotations['note']", 'say "hi"\n', id="annotation"),
    pytest.param("spec.nodeName", "node-1", id="node-name"),
    pytest.param("spec.serviceAccountName", "robot", id="service-account"),
    pytest.param("status.podIP", "10.1.0.5", id="pod-ip"),
    pytest.param("status.hostIP", "192.168.0.2", id="host-ip"),
])
def test_field_paths(path: str, want: str) -> None:
    assert env.field_value(POD, path) == want


@pytest.mark.parametrize(("status", "path", "want"), [
    pytest.param({"podIPs": [{"ip": "10.1.0.5"}, {"ip": "fd00::5"}]}, "status.podIPs",
                 "10.1.0.5,fd00::5", id="pod-ips"),
    pytest.param({"hostIPs": [{"ip": "192.168.0.2"}]}, "status.hostIPs", "192.168.0.2",
                 id="host-ips"),
    pytest.param({}, "status.podIP", "", id="no-pod-ip-yet"),
    pytest.param({}, "status.hostIPs", "", id="no-host-ips-yet"),
])
def test_ips_come_from_the_pods_status_only(status: dict[str, Any], path: str,
                                            want: str) -> None:
    # the worker puts the sandbox's and the node's IPs there (worker.with_sandbox_ips)
    assert env.field_value({**POD, "status": status}, path) == want


def test_whole_label_map_is_for_volumes_only() -> None:
    with pytest.raises(env.FieldPathError, match=r"unsupported fieldPath 'metadata\.labels'"):
        env.field_value(POD, "metadata.labels")
    assert env.field_value(POD, "metadata.labels", whole_maps=True) == \
        'app="web"\ntier="front"'
    assert env.field_value(POD, "metadata.annotations", whole_maps=True) == \
        'note="say \\"hi\\"\\n"'


@pytest.mark.parametrize(("container", "resource", "divisor", "want"), [
    pytest.param("app", "limits.cpu", None, "2", id="cpu-rounded-up"),
    pytest.param("app", "limits.cpu", "1m", "1500", id="cpu-millis"),
    pytest.param("app", "requests.cpu", "100m", "3", id="cpu-divisor-rounds-up"),
    pytest.param("app", "limits.memory", None, "1073741824", id="memory-bytes"),
    pytest.param("app", "limits.memory", "1Mi", "1024", id="memory-mebibytes"),
    pytest.param("app", "requests.memory", "1Mi", "96", id="memory-rounded-up"),
    pytest.param("side", "requests.cpu", None, "0", id="no-request"),
])
def test_resource_field_ref(container: str, resource: str, divisor: str | None,
                            want: str) -> None:
    assert env.resource_value(POD, container_name=container, resource=resource,
                              divisor=divisor) == want


def test_missing_limit_is_node_allocatable() -> None:
    assert env.resource_value(POD, container_name="side", resource="limits.memory",
                              divisor="1Gi", allocatable={"memory": "8Gi"}) == "8"


@pytest.mark.parametrize(("resource", "container", "match"), [
    pytest.param("limits.gpu", "app", "unsupported resource", id="unknown-resource"),
    pytest.param("cpu", "app", "unsupported resource", id="no-kind"),
    pytest.param("limits.cpu", "nope", "no container named 'nope'", id="no-container"),
])
def test_resource_field_ref_errors(resource: str, container: str, match: str) -> None:
    with pytest.raises(env.FieldPathError, match=match):
        env.resource_value(POD, container_name=container, resource=resource)


def test_values_sources_and_expansion_in_order() -> None:
    got = resolve({"env": [
        {"name": "HOST", "value": "db"},
        {"name": "URL", "value": "pg://$(HOST):$(PORT)/$(POD)"},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "MODE"}}},
        {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "PASSWORD"}}},
        {"name": "RAW", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "URL"}}},
        {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory",
                                                           "divisor": "1Mi"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
        {"name": "HOST", "value": "db2"},
        {"name": "AGAIN", "value": "$(HOST)"},
    ]})
    assert got == [("HOST", "db2"), ("URL", "pg://db:$(PORT)/$(POD)"), ("POD", "web"),
                   ("MODE", "prod"), ("PW", "s3cret"), ("RAW", "http://$(HOST)"),
                   ("MEM", "1024"), ("NODE", "192.168.0.2"), ("AGAIN", "db2")]


def test_env_from_with_prefix_skips_and_reports_invalid_keys() -> None:
    reports: list[str] = []
    got = resolve({"envFrom": [{"configMapRef": {"name": "app"}, "prefix": "CM_"},
                               {"secretRef": {"name": "db"}}],
                   "env": [{"name": "CM_MODE", "value": "dev-$(USER)"}]},
                  warn=reports.append)
    assert got == [("CM_1st", "y"), ("CM_MODE", "dev-admin"), ("CM_URL", "http://$(HOST)"),
                   ("PASSWORD", "s3cret"), ("USER", "admin")]
    assert reports == ["Pod web: containers[app].envFrom[0]: keys of configMap 'app' "
                       "skipped as invalid environment variable names: CM_bad key"]


def test_env_from_without_prefix_skips_digit_first_keys() -> None:
    reports: list[str] = []
    got = dict(resolve({"envFrom": [{"configMapRef": {"name": "app"}}]},
                       warn=reports.append))
    assert "1st" not in got and "bad key" not in got and got["MODE"] == "prod"
    assert "1st" in reports[0] and "bad key" in reports[0]


@pytest.mark.parametrize(("container", "want"), [
    pytest.param({"envFrom": [{"configMapRef": {"name": "gone", "optional": True}}]}, [],
                 id="optional-env-from"),
    pytest.param({"env": [{"name": "A", "valueFrom": {"secretKeyRef": {
        "name": "gone", "key": "k", "optional": True}}}]}, [], id="optional-secret"),
    pytest.param({"env": [{"name": "A", "valueFrom": {"configMapKeyRef": {
        "name": "app", "key": "nope", "optional": True}}}]}, [], id="optional-key"),
])
def test_optional_sources_may_be_missing(container: dict[str, Any],
                                         want: list[tuple[str, str]]) -> None:
    assert resolve(container) == want


@pytest.mark.parametrize(("container", "message"), [
    pytest.param({"env": [{"name": "DB", "valueFrom": {"secretKeyRef": {
        "name": "gone", "key": "k"}}}]},
        "Pod web: containers[app].env[DB]: secret \"gone\" not found in namespace 'shop'",
        id="missing-secret"),
    pytest.param({"env": [{"name": "M", "valueFrom": {"configMapKeyRef": {
        "name": "app", "key": "nope"}}}]},
        "Pod web: containers[app].env[M]: configMap \"app\" has no key 'nope'",
        id="missing-key"),
    pytest.param({"envFrom": [{"configMapRef": {"name": "gone"}}]},
                 "Pod web: containers[app].envFrom[0]: configMap \"gone\" not found",
                 id="missing-env-from"),
    pytest.param({"env": [{"name": "F", "valueFrom": {"fieldRef": {
        "fieldPath": "spec.bogus"}}}]},
        "Pod web: containers[app].env[F]: unsupported fieldPath 'spec.bogus'",
        id="unknown-field"),
    pytest.param({"env": [{"name": "R", "valueFrom": {"resourceFieldRef": {
        "resource": "limits.cpu", "containerName": "nope"}}}]},
        "Pod web: containers[app].env[R]: no container named 'nope'", id="unknown-container"),
])
def test_errors_name_pod_container_and_variable(container: dict[str, Any],
                                                message: str) -> None:
    with pytest.raises(env.EnvError) as err:
        resolve(container)
    assert str(err.value).startswith(message)


def test_a_server_error_is_reported_not_taken_for_missing() -> None:
    client = FakeClient(OBJECTS, fail=errors.unavailable("etcd is down"))
    container = {"name": "app", "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {
        "name": "app", "key": "MODE", "optional": True}}}]}
    with pytest.raises(env.EnvError, match=r"env\[A\]: etcd is down"):
        run(env.resolve(POD, container, client=client))
