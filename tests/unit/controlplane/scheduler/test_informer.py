"""PodFeed over InMemoryStore: pods as the API server decodes them; the scheduler's own
binds known again by their bytes (not decoded), everything else decoded; a failed bind
is forgotten; the memory is a shortcut only (what it yields never depends on it)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from api import jsoncodec
from controlplane.scheduler.binder import Binder, Binding
from controlplane.scheduler.informer import PodFeed
from controlplane.storage import Conflict, InMemoryStore
from tests.unit.controlplane.scheduler.service_harness import add_pod, make_cluster

pytestmark = pytest.mark.asyncio
KEY = "/registry/pods/default/"


async def _events(feed: PodFeed, rev: int, count: int) -> list[tuple[str, Any, int]]:
    out: list[tuple[str, Any, int]] = []
    stream: AsyncIterator[tuple[str, Any, int]] = feed.watch(rev)
    async with contextlib.aclosing(stream):  # type: ignore[type-var]
        async with asyncio.timeout(5):
            async for ev in stream:
                if ev[0] != "BOOKMARK":
                    out.append(ev)
                if len(out) == count:
                    break
    return out


async def test_list_decodes_like_the_api_server() -> None:
    store = InMemoryStore()
    client = await make_cluster(store)
    made = [await add_pod(client, f"p{i}") for i in range(3)]
    pods, rev = await PodFeed(store).list()
    assert pods == made  # resourceVersion = each pod's mod revision
    assert rev == await store.current_revision()


@pytest.mark.parametrize(("tamper", "recognised", "decoded"), [
    pytest.param(False, 1, 0, id="own-bind-recognised"),
    pytest.param(True, 0, 1, id="other-bytes-decoded"),
])
async def test_the_watch_knows_its_own_binds(tamper: bool, recognised: int,
                                             decoded: int) -> None:
    store = InMemoryStore()
    client = await make_cluster(store)
    pod = await add_pod(client, "p")
    feed = PodFeed(store)
    rev = await store.current_revision()
    results = await Binder(store, clock=lambda: 0.0, expect=feed).bind([Binding(pod, "n1")])
    assert results == {KEY + "p": None}
    if tamper:  # the bytes stored are not the ones expected (say, another writer's)
        feed.expect(KEY + "p", b"{}", {"metadata": {}})
    [(kind, got, at)] = await _events(feed, rev, 1)
    assert (kind, feed.recognised, feed.decoded) == ("MODIFIED", recognised, decoded)
    stored = await client.get("pods", "p", namespace="default")
    assert got == stored and at == int(stored["metadata"]["resourceVersion"])
    assert feed.expecting() == 0  # seen once: forgotten


async def test_a_failed_bind_is_forgotten_and_later_events_decoded() -> None:
    store = InMemoryStore()
    client = await make_cluster(store)
    pod = await add_pod(client, "p")
    await client.patch("pods", "p", b'{"metadata":{"labels":{"a":"b"}}}',
                       patch_type="application/merge-patch+json", namespace="default")
    feed = PodFeed(store)
    rev = await store.current_revision()
    results = await Binder(store, expect=feed).bind([Binding(pod, "n1")])  # stale revision
    assert isinstance(results[KEY + "p"], Conflict)
    assert feed.expecting() == 0
    await client.delete("pods", "p", namespace="default")
    [(kind, got, _)] = await _events(feed, rev, 1)
    assert kind == "DELETED" and got["metadata"]["labels"] == {"a": "b"}
    assert (feed.recognised, feed.decoded) == (0, 1)


async def test_the_memory_is_bounded() -> None:
    feed = PodFeed(InMemoryStore(), limit=3)
    for i in range(7):
        feed.expect(f"{KEY}p{i}", jsoncodec.dumps({"i": i}), {"i": i})
    assert 1 <= feed.expecting() <= 3
