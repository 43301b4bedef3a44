"""The watch cache: one store watch fanned out, replay from memory, slow watchers ended,
old revisions served by the store (and Gone after compaction)."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from api import errors as e
from controlplane.apiserver import watchcache
from controlplane.apiserver.objects import ObjectService
from controlplane.apiserver.resources import RESOURCES
from controlplane.storage import InMemoryStore

pytestmark = pytest.mark.asyncio
CMS, NS = RESOURCES["configmaps"], RESOURCES["namespaces"]


def cm(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": labels}, "data": {"k": name}}


@pytest_asyncio.fixture
async def svc() -> AsyncIterator[ObjectService]:
    s = ObjectService(InMemoryStore())
    for ns in ("a", "b"):
        await s.create(NS, {"apiVersion": "v1", "kind": "Namespace",
                            "metadata": {"name": ns}})
    try:
        yield s
    finally:  # even when a test fails: no cache task may outlive its loop
        await s.close()


async def take(it: Any, n: int) -> list[tuple[str, str]]:
    out = []
    try:
        async with asyncio.timeout(5):
            async for ev in it:
                out.append((ev["type"], ev["object"]["metadata"]["name"]))
                if len(out) == n:
                    break
    finally:
        await it.aclose()
    return out


async def test_one_store_watch_serves_many_watchers(svc: ObjectService) -> None:
    streams = [svc.watch(CMS) for _ in range(50)]
    tasks = [asyncio.create_task(take(s, 2)) for s in streams]
    await asyncio.sleep(0.05)
    await svc.create(CMS, cm("x"), namespace="a")
    await svc.delete(CMS, namespace="a", name="x")
    results = await asyncio.gather(*tasks)
    assert all(r == [("ADDED", "x"), ("DELETED", "x")] for r in results)
    # one store watch per resource, not fifty: the configmaps', and the namespaces' that
    # the creates' namespace check reads (nsview.py)
    assert sorted(svc._caches) == ["configmaps", "namespaces"]
    store = svc.store
    assert isinstance(store, InMemoryStore)
    assert len(store._watchers) == 2


async def test_replay_from_memory_then_live_without_gaps_or_duplicates(svc: ObjectService) -> None:
    await svc._cache(CMS)
    first = await svc.create(CMS, cm("one"), namespace="a")
    await svc.create(CMS, cm("two"), namespace="a")
    stream = svc.watch(CMS, resource_version=first["metadata"]["resourceVersion"])
    task = asyncio.create_task(take(stream, 2))
    await asyncio.sleep(0.05)
    await svc.create(CMS, cm("three"), namespace="a")
    assert await task == [("ADDED", "two"), ("ADDED", "three")]


async def test_namespace_and_selector_filters_with_enter_and_leave(svc: ObjectService) -> None:
    stream = svc.watch(CMS, namespace="a", label_selector="tier=web")
    task = asyncio.create_task(take(stream, 3))
    await asyncio.sleep(0.05)
    await svc.create(CMS, cm("other-ns", tier="web"), namespace="b")
    made = await svc.create(CMS, cm("w", tier="web"), namespace="a")
    await svc.create(CMS, cm("db", tier="db"), namespace="a")
    made["metadata"]["labels"] = {"tier": "db"}
    moved = await svc.update(CMS, made, namespace="a", name="w")
    moved["metadata"]["labels"] = {"tier": "web"}
    await svc.update(CMS, moved, namespace="a", name="w")
    assert await task == [("ADDED", "w"), ("DELETED", "w"), ("ADDED", "w")]


async def test_events_carry_the_encoded_object_once(svc: ObjectService) -> None:
    s1, s2 = svc.watch(CMS), svc.watch(CMS)
    got: list[Any] = []

    async def one(s: Any) -> None:
        async for ev in s:
            got.append(ev)
            return

    tasks = [asyncio.create_task(one(s)) for s in (s1, s2)]
    await asyncio.sleep(0.05)
    made = await svc.create(CMS, cm("x"), namespace="a")
    await asyncio.gather(*tasks)
    assert got[0]["raw"] is got[1]["raw"]
    assert b'"resourceVersion":"%s"' % made["metadata"]["resourceVersion"].encode() in \
        got[0]["raw"]


async def test_slow_watcher_is_ended(svc: ObjectService,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watchcache, "QUEUE_LIMIT", 3)
    stream = svc.watch(CMS)
    first = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0.05)
    await svc.create(CMS, cm("c0"), namespace="a")
    assert (await first)["object"]["metadata"]["name"] == "c0"
    for i in range(1, 8):  # the watcher reads nothing while these arrive
        await svc.create(CMS, cm(f"c{i}"), namespace="a")
        await asyncio.sleep(0.01)
    async with asyncio.timeout(5):
        rest = [ev["object"]["metadata"]["name"] async for ev in stream]
    assert rest == ["c1", "c2", "c3"]  # cut off at the limit, not buffered without bound


async def test_old_revision_goes_to_the_store_and_may_be_gone(svc: ObjectService) -> None:
    made = await svc.create(CMS, cm("old"), namespace="a")
    old_rv = int(made["metadata"]["resourceVersion"])
    await svc._cache(CMS)  # the cache starts after that write: it cannot replay it
    for i in range(3):
        await svc.create(CMS, cm(f"n{i}"), namespace="a")
    events = await take(svc.watch(CMS, resource_version=str(old_rv - 1)), 2)
    assert events == [("ADDED", "old"), ("ADDED", "n0")]
    # from old_rv on, every change is in the cache's ring: served from memory even
    # after etcd compacts (as Kubernetes' watch cache does); before it, only etcd could
    # answer, and it has forgotten
    await svc.store.compact(await svc.store.current_revision())
    assert await take(svc.watch(CMS, resource_version=str(old_rv)), 1) == [("ADDED", "n0")]
    with pytest.raises(e.APIError) as info:
        await take(svc.watch(CMS, resource_version=str(old_rv - 1)), 1)
    assert info.value.reason is e.Reason.GONE


def _ev(kind: str, key: str, value: bytes, revision: int,
        prev: bytes | None = None) -> Any:
    from controlplane.storage.interface import Event, EventType
    return Event(EventType(kind), key, value, revision, prev)


@pytest.mark.parametrize(("prev_bytes", "reused"), [
    pytest.param(b'{"metadata":{"labels":{"a":"1"}}}', True, id="the-last-value-seen"),
    pytest.param(b'{"metadata":{"labels":{"a":"0"}}}', False, id="a-change-not-seen"),
])
async def test_the_value_before_a_change_is_decoded_only_when_not_seen(
        prev_bytes: bytes, reused: bool) -> None:
    latest: watchcache.Latest = collections.OrderedDict()
    first = watchcache.cached(_ev("ADDED", "/registry/configmaps/a/x",
                                  b'{"metadata":{"labels":{"a":"1"}}}', 5), CMS, latest)
    second = watchcache.cached(_ev("MODIFIED", "/registry/configmaps/a/x",
                                   b'{"metadata":{"labels":{"a":"2"}}}', 7, prev_bytes),
                               CMS, latest)
    assert (second.prev is first.obj) is reused
    assert second.prev is not None
    assert second.prev["metadata"]["labels"] == {"a": "1" if reused else "0"}
    gone = watchcache.cached(_ev("DELETED", "/registry/configmaps/a/x",
                                 b'{"metadata":{"labels":{"a":"2"}}}', 8,
                                 b'{"metadata":{"labels":{"a":"2"}}}'), CMS, latest)
    assert gone.prev is second.obj and "/registry/configmaps/a/x" not in latest


async def test_the_latest_values_are_bounded() -> None:
    latest: watchcache.Latest = collections.OrderedDict()
    for i in range(watchcache.RING + 5):
        watchcache.cached(_ev("ADDED", f"/registry/configmaps/a/c{i}", b"{}", i + 2), CMS,
                          latest)
    assert len(latest) == watchcache.RING
    assert "/registry/configmaps/a/c0" not in latest
    assert f"/registry/configmaps/a/c{watchcache.RING + 4}" in latest


async def test_the_latest_values_are_kept_only_while_a_selector_watcher_is_there(
        svc: ObjectService) -> None:
    cache = await svc._cache(CMS)
    assert cache is not None
    plain = svc.watch(CMS)
    task = asyncio.create_task(take(plain, 2))
    await asyncio.sleep(0.05)
    await svc.create(CMS, cm("x", tier="web"), namespace="a")
    await svc.create(CMS, cm("y", tier="web"), namespace="a")
    assert await task == [("ADDED", "x"), ("ADDED", "y")]
    assert not cache.latest and not cache.selective  # nobody reads them: not kept
    selected = svc.watch(CMS, label_selector="tier=web")
    sel_task = asyncio.create_task(take(selected, 1))
    await asyncio.sleep(0.05)
    await svc.create(CMS, cm("z", tier="web"), namespace="a")
    assert await sel_task == [("ADDED", "z")]
    assert set(cache.latest) == {"/registry/configmaps/a/z"}  # kept while it watched
    async with asyncio.timeout(5):  # (the cache's generator is closed by the loop)
        while cache.selective:
            await asyncio.sleep(0.01)
    assert not cache.latest  # emptied when the last one left


@pytest.mark.parametrize("joins", [
    pytest.param("before", id="watching-while-it-moves"),
    pytest.param("after-creation", id="joined-after-its-last-change-then-it-moves"),
    pytest.param("replay", id="replayed-from-the-ring"),
])
async def test_an_object_leaving_the_selector_is_deleted_for_the_watcher(
        svc: ObjectService, joins: str) -> None:
    """The value before each change decides (Kubernetes' filtered watch): decoded when
    asked for, whether or not the cache kept the last value of the key."""
    cache = await svc._cache(CMS)
    assert cache is not None
    start = str(cache.revision)
    task = None
    if joins == "before":
        task = asyncio.create_task(take(svc.watch(CMS, label_selector="tier=web"), 3))
        await asyncio.sleep(0.05)
    made = await svc.create(CMS, cm("w", tier="web"), namespace="a")
    if joins == "after-creation":
        rv = made["metadata"]["resourceVersion"]
        task = asyncio.create_task(take(svc.watch(CMS, label_selector="tier=web",
                                                  resource_version=rv), 2))
        await asyncio.sleep(0.05)
        assert cache.selective == 1 and not cache.latest  # x's value was not kept
    made["metadata"]["labels"] = {"tier": "db"}
    moved = await svc.update(CMS, made, namespace="a", name="w")
    moved["metadata"]["labels"] = {"tier": "web"}
    await svc.update(CMS, moved, namespace="a", name="w")
    if joins == "replay":
        assert not cache.latest  # no selector watcher saw these changes
        task = asyncio.create_task(take(svc.watch(CMS, label_selector="tier=web",
                                                  resource_version=start), 3))
    assert task is not None
    want = [("ADDED", "w"), ("DELETED", "w"), ("ADDED", "w")]
    assert await task == (want[1:] if joins == "after-creation" else want)
