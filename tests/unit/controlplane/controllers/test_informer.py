"""The informer's cache against a LocalClient over the in-memory store: it matches a
fresh list after every change, indexes by owner, and re-lists after compaction."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from controlplane.apiserver.objects import ObjectService
from controlplane.controllers.informer import Handler, Informer, Informers
from controlplane.local import LocalClient
from controlplane.storage import InMemoryStore

pytestmark = pytest.mark.asyncio
Obj = dict[str, Any]


def cm(name: str, value: str = "1", owner: str = "") -> Obj:
    meta: Obj = {"name": name}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap", "name": "o",
                                    "uid": owner}]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"v": value}}


@pytest_asyncio.fixture(params=[True, False], ids=["watch-cache", "direct-watch"])
async def env(request: pytest.FixtureRequest) -> AsyncIterator[
        tuple[InMemoryStore, LocalClient]]:
    store = InMemoryStore()
    objects = ObjectService(store, watch_cache=request.param)
    client = LocalClient(objects)
    await client.create("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                       "metadata": {"name": "default"}})
    yield store, client
    await objects.close()


async def consistent(inf: Informer, client: LocalClient, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        listed = await client.list("configmaps")
        want = {f"{o['metadata']['namespace']}/{o['metadata']['name']}":
                o["metadata"]["resourceVersion"] for o in listed["items"]}
        have = {k: o["metadata"]["resourceVersion"] for k, o in inf.items.items()}
        if want == have:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"cache {have} != list {want}")
        await asyncio.sleep(0.01)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def handler(self) -> Handler:
        return Handler(on_add=lambda o: self.events.append(("add", o["metadata"]["name"])),
                       on_update=lambda o, n: self.events.append(
                           ("update", n["metadata"]["name"])),
                       on_delete=lambda o: self.events.append(
                           ("delete", o["metadata"]["name"])))


async def test_cache_follows_creates_updates_deletes(
        env: tuple[InMemoryStore, LocalClient]) -> None:
    _, client = env
    await client.create("configmaps", cm("before"), namespace="default")
    inf = Informer(client, "configmaps")
    rec = Recorder()
    inf.add_handler(rec.handler())
    inf.start()
    try:
        await asyncio.wait_for(inf.wait_synced(), 2)
        assert inf.has_synced and inf.get("default/before") is not None
        a = await client.create("configmaps", cm("a", owner="u1"), namespace="default")
        await client.create("configmaps", cm("b", owner="u1"), namespace="default")
        a["data"] = {"v": "2"}
        await client.update("configmaps", a, namespace="default")
        await client.delete("configmaps", "before", namespace="default")
        await consistent(inf, client)
        assert [o["metadata"]["name"] for o in inf.by_index("owner", "u1")] == ["a", "b"]
        assert rec.events == [("add", "before"), ("add", "a"), ("add", "b"),
                              ("update", "a"), ("delete", "before")]
        await client.delete("configmaps", "a", namespace="default")
        await consistent(inf, client)
        assert [o["metadata"]["name"] for o in inf.by_index("owner", "u1")] == ["b"]
    finally:
        await inf.stop()


async def test_relists_after_compaction_and_reports_the_difference(
        env: tuple[InMemoryStore, LocalClient]) -> None:
    store, client = env
    for n in ("keep", "change", "drop"):
        await client.create("configmaps", cm(n), namespace="default")
    inf = Informer(client, "configmaps")
    rec = Recorder()
    inf.add_handler(rec.handler())
    inf.start()
    await asyncio.wait_for(inf.wait_synced(), 2)
    await consistent(inf, client)
    await inf.stop()  # missed while stopped:
    change = await client.get("configmaps", "change", namespace="default")
    change["data"] = {"v": "9"}
    await client.update("configmaps", change, namespace="default")
    await client.delete("configmaps", "drop", namespace="default")
    await client.create("configmaps", cm("new"), namespace="default")
    await store.compact(await store.current_revision())
    rec.events.clear()
    inf.start()  # resumes from its old resourceVersion: Gone for a direct watch
    try:
        await consistent(inf, client)
        assert sorted(rec.events) == [("add", "new"), ("delete", "drop"),
                                      ("update", "change")]
        assert inf.get("default/change")["data"] == {"v": "9"}  # type: ignore[index]
        # a direct watch from a compacted revision is Gone: the informer listed again
        # (the watch cache still holds those events in memory and replays them)
        assert inf.relists == (1 if client.objects._watch_cache else 2)
    finally:
        await inf.stop()


async def test_shared_informers_hand_out_one_per_resource(
        env: tuple[InMemoryStore, LocalClient]) -> None:
    _, client = env
    infs = Informers(client)
    assert infs.get("pods") is infs.get("pods")
    assert infs.get("pods") is not infs.get("configmaps")
    infs.start()
    try:
        await asyncio.wait_for(infs.wait_synced(), 2)
        assert infs.get("pods").has_synced and infs.get("configmaps").has_synced
    finally:
        await infs.stop()


async def test_handler_added_late_sees_cached_objects_as_adds(
        env: tuple[InMemoryStore, LocalClient]) -> None:
    _, client = env
    await client.create("configmaps", cm("x"), namespace="default")
    inf = Informer(client, "configmaps")
    inf.start()
    try:
        await asyncio.wait_for(inf.wait_synced(), 2)
        rec = Recorder()
        inf.add_handler(rec.handler())
        assert rec.events == [("add", "x")]
    finally:
        await inf.stop()
