"""The namespace check of every create reads the watch cache's view of namespaces
(nsview.py), not a 2 s timer: a namespace marked for deletion refuses creates from the next
one on in the same API server, and within the watch's delay in another; a namespace the
view has not seen yet is read from the store; the view spares the store a read per create.

The clock is frozen, so a timer never expires: each test below fails with the timer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio

from api import errors as e
from controlplane.apiserver.objects import ObjectService
from controlplane.apiserver.resources import RESOURCES
from controlplane.storage import InMemoryStore
from controlplane.storage.forwarding import ForwardingStore
from controlplane.storage.keys import object_key

pytestmark = pytest.mark.asyncio

NS, CMS = RESOURCES["namespaces"], RESOURCES["configmaps"]
FROZEN: Callable[[], float] = lambda: 1_800_000_000.0  # noqa: E731


class CountingStore(ForwardingStore):
    """Counts the reads of namespace keys."""

    def __init__(self, inner: InMemoryStore) -> None:
        super().__init__(inner)
        self.namespace_reads = 0

    async def get(self, key: str) -> tuple[bytes, int]:
        if key.startswith("/registry/namespaces/"):
            self.namespace_reads += 1
        return await super().get(key)


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def cm(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}


@pytest_asyncio.fixture
async def store() -> CountingStore:
    return CountingStore(InMemoryStore())


@pytest_asyncio.fixture
async def servers(store: CountingStore) -> AsyncIterator[tuple[ObjectService, ObjectService]]:
    """Two API servers on one store."""
    a, b = ObjectService(store, clock=FROZEN), ObjectService(store, clock=FROZEN)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def refused(svc: ObjectService, ns: str, name: str) -> e.Reason | None:
    try:
        await svc.create(CMS, cm(name), namespace=ns)
    except e.APIError as err:
        return err.reason
    return None


@pytest.mark.parametrize("watch_cache", [
    pytest.param(True, id="watch-cache"), pytest.param(False, id="no-watch-cache")])
async def test_a_namespace_marked_for_deletion_refuses_the_next_create(
        store: CountingStore, watch_cache: bool) -> None:
    svc = ObjectService(store, clock=FROZEN, watch_cache=watch_cache)
    try:
        await svc.create(NS, namespace("old"))
        assert await refused(svc, "old", "before") is None  # the namespace is known now
        await svc.delete(NS, name="old")
        assert await refused(svc, "old", "after") is e.Reason.FORBIDDEN
    finally:
        await svc.close()


async def slipped_in(svc: ObjectService, ns: str) -> tuple[int, e.Reason]:
    """Creates in NS every 10 ms until one is refused (at most 1 s): how many got in."""
    async with asyncio.timeout(1):
        i = 0
        while (why := await refused(svc, ns, f"late{i}")) is None:
            i += 1
            await asyncio.sleep(0.01)
    return i, why


async def test_another_servers_deletion_is_seen_within_the_watch_delay(
        servers: tuple[ObjectService, ObjectService]) -> None:
    a, b = servers
    await a.create(NS, namespace("old"))
    for i in range(3):  # b knows the namespace, from its own checks
        await b.create(CMS, cm(f"c{i}"), namespace="old")
    await a.delete(NS, name="old")
    got_in, why = await slipped_in(b, "old")
    assert why is e.Reason.FORBIDDEN and got_in <= 5, got_in


async def test_a_namespace_made_elsewhere_a_moment_ago_is_read_from_the_store(
        servers: tuple[ObjectService, ObjectService]) -> None:
    a, b = servers
    await b.create(NS, namespace("first"))  # b's view runs
    await a.create(NS, namespace("new"))
    assert await refused(b, "new", "x") is None  # before or after b's view has it
    assert await refused(b, "missing", "x") is e.Reason.NOT_FOUND


async def test_a_namespace_removed_from_the_store_is_not_found(
        store: CountingStore, servers: tuple[ObjectService, ObjectService]) -> None:
    a, _ = servers
    await a.create(NS, namespace("gone"))
    assert await refused(a, "gone", "x") is None
    await store.delete(object_key("namespaces", "gone"))  # by hand, in etcd
    got_in, why = await slipped_in(a, "gone")
    assert why is e.Reason.NOT_FOUND and got_in <= 5, got_in


async def test_the_view_spares_the_store_a_read_per_create(
        store: CountingStore, servers: tuple[ObjectService, ObjectService]) -> None:
    a, _ = servers
    await a.create(NS, namespace("busy"))
    reads = store.namespace_reads
    for i in range(20):
        await a.create(CMS, cm(f"c{i}"), namespace="busy")
    assert store.namespace_reads - reads <= 1
