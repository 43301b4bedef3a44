"""InMemoryStore details beyond the conformance suite (which runs it in integration/)."""

from __future__ import annotations

import asyncio

import pytest

from controlplane.storage import InMemoryStore, NotFound

pytestmark = pytest.mark.asyncio


async def test_compaction_keeps_the_latest_version_and_drops_deleted_keys() -> None:
    store = InMemoryStore()
    r1 = await store.create("/registry/pods/ns/a", b"a1")
    await store.update("/registry/pods/ns/a", b"a2", r1)
    await store.create("/registry/pods/ns/b", b"b")
    r4 = await store.delete("/registry/pods/ns/b")
    await store.compact(r4)
    assert await store.get("/registry/pods/ns/a") == (b"a2", r1 + 1)
    with pytest.raises(NotFound):
        await store.get("/registry/pods/ns/b")
    assert "/registry/pods/ns/b" not in store._versions
    assert len(store._versions["/registry/pods/ns/a"]) == 1


async def test_closed_watch_unsubscribes() -> None:
    store = InMemoryStore()
    watch = store.watch("/registry/pods/", from_revision=0)
    await store.create("/registry/pods/ns/a", b"a")
    pending = asyncio.ensure_future(anext(watch))
    await asyncio.sleep(0)  # the generator starts: "now" is after a
    await store.create("/registry/pods/ns/b", b"b")
    assert (await asyncio.wait_for(pending, 2)).key == "/registry/pods/ns/b"
    assert len(store._watchers) == 1
    await watch.aclose()
    assert not store._watchers
