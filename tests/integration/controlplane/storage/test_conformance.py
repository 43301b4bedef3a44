"""The Store conformance suite: every test runs against InMemoryStore and a real etcd."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing

import pytest

from controlplane.storage import (
    MAX_OBJECT_BYTES,
    AlreadyExists,
    Conflict,
    Event,
    EventType,
    Gone,
    InvalidArgument,
    NotFound,
    Store,
    TooLarge,
)

pytestmark = pytest.mark.asyncio

A = "/registry/pods/ns1/a"
B = "/registry/pods/ns1/b"


async def next_events(events: AsyncIterator[Event], n: int, *, skip_bookmarks: bool = True,
                      timeout: float = 5) -> list[Event]:
    got: list[Event] = []
    async with asyncio.timeout(timeout):
        while len(got) < n:
            ev = await anext(events)
            if not (skip_bookmarks and ev.type is EventType.BOOKMARK):
                got.append(ev)
    return got


async def test_create_get_update_delete(store: Store) -> None:
    r1 = await store.create(A, b"v1")
    assert await store.get(A) == (b"v1", r1)
    r2 = await store.update(A, b"v2", r1)
    assert r2 > r1
    assert await store.get(A) == (b"v2", r2)
    r3 = await store.delete(A)
    assert r3 > r2
    assert await store.current_revision() == r3
    with pytest.raises(NotFound, match=A):
        await store.get(A)


async def test_create_existing_key_is_already_exists(store: Store) -> None:
    rev = await store.create(A, b"v1")
    with pytest.raises(AlreadyExists, match=A):
        await store.create(A, b"v2")
    assert await store.get(A) == (b"v1", rev)


async def test_create_after_delete_is_a_new_object(store: Store) -> None:
    await store.delete(A, await store.create(A, b"v1"))
    rev = await store.create(A, b"v2")
    assert await store.get(A) == (b"v2", rev)


Op = Callable[[Store], Awaitable[object]]


@pytest.mark.parametrize("op", [
    pytest.param(lambda s: s.get(A), id="get"),
    pytest.param(lambda s: s.update(A, b"x", 2), id="update"),
    pytest.param(lambda s: s.delete(A), id="delete"),
    pytest.param(lambda s: s.delete(A, 2), id="delete-cas"),
])
async def test_missing_key_is_not_found(store: Store, op: Op) -> None:
    await store.create(B, b"other")
    with pytest.raises(NotFound, match=A):
        await op(store)


@pytest.mark.parametrize("write", [
    pytest.param(lambda s, rev: s.update(A, b"late", rev), id="update"),
    pytest.param(lambda s, rev: s.delete(A, rev), id="delete"),
])
async def test_stale_revision_is_conflict_with_current_revision(
        store: Store, write: Callable[[Store, int], Awaitable[int]]) -> None:
    r1 = await store.create(A, b"v1")
    r2 = await store.update(A, b"v2", r1)
    with pytest.raises(Conflict) as info:
        await write(store, r1)
    assert (info.value.current_revision, info.value.expected_revision) == (r2, r1)
    assert f"current resourceVersion is {r2}" in str(info.value)
    assert await store.get(A) == (b"v2", r2)
    await write(store, r2)  # the current revision wins


async def test_list_prefix_isolation(store: Store) -> None:
    for key in ["/registry/pods/ns1/a", "/registry/pods/ns1/b", "/registry/pods/ns10/a",
                "/registry/pods/ns1", "/registry/pods/ns0/z", "/registry/podsx/ns1/a"]:
        await store.create(key, key.encode())
    items, _, token = await store.list("/registry/pods/ns1/")
    assert [i.key for i in items] == ["/registry/pods/ns1/a", "/registry/pods/ns1/b"]
    assert [i.value for i in items] == [b"/registry/pods/ns1/a", b"/registry/pods/ns1/b"]
    assert token is None
    items, _, _ = await store.list("/registry/pods/")
    assert len(items) == 5  # all but podsx
    with pytest.raises(InvalidArgument, match="must end with '/'"):
        await store.list("/registry/pods/ns1")


async def test_list_pages_share_the_first_pages_revision(store: Store) -> None:
    revs = {}
    for name in "abcde":
        revs[name] = await store.create(f"/registry/pods/ns1/{name}", name.encode())
    prefix = "/registry/pods/ns1/"
    first = await store.list(prefix, limit=2)
    snapshot = first.revision
    assert [i.key[-1] for i in first.items] == ["a", "b"]
    assert first.continue_token is not None
    # Writes between pages: none of them may show up in later pages.
    await store.create(prefix + "bb", b"new")
    await store.update(prefix + "c", b"changed", revs["c"])
    await store.delete(prefix + "d")
    second = await store.list(prefix, limit=2, continue_token=first.continue_token)
    assert second.revision == snapshot
    assert [(i.key[-1], i.value) for i in second.items] == [("c", b"c"), ("d", b"d")]
    assert second.items[0].mod_revision == revs["c"]
    assert second.continue_token is not None
    third = await store.list(prefix, limit=2, continue_token=second.continue_token)
    assert [i.key[-1] for i in third.items] == ["e"]
    assert (third.revision, third.continue_token) == (snapshot, None)
    latest = await store.list(prefix)
    assert [i.key.removeprefix(prefix) for i in latest.items] == ["a", "b", "bb", "c", "e"]
    assert latest.revision > snapshot


async def test_list_at_an_old_revision(store: Store) -> None:
    r1 = await store.create(A, b"v1")
    await store.update(A, b"v2", r1)
    await store.create(B, b"b")
    items, rev, _ = await store.list("/registry/pods/ns1/", revision=r1)
    assert rev == r1
    assert [(i.key, i.value, i.mod_revision) for i in items] == [(A, b"v1", r1)]


async def test_list_and_continue_at_a_compacted_revision_are_gone(store: Store) -> None:
    r1 = await store.create(A, b"v1")
    await store.create(B, b"b")
    page = await store.list("/registry/pods/ns1/", limit=1)
    r3 = await store.update(A, b"v2", r1)
    await store.compact(r3)
    await store.compact(r3)  # compacting again is a no-op
    with pytest.raises(Gone, match=f"too old resource version: {r1}"):
        await store.list("/registry/pods/ns1/", revision=r1)
    assert page.continue_token is not None
    with pytest.raises(Gone, match="too old resource version"):
        await store.list("/registry/pods/ns1/", continue_token=page.continue_token)
    items, _, _ = await store.list("/registry/pods/ns1/", revision=r3)
    assert [i.value for i in items] == [b"v2", b"b"]


@pytest.mark.parametrize("kwargs", [
    pytest.param({"continue_token": "not-base64!"}, id="garbage-token"),
    pytest.param({"continue_token": "eyJ2Ijo5OX0="}, id="unknown-token-version"),
    pytest.param({"continue_token": "x", "revision": 1}, id="token-and-revision"),
])
async def test_list_rejects_bad_arguments(store: Store, kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidArgument):
        await store.list("/registry/pods/", **kwargs)  # type: ignore[arg-type]


async def test_watch_replays_history_then_streams(store: Store) -> None:
    start = await store.current_revision()
    r1 = await store.create(A, b"v1")
    await store.create("/registry/pods/ns10/x", b"other namespace")
    r2 = await store.update(A, b"v2", r1)
    r3 = await store.delete(A)
    async with aclosing(store.watch("/registry/pods/ns1/", from_revision=start)) as events:
        assert await next_events(events, 3) == [
            Event(EventType.ADDED, A, b"v1", r1),
            Event(EventType.MODIFIED, A, b"v2", r2, prev_value=b"v1"),
            Event(EventType.DELETED, A, b"v2", r3, prev_value=b"v2"),
        ]
        await store.create("/registry/pods/ns10/y", b"ignored")
        r4 = await store.create(B, b"b")
        assert await next_events(events, 1) == [Event(EventType.ADDED, B, b"b", r4)]


async def test_watch_from_a_revision_skips_earlier_changes(store: Store) -> None:
    r1 = await store.create(A, b"v1")
    async with aclosing(store.watch("/registry/pods/", from_revision=r1)) as events:
        r2 = await store.update(A, b"v2", r1)
        assert [(e.type, e.revision) for e in await next_events(events, 1)] == [
            (EventType.MODIFIED, r2)]


async def test_watch_from_now(store: Store) -> None:
    await store.create(A, b"old")
    async with aclosing(store.watch("/registry/pods/", from_revision=0)) as events:
        # "Now" is when iteration starts (a generator runs nothing before its first step).
        first = asyncio.ensure_future(next_events(events, 1))
        await asyncio.sleep(0.2)
        rev = await store.create(B, b"new")
        assert await first == [Event(EventType.ADDED, B, b"new", rev)]


async def test_watch_from_a_compacted_revision_is_gone(store: Store) -> None:
    r1 = await store.create(A, b"v1")
    r2 = await store.update(A, b"v2", r1)
    r3 = await store.update(A, b"v3", r2)
    await store.compact(r3)
    with pytest.raises(Gone, match=rf"too old resource version: {r1} \({r3}\)"):
        async with aclosing(store.watch("/registry/pods/", from_revision=r1)) as events:
            await next_events(events, 1)


async def test_watch_sends_bookmarks_while_idle(store: Store) -> None:
    rev = await store.create(A, b"v1")
    watch = store.watch("/registry/pods/", from_revision=rev, bookmark_interval=0.2)
    async with aclosing(watch) as events:
        [ev] = await next_events(events, 1, skip_bookmarks=False, timeout=3)
    assert ev.type is EventType.BOOKMARK
    assert ev.revision >= rev


@pytest.mark.parametrize("write", [
    pytest.param(lambda s, v: s.create(B, v), id="create"),
    pytest.param(lambda s, v: s.update(A, v, 2), id="update"),
])
async def test_too_large_is_refused_with_key_and_size(
        store: Store, write: Callable[[Store, bytes], Awaitable[int]]) -> None:
    await store.create(A, b"small")
    fits = MAX_OBJECT_BYTES - 2 * len(B)
    await store.create(B.replace("/b", "/c"), b"x" * (fits - 2))  # same key length: accepted
    with pytest.raises(TooLarge, match=rf"{B[:-1]}.: object is {MAX_OBJECT_BYTES + 1} bytes"):
        await write(store, b"x" * (fits + 1))
