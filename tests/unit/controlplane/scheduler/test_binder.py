"""Batched binds over InMemoryStore: one txn per batch, conflicts fail alone, fencing."""

from __future__ import annotations

import pytest

from controlplane.scheduler.binder import Binder, Binding, bound_pod
from controlplane.storage import Conflict, Fence, Fenced, InMemoryStore, NotFound
from tests.unit.controlplane.scheduler.service_harness import add_pod, make_cluster

pytestmark = pytest.mark.asyncio


async def test_binds_many_pods_per_transaction_like_the_binding_subresource() -> None:
    store = InMemoryStore()
    client = await make_cluster(store)
    pods = [await add_pod(client, f"p{i}") for i in range(25)]
    binder = Binder(store, batch=10, clock=lambda: 0.0)
    results = await binder.bind([Binding(p, "n1") for p in pods])
    assert all(err is None for err in results.values()) and len(results) == 25
    assert binder.transactions == 3
    got = await client.get("pods", "p3", namespace="default")
    assert got["spec"]["nodeName"] == "n1"
    assert got["status"]["conditions"][-1] == {
        "type": "PodScheduled", "status": "True", "lastTransitionTime": "1970-01-01T00:00:00Z"}
    # the same object the binding subresource writes, apart from the timestamp
    other = await add_pod(client, "via-api")
    via_api = await client.create("pods", {"kind": "Binding", "metadata": {"name": "via-api"},
                                           "target": {"name": "n1"}}, namespace="default",
                                  subresource="binding")
    ours = bound_pod(other, "n1", via_api["status"]["conditions"][-1]["lastTransitionTime"])
    ours["metadata"] = {**ours["metadata"], "resourceVersion": via_api["metadata"][
        "resourceVersion"]}
    assert ours == via_api


async def test_a_conflicting_pod_fails_alone_and_nothing_binds_twice() -> None:
    store = InMemoryStore()
    client = await make_cluster(store)
    pods = [await add_pod(client, f"p{i}") for i in range(6)]
    await client.delete("pods", "p4", namespace="default")
    first = await Binder(store).bind([Binding(pods[2], "other")])
    assert first == {"/registry/pods/default/p2": None}
    results = await Binder(store).bind([Binding(p, "n1") for p in pods])
    assert isinstance(results["/registry/pods/default/p2"], Conflict)
    assert isinstance(results["/registry/pods/default/p4"], NotFound)
    assert [k for k, v in results.items() if v is None] == [
        f"/registry/pods/default/p{i}" for i in (0, 1, 3, 5)]
    assert (await client.get("pods", "p2", namespace="default"))["spec"]["nodeName"] == "other"


async def test_a_deposed_leaders_binds_are_fenced() -> None:
    store = InMemoryStore()
    client = await make_cluster(store)
    pod = await add_pod(client, "p")
    created = await store.create("/corral/leader/scheduler", b"me")
    await store.delete("/corral/leader/scheduler")
    results = await Binder(store, fence=Fence("/corral/leader/scheduler", created)).bind(
        [Binding(pod, "n1")])
    err = results["/registry/pods/default/p"]
    assert isinstance(err, Fenced) and "no longer the leader" in str(err)
    assert "nodeName" not in (await client.get("pods", "p", namespace="default"))["spec"]
