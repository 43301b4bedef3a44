"""Garbage collector and namespace controller: their pure parts table-driven, and a run
over a LocalClient on the in-memory store (configmaps owning configmaps)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio

from api import errors as e
from controlplane.apiserver.objects import ObjectService
from controlplane.controllers.controller import ControllerManager
from controlplane.controllers.garbagecollector import (
    GarbageCollector,
    blocking,
    parse_key,
)
from controlplane.controllers.namespace import (
    NamespaceController,
    namespaced_resources,
    needs_emptying,
)
from controlplane.local import LocalClient
from controlplane.storage import InMemoryStore

Obj = dict[str, Any]


def dep(name: str, refs: list[Obj]) -> Obj:
    return {"metadata": {"name": name, "ownerReferences": refs}}


@pytest.mark.parametrize(("deps", "want"), [
    pytest.param([dep("a", [{"uid": "o", "blockOwnerDeletion": True}])], ["a"],
                 id="blocking"),
    pytest.param([dep("a", [{"uid": "o"}])], [], id="not-blocking"),
    pytest.param([dep("a", [{"uid": "x", "blockOwnerDeletion": True}, {"uid": "o"}])], [],
                 id="blocks-another-owner"),
])
def test_blocking_dependents(deps: list[Obj], want: list[str]) -> None:
    assert [d["metadata"]["name"] for d in blocking(deps, "o")] == want


@pytest.mark.parametrize(("ns", "want"), [
    pytest.param({"metadata": {}, "spec": {"finalizers": ["kubernetes"]}}, False,
                 id="active"),
    pytest.param({"metadata": {"deletionTimestamp": "t"},
                  "spec": {"finalizers": ["kubernetes"]}}, True, id="terminating"),
    pytest.param({"metadata": {"deletionTimestamp": "t"}, "spec": {"finalizers": []}},
                 False, id="already-emptied"),
])
def test_needs_emptying(ns: Obj, want: bool) -> None:
    assert needs_emptying(ns) is want


def test_namespaced_resources_and_keys() -> None:
    res = namespaced_resources()
    assert {"pods", "deployments", "configmaps", "events"} <= set(res)
    assert "namespaces" not in res and "nodes" not in res
    assert parse_key("pods:default/web-1") == ("pods", "default", "web-1")


async def until(pred: Callable[[], Awaitable[bool]], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not await pred():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest_asyncio.fixture
async def client() -> AsyncIterator[LocalClient]:
    objects = ObjectService(InMemoryStore())
    c = LocalClient(objects)
    for ns in ("default", "team"):
        await c.create("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                      "metadata": {"name": ns}})
    mgr = ControllerManager(c, [GarbageCollector, NamespaceController])
    await mgr.start()
    yield c
    await mgr.stop()
    await objects.close()


def cm(name: str, owner: Obj | None = None, block: bool = False) -> Obj:
    meta: Obj = {"name": name}
    if owner is not None:
        meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap",
                                    "name": owner["metadata"]["name"],
                                    "uid": owner["metadata"]["uid"],
                                    "blockOwnerDeletion": block}]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {}}


async def exists(c: LocalClient, name: str, ns: str = "default") -> bool:
    try:
        await c.get("configmaps", name, namespace=ns)
    except e.APIError as err:
        assert err.reason is e.Reason.NOT_FOUND
        return False
    return True


@pytest.mark.asyncio
@pytest.mark.parametrize(("policy", "child_survives"), [
    pytest.param("Background", False, id="background"),
    pytest.param("Foreground", False, id="foreground"),
    pytest.param("Orphan", True, id="orphan"),
])
async def test_owner_deletion_policies(client: LocalClient, policy: str,
                                       child_survives: bool) -> None:
    owner = await client.create("configmaps", cm("owner"), namespace="default")
    await client.create("configmaps", cm("child", owner, block=True), namespace="default")
    await client.delete("configmaps", "owner", namespace="default", propagation=policy)

    async def settled() -> bool:
        return not await exists(client, "owner") and (
            await exists(client, "child")) == child_survives
    await until(settled)
    if child_survives:
        child = await client.get("configmaps", "child", namespace="default")
        assert not child["metadata"].get("ownerReferences")


@pytest.mark.asyncio
async def test_dangling_reference_is_dropped_when_another_owner_remains(
        client: LocalClient) -> None:
    a = await client.create("configmaps", cm("a"), namespace="default")
    b = await client.create("configmaps", cm("b"), namespace="default")
    child = cm("child", a)
    child["metadata"]["ownerReferences"] += cm("x", b)["metadata"]["ownerReferences"]
    await client.create("configmaps", child, namespace="default")
    await client.delete("configmaps", "a", namespace="default")

    async def one_ref() -> bool:
        cur = await client.get("configmaps", "child", namespace="default")
        return [r["name"] for r in cur["metadata"]["ownerReferences"]] == ["b"]
    await until(one_ref)


@pytest.mark.asyncio
async def test_namespace_is_emptied_then_removed(client: LocalClient) -> None:
    await client.create("configmaps", cm("elsewhere"), namespace="default")
    for n in ("one", "two"):
        await client.create("configmaps", cm(n), namespace="team")
    await client.delete("namespaces", "team")

    async def gone() -> bool:
        try:
            await client.get("namespaces", "team")
        except e.APIError as err:
            return err.reason is e.Reason.NOT_FOUND
        return False
    await until(gone)
    assert (await client.list("configmaps", namespace="team"))["items"] == []
    assert await exists(client, "elsewhere", "default")  # other namespaces untouched
