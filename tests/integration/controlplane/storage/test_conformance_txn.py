"""Conformance for multi-key commits, fences and leases: InMemoryStore and a real etcd."""

from __future__ import annotations

import asyncio
from contextlib import aclosing

import pytest

from controlplane.storage import (
    MAX_TXN_OPS,
    AlreadyExists,
    Conflict,
    EventType,
    Fence,
    Fenced,
    FencedStore,
    InvalidArgument,
    NotFound,
    Store,
    TxnFailed,
    Write,
)

pytestmark = pytest.mark.asyncio

A = "/registry/pods/ns1/a"
B = "/registry/pods/ns1/b"
C = "/registry/pods/ns1/c"
LEADER = "/corral/leader/scheduler"


async def test_commit_writes_every_key_at_one_revision(store: Store) -> None:
    ra = await store.create(A, b"a1")
    rb = await store.create(B, b"b1")
    rev = await store.commit([Write(A, b"a2", ra), Write(B, None, rb), Write(C, b"c1", 0)])
    assert await store.get(A) == (b"a2", rev)
    assert await store.get(C) == (b"c1", rev)
    with pytest.raises(NotFound):
        await store.get(B)
    assert await store.current_revision() == rev


async def test_commit_events_share_the_revision(store: Store) -> None:
    start = await store.current_revision()
    rev = await store.commit([Write(A, b"a", 0), Write(B, b"b", 0)])
    async with aclosing(store.watch("/registry/pods/", from_revision=start)) as events:
        got = [await anext(events), await anext(events)]
    assert [(e.type, e.key, e.revision) for e in got] == [
        (EventType.ADDED, A, rev), (EventType.ADDED, B, rev)]


@pytest.mark.parametrize(("setup", "write", "error"), [
    pytest.param(True, Write(A, b"x", 1), Conflict, id="stale-revision"),
    pytest.param(False, Write(A, b"x", 5), NotFound, id="update-missing"),
    pytest.param(True, Write(A, b"x", 0), AlreadyExists, id="create-existing"),
    pytest.param(False, Write(A, None, None), NotFound, id="delete-missing"),
])
async def test_a_failing_write_fails_the_commit_and_is_named(
        store: Store, setup: bool, write: Write, error: type[Exception]) -> None:
    if setup:
        await store.update(A, b"v2", await store.create(A, b"v1"))
    rb = await store.create(B, b"b1")
    before = await store.current_revision()
    with pytest.raises(TxnFailed) as info:
        await store.commit([Write(B, b"b2", rb), write])
    assert list(info.value.failures) == [A]
    assert isinstance(info.value.failures[A], error)
    assert A in str(info.value)
    assert await store.get(B) == (b"b1", rb)  # nothing written
    assert await store.current_revision() == before


async def test_conflict_names_the_current_revision(store: Store) -> None:
    r1 = await store.create(A, b"v1")
    r2 = await store.update(A, b"v2", r1)
    with pytest.raises(TxnFailed) as info:
        await store.commit([Write(A, b"v3", r1)])
    err = info.value.failures[A]
    assert isinstance(err, Conflict) and err.current_revision == r2


@pytest.mark.parametrize("writes", [
    pytest.param([], id="empty"),
    pytest.param([Write(A, b"1", 0), Write(A, b"2", 0)], id="duplicate-key"),
    pytest.param([Write(f"/registry/pods/ns1/p{i}", b"x", 0) for i in range(MAX_TXN_OPS)],
                 id="too-many"),
])
async def test_bad_commits_are_invalid(store: Store, writes: list[Write]) -> None:
    with pytest.raises(InvalidArgument, match="commit"):
        await store.commit(writes, fence=Fence(LEADER, 1))


async def test_fenced_commit_lands_while_the_leader_key_holds(store: Store) -> None:
    created = await store.create(LEADER, b"me")
    await store.update(LEADER, b"me, still", created)  # a modification keeps the fence
    rev = await store.commit([Write(A, b"a", 0)], fence=Fence(LEADER, created))
    assert await store.get(A) == (b"a", rev)


@pytest.mark.parametrize("recreate", [
    pytest.param(False, id="key-gone"), pytest.param(True, id="another-leader"),
])
async def test_fenced_commit_fails_once_the_leader_key_changed(store: Store,
                                                               recreate: bool) -> None:
    created = await store.create(LEADER, b"me")
    await store.delete(LEADER)
    now = await store.create(LEADER, b"other") if recreate else 0
    fenced = FencedStore(store, Fence(LEADER, created))
    for write in (fenced.create(A, b"late"), fenced.commit([Write(A, b"late", 0)])):
        with pytest.raises(Fenced, match="no longer the leader") as info:
            await write
        assert (info.value.expected_revision, info.value.current_revision) == (created, now)
    with pytest.raises(NotFound):
        await store.get(A)


async def test_fenced_store_single_writes_raise_the_plain_errors(store: Store) -> None:
    fenced = FencedStore(store, Fence(LEADER, await store.create(LEADER, b"me")))
    r1 = await fenced.create(A, b"v1")
    with pytest.raises(AlreadyExists, match=A):
        await fenced.create(A, b"again")
    r2 = await fenced.update(A, b"v2", r1)
    with pytest.raises(Conflict):
        await fenced.update(A, b"v3", r1)
    await fenced.delete(A, r2)
    with pytest.raises(NotFound, match=A):
        await fenced.delete(A)


async def test_lease_keeps_its_key_while_renewed_and_deletes_it_on_expiry(
        store: Store) -> None:
    lease = await store.grant_lease(2)
    await store.commit([Write(LEADER, b"me", 0, lease=lease)])
    start = await store.current_revision()
    for _ in range(3):  # 3 s of renewals outlive the 2 s ttl
        await asyncio.sleep(1)
        assert await store.keep_alive(lease) == 2
    assert (await store.get(LEADER))[0] == b"me"
    async with aclosing(store.watch("/corral/leader/", from_revision=start)) as events:
        async with asyncio.timeout(6):
            ev = await anext(events)
            while ev.type is EventType.BOOKMARK:
                ev = await anext(events)
    assert (ev.type, ev.key) == (EventType.DELETED, LEADER)
    with pytest.raises(NotFound):
        await store.keep_alive(lease)


async def test_revoked_lease_deletes_its_keys(store: Store) -> None:
    lease = await store.grant_lease(30)
    await store.commit([Write(LEADER, b"me", 0, lease=lease)])
    await store.revoke_lease(lease)
    with pytest.raises(NotFound):
        await store.get(LEADER)
    with pytest.raises(NotFound):
        await store.keep_alive(lease)
    await store.revoke_lease(lease)  # already gone: no error
    with pytest.raises(NotFound):
        await store.commit([Write(LEADER, b"me", 0, lease=lease)])
