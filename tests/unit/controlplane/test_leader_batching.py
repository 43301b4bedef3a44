"""The leader's TermStore shares commits between concurrent single writes (group commit):
fewer transactions, and each write still gets its own outcome, fenced as before."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from controlplane import leader
from controlplane.leader import TermStore
from controlplane.storage import (
    AlreadyExists,
    Conflict,
    Fence,
    Fenced,
    NotFound,
    TooLarge,
    Write,
)
from controlplane.storage.forwarding import ForwardingStore
from controlplane.storage.keys import MAX_OBJECT_BYTES
from controlplane.storage.memory import InMemoryStore


class Counting(ForwardingStore):
    """InMemoryStore, counting commits and the writes in each."""

    def __init__(self) -> None:
        super().__init__(InMemoryStore())
        self.commits: list[int] = []

    async def commit(self, writes: Sequence[Write], *, fence: Fence | None = None) -> int:
        self.commits.append(len(writes))
        await asyncio.sleep(0.01)  # a Txn takes a while: later writes queue meanwhile
        return await self.inner.commit(writes, fence=fence)


async def leading() -> tuple[Counting, TermStore]:
    store = Counting()
    key = leader.leader_key("c")
    writes = TermStore(store)
    writes.resume(Fence(key, await store.inner.create(key, b"me")))
    return store, writes


@pytest.mark.asyncio
async def test_concurrent_creates_share_commits_and_each_lands() -> None:
    store, writes = await leading()
    keys = [f"/registry/pods/ns/p{i}" for i in range(20)]
    revs = await asyncio.gather(*(writes.create(k, k.encode()) for k in keys))
    assert len(store.commits) < len(keys) and sum(store.commits) == len(keys)
    for k, rev in zip(keys, revs, strict=True):
        assert await store.get(k) == (k.encode(), rev)


@pytest.mark.parametrize("bad", ["exists", "stale"])
@pytest.mark.asyncio
async def test_a_failing_write_fails_alone(bad: str) -> None:
    store, writes = await leading()
    taken = await store.inner.create("/registry/pods/ns/taken", b"old")
    ok_keys = [f"/registry/pods/ns/ok{i}" for i in range(5)]
    first = asyncio.create_task(writes.create("/registry/pods/ns/first", b"1"))
    await asyncio.sleep(0)  # out alone: the rest queue behind it and share the next
    failing = (writes.create("/registry/pods/ns/taken", b"new") if bad == "exists"
               else writes.update("/registry/pods/ns/taken", b"new", taken + 100))
    results = await asyncio.gather(failing, *(writes.create(k, b"v") for k in ok_keys),
                                   return_exceptions=True)
    await first
    assert isinstance(results[0], AlreadyExists if bad == "exists" else Conflict)
    assert all(isinstance(r, int) for r in results[1:])
    assert (await store.get("/registry/pods/ns/taken"))[0] == b"old"
    for k in ok_keys:
        assert (await store.get(k))[0] == b"v"
    assert max(store.commits) > 1  # they did share a commit


@pytest.mark.asyncio
async def test_updates_of_one_key_go_out_in_order_in_separate_commits() -> None:
    store, writes = await leading()
    rev = await writes.create("/registry/pods/ns/a", b"0")
    first = await writes.update("/registry/pods/ns/a", b"1", rev)
    stale = writes.update("/registry/pods/ns/a", b"2", rev)
    fresh = writes.update("/registry/pods/ns/a", b"3", first)
    results = await asyncio.gather(stale, fresh, return_exceptions=True)
    assert isinstance(results[0], Conflict) and isinstance(results[1], int)
    assert await store.get("/registry/pods/ns/a") == (b"3", results[1])
    assert store.commits and max(store.commits) == 1  # one key: never two in one commit


@pytest.mark.asyncio
async def test_batched_writes_are_fenced_and_refused_once_deposed() -> None:
    store, writes = await leading()
    writes.suspend()
    held = [asyncio.create_task(writes.create(f"/registry/pods/ns/x{i}", b"x"))
            for i in range(5)]
    await asyncio.sleep(0.05)
    assert not any(t.done() for t in held)
    writes.depose()
    results = await asyncio.gather(*held, return_exceptions=True)
    assert all(isinstance(r, Fenced) for r in results)
    for i in range(5):
        with pytest.raises(NotFound):
            await store.get(f"/registry/pods/ns/x{i}")


@pytest.mark.asyncio
async def test_a_write_under_another_leaders_fence_is_not_applied() -> None:
    store, writes = await leading()
    key = leader.leader_key("c")
    await store.inner.delete(key)
    await store.inner.create(key, b"someone-else")  # a new term, not ours
    late = [asyncio.create_task(writes.create(f"/registry/pods/ns/l{i}", b"x"))
            for i in range(3)]
    await asyncio.sleep(0.1)
    assert not any(t.done() for t in late)  # refused by the store, held for a verdict
    writes.depose()
    assert all(isinstance(r, Fenced)
               for r in await asyncio.gather(*late, return_exceptions=True))
    for i in range(3):
        with pytest.raises(NotFound):
            await store.get(f"/registry/pods/ns/l{i}")


@pytest.mark.asyncio
async def test_a_write_too_large_for_etcd_fails_alone() -> None:
    store, writes = await leading()
    huge = b"x" * (MAX_OBJECT_BYTES + 1)
    results = await asyncio.gather(
        writes.create("/registry/pods/ns/huge", huge),
        *(writes.create(f"/registry/pods/ns/s{i}", b"v") for i in range(4)),
        return_exceptions=True)
    assert isinstance(results[0], TooLarge)
    assert all(isinstance(r, int) for r in results[1:])
    with pytest.raises(NotFound):
        await store.get("/registry/pods/ns/huge")
