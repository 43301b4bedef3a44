"""corral-controlplane as a process over a real etcd: the verbs through gRPC, errors with
their reasons, watches, health endpoints, and surviving an etcd outage."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from api import errors as e
from api.client import Client
from tests.support.controlplane import ControlPlane
from tests.support.etcd import EtcdServer


@pytest.fixture
def cp(etcd_endpoint: str) -> Iterator[ControlPlane]:
    with ControlPlane(etcd_endpoint, insecure=True) as server:
        yield server


@pytest.fixture
def client(cp: ControlPlane) -> Iterator[Client]:
    with cp.client() as c:
        yield c


def cm(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
            "data": data or {"a": "1"}}


def test_crud_through_grpc(client: Client) -> None:
    made = client.create("configmaps", cm("one"), namespace="default")
    assert made["metadata"]["uid"]
    got = client.get("configmaps", "one", namespace="default")
    assert got == made
    got["data"] = {"a": "2"}
    updated = client.update("configmaps", got, namespace="default")
    assert int(updated["metadata"]["resourceVersion"]) > int(
        made["metadata"]["resourceVersion"])
    listed = client.list("configmaps", namespace="default")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["one"]
    client.delete("configmaps", "one", namespace="default")
    with pytest.raises(e.APIError) as info:
        client.get("configmaps", "one", namespace="default")
    assert info.value.reason is e.Reason.NOT_FOUND


def test_errors_keep_their_reason_and_fields(client: Client) -> None:
    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
           "spec": {"replicas": -1, "selector": {"matchLabels": {"a": "b"}},
                    "template": {"metadata": {"labels": {"a": "b"}},
                                 "spec": {"containers": [{"name": "c", "image": "x"}]}}}}
    with pytest.raises(e.APIError) as info:
        client.create("deployments", bad, namespace="default")
    assert info.value.reason is e.Reason.INVALID
    assert str(info.value) == "Deployment web: spec.replicas: must be >= 0, got -1"
    assert info.value.causes == [{"field": "spec.replicas", "message": "must be >= 0, got -1"}]
    made = client.create("configmaps", cm("c"), namespace="default")
    client.update("configmaps", {**made, "data": {"a": "x"}}, namespace="default")
    with pytest.raises(e.APIError) as info:
        client.update("configmaps", {**made, "data": {"a": "y"}}, namespace="default")
    assert info.value.reason is e.Reason.CONFLICT
    assert "current resourceVersion" in str(info.value)
    with pytest.raises(e.APIError) as info:
        client.get("widgets", "x")
    assert info.value.reason is e.Reason.NOT_FOUND
    assert "doesn't have a resource type 'widgets'" in str(info.value)


def test_bootstrap_namespaces_exist(client: Client) -> None:
    names = {n["metadata"]["name"] for n in client.list("namespaces")["items"]}
    assert {"default", "corral-system", "corral-node-lease"} <= names


def test_watch_streams_changes_in_order(client: Client) -> None:
    start = client.list("configmaps", namespace="default")["metadata"]["resourceVersion"]
    seen: list[tuple[str, str]] = []

    def watch() -> None:
        for ev in client.watch("configmaps", namespace="default", resource_version=start,
                               timeout=10):
            seen.append((ev["type"], ev["object"]["metadata"]["name"]))
            if len(seen) == 3:
                return

    t = threading.Thread(target=watch)
    t.start()
    made = client.create("configmaps", cm("w"), namespace="default")
    client.update("configmaps", {**made, "data": {"b": "2"}}, namespace="default")
    client.delete("configmaps", "w", namespace="default")
    t.join(10)
    assert seen == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]


def test_health_ready_and_metrics(cp: ControlPlane, client: Client) -> None:
    client.list("pods", namespace="default")
    assert cp.http("/healthz") == (200, "ok")
    assert cp.http("/readyz") == (200, "ok")
    code, text = cp.http("/metrics")
    assert code == 200
    assert 'apiserver_request_total{code="OK",resource="pods",verb="list"}' in text
    assert "apiserver_request_duration_seconds_bucket" in text
    assert 'etcd_request_duration_seconds_count{operation="list",type="pods"}' in text


def test_etcd_outage_is_unavailable_then_recovers(etcd_server: EtcdServer,
                                                  etcd_endpoint: str) -> None:
    with ControlPlane(etcd_endpoint, insecure=True) as cp, cp.client() as client:
        client.create("configmaps", cm("before"), namespace="default")
        etcd_server.kill()
        try:
            with pytest.raises(e.APIError) as info:
                client.get("configmaps", "before", namespace="default")
            assert info.value.reason is e.Reason.UNAVAILABLE
            assert info.value.retry_after is not None
            assert cp.http("/readyz")[0] == 503
            assert cp.http("/healthz") == (200, "ok")  # alive, just not ready
        finally:
            etcd_server.start()
        deadline = time.monotonic() + 15
        while True:
            try:
                got = client.get("configmaps", "before", namespace="default")
                break
            except e.APIError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert got["data"] == {"a": "1"}
        assert cp.proc is not None and cp.proc.poll() is None


def test_two_servers_share_one_etcd(etcd_endpoint: str) -> None:
    with ControlPlane(etcd_endpoint, insecure=True) as a, \
            ControlPlane(etcd_endpoint, insecure=True) as b, \
            a.client() as ca, b.client() as cb:
        made = ca.create("configmaps", cm("shared"), namespace="default")
        got = cb.get("configmaps", "shared", namespace="default")
        assert got["metadata"]["uid"] == made["metadata"]["uid"]
        cb.update("configmaps", {**got, "data": {"v": "b"}}, namespace="default")
        with pytest.raises(e.APIError) as info:
            ca.update("configmaps", {**made, "data": {"v": "a"}}, namespace="default")
        assert info.value.reason is e.Reason.CONFLICT


def test_bad_json_body_is_bad_request(cp: ControlPlane) -> None:
    import grpc  # type: ignore[import-untyped]

    from api.v1 import apiserver_pb2 as pb
    from api.v1 import apiserver_pb2_grpc as pb_grpc
    with grpc.insecure_channel(cp.address) as ch:
        stub = pb_grpc.APIStub(ch)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.RpcError) as info:
            stub.Create(pb.CreateRequest(target=pb.Target(resource="configmaps",
                                                          namespace="default"),
                                         json=b"{nope"), timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = dict(info.value.trailing_metadata())["corral-status-bin"]
    assert json.loads(status)["reason"] == "BadRequest"
