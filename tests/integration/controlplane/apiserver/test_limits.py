"""The API's limits through a real corral-controlplane over a real etcd: objects over etcd's
request limit, conflicting writes, and watches or lists from a compacted revision."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import grpc  # type: ignore[import-untyped]
import pytest
from pyetcd import etcdrpc as rpc  # type: ignore[import-untyped]

from api import errors as e
from api.client import Client
from controlplane.apiserver import objects
from controlplane.storage import keys
from tests.support.controlplane import ControlPlane
from tests.support.etcd import EtcdServer

MERGE = "application/merge-patch+json"


@pytest.fixture(scope="module")
def cp(etcd_server: EtcdServer) -> Iterator[ControlPlane]:
    """One server for the module (names are unique per test, nothing is wiped)."""
    if etcd_server.proc is None:
        etcd_server.start()
    with ControlPlane(etcd_server.endpoint, insecure=True) as server:
        yield server


@pytest.fixture
def client(cp: ControlPlane) -> Iterator[Client]:
    with cp.client() as c:
        yield c


def cm(name: str, value: str = "1") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
            "data": {"a": value}}


def stored_size(client: Client, name: str) -> int:
    """What the server stores for cm(name, ""), as etcd's limit counts it (the key twice
    and the value with the metadata the server adds), measured with a probe."""
    made = client.create("configmaps", cm(name, ""), namespace="default")
    client.delete("configmaps", name, namespace="default")
    key = keys.object_key("configmaps", name, "default")
    return 2 * len(key) + len(objects.encode(made))


@pytest.mark.parametrize("over", [
    pytest.param(1, id="just-over-the-limit"),
    pytest.param(512 * 1024, id="2MiB"),
])
def test_object_over_etcds_limit_is_too_large_and_named(client: Client, over: int) -> None:
    name = f"big-{over}"
    value = "x" * (keys.MAX_OBJECT_BYTES - stored_size(client, name) + over)
    with pytest.raises(e.APIError) as info:
        client.create("configmaps", cm(name, value), namespace="default")
    assert info.value.reason is e.Reason.TOO_LARGE
    assert f"ConfigMap {name}" in str(info.value)
    assert "limit" in str(info.value)
    with pytest.raises(e.APIError) as gone:
        client.get("configmaps", name, namespace="default")
    assert gone.value.reason is e.Reason.NOT_FOUND


def test_object_just_under_the_limit_is_stored(client: Client) -> None:
    name = "almost-big"
    value = "x" * (keys.MAX_OBJECT_BYTES - stored_size(client, name))
    made = client.create("configmaps", cm(name, value), namespace="default")
    assert client.get("configmaps", name, namespace="default")["data"]["a"] == value
    client.delete("configmaps", name, namespace="default", resource_version=made["metadata"][
        "resourceVersion"])


@pytest.mark.parametrize("verb", ["update", "patch"])
def test_growing_an_object_past_the_limit_is_too_large(client: Client, verb: str) -> None:
    name = f"grows-{verb}"
    made = client.create("configmaps", cm(name), namespace="default")
    value = "y" * (2 * 1024 * 1024)
    with pytest.raises(e.APIError) as info:
        if verb == "update":
            client.update("configmaps", {**made, "data": {"a": value}}, namespace="default")
        else:
            client.patch("configmaps", name, json.dumps({"data": {"a": value}}).encode(),
                         patch_type=MERGE, namespace="default")
    assert info.value.reason is e.Reason.TOO_LARGE
    assert f"ConfigMap {name}" in str(info.value)
    assert client.get("configmaps", name, namespace="default") == made


def test_stale_update_is_a_conflict_naming_the_current_version(client: Client) -> None:
    made = client.create("configmaps", cm("stale"), namespace="default")
    newer = client.update("configmaps", {**made, "data": {"a": "2"}}, namespace="default")
    current = newer["metadata"]["resourceVersion"]
    with pytest.raises(e.APIError) as info:
        client.update("configmaps", {**made, "data": {"a": "3"}}, namespace="default")
    assert info.value.reason is e.Reason.CONFLICT
    assert f"current resourceVersion {current}" in str(info.value)
    assert "ConfigMap 'stale'" in str(info.value)
    assert info.value.details.get("resourceVersion") == current
    # a patch that pins the old resourceVersion conflicts the same way
    pinned = {"metadata": {"resourceVersion": made["metadata"]["resourceVersion"]},
              "data": {"a": "4"}}
    with pytest.raises(e.APIError) as info:
        client.patch("configmaps", "stale", json.dumps(pinned).encode(), patch_type=MERGE,
                     namespace="default")
    assert info.value.reason is e.Reason.CONFLICT
    assert f"current resourceVersion {current}" in str(info.value)
    assert client.get("configmaps", "stale", namespace="default")["data"] == {"a": "2"}


def test_racing_updates_at_one_version_have_one_winner(cp: ControlPlane) -> None:
    with cp.client() as c:
        made = c.create("configmaps", cm("race"), namespace="default")
    wins: list[dict[str, Any]] = []
    losses: list[e.APIError] = []
    start = threading.Barrier(8)

    def racer(i: int) -> None:
        with cp.client() as c:
            start.wait()
            try:
                wins.append(c.update("configmaps", {**made, "data": {"a": f"r{i}"}},
                                     namespace="default"))
            except e.APIError as err:
                losses.append(err)

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(wins) == 1 and len(losses) == 7
    winner = wins[0]["metadata"]["resourceVersion"]
    for err in losses:
        assert err.reason is e.Reason.CONFLICT
        assert f"current resourceVersion {winner}" in str(err)
    with cp.client() as c:
        assert c.get("configmaps", "race", namespace="default")["data"] == wins[0]["data"]


def compact(etcd: EtcdServer) -> int:
    """Compact etcd at its current revision; return that revision."""
    with grpc.insecure_channel(etcd.endpoint.removeprefix("http://")) as channel:
        kv = rpc.KVStub(channel)
        rev = int(kv.Range(rpc.RangeRequest(key=b"\0", count_only=True), timeout=5)
                  .header.revision)
        kv.Compact(rpc.CompactionRequest(revision=rev, physical=True), timeout=5)
    return rev


def test_watch_and_list_from_a_compacted_revision_are_expired(etcd_server: EtcdServer,
                                                               ) -> None:
    # its own server: no watch cache that could still hold the old revision in memory
    with ControlPlane(etcd_server.endpoint, insecure=True) as server, server.client() as c:
        made = c.create("configmaps", cm("old"), namespace="default")
        old = made["metadata"]["resourceVersion"]
        for i in range(3):
            c.patch("configmaps", "old", json.dumps({"data": {"a": str(i)}}).encode(),
                    patch_type=MERGE, namespace="default")
        compacted = compact(etcd_server)
        with pytest.raises(e.APIError) as info:
            next(iter(c.watch("configmaps", namespace="default", resource_version=old,
                              timeout=10)))
        assert info.value.reason is e.Reason.GONE
        assert f"too old resource version: {old}" in str(info.value)
        assert str(compacted) in str(info.value)
        with pytest.raises(e.APIError) as listed:
            c.list("configmaps", namespace="default", resource_version=old)
        assert listed.value.reason is e.Reason.GONE
        # from the current revision the watch works
        events = c.watch("configmaps", namespace="default", resource_version=str(compacted),
                         timeout=10)
        c.patch("configmaps", "old", b'{"data":{"a":"new"}}', patch_type=MERGE,
                namespace="default")
        first = next(iter(events))
        assert first["type"] == "MODIFIED" and first["object"]["data"] == {"a": "new"}


def test_object_over_the_grpc_limit_is_named_too(client: Client) -> None:
    with pytest.raises(e.APIError) as info:
        client.create("configmaps", cm("huge", "x" * (20 * 1024 * 1024)), namespace="default")
    assert info.value.reason is e.Reason.TOO_LARGE
    assert "ConfigMap huge" in str(info.value)


def test_a_huge_non_ascii_echo_still_reaches_the_client_as_a_status(client: Client) -> None:
    """A message clipped by characters can still be too long for gRPC's trailer in bytes
    (é is 6 bytes percent-encoded): the client must get the Status, not 'Stream removed'."""
    with pytest.raises(e.APIError) as info:
        client.create("configmaps", {"apiVersion": "é" * 10000, "kind": "ConfigMap",
                                     "metadata": {"name": "echo"}, "data": {"a": "1"}},
                      namespace="default")
    assert info.value.reason is e.Reason.BAD_REQUEST
    assert info.value.message.startswith("ConfigMap echo: apiVersion/kind é")
