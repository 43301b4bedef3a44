"""Leader election over InMemoryStore (leases on the event loop's timer)."""

from __future__ import annotations

import asyncio
import contextvars
import time

import pytest

from controlplane import leader
from controlplane.storage import Fence, Fenced, FencedStore, InMemoryStore, Store, Unavailable

CANDIDATE: contextvars.ContextVar[str] = contextvars.ContextVar("candidate", default="")


class Partitionable(InMemoryStore):
    """A store whose lease renewals can be cut off, as for a frozen or partitioned leader,
    and that candidate's lease grants with them (a frozen process cannot campaign either)."""

    def __init__(self) -> None:
        super().__init__()
        self.cut: set[int] = set()
        self.frozen: set[str] = set()  # candidates (CANDIDATE of their task) cut off

    async def keep_alive(self, lease: int) -> int:
        if lease in self.cut:
            raise Unavailable("partitioned")
        return await super().keep_alive(lease)

    async def grant_lease(self, ttl: int) -> int:
        if CANDIDATE.get() in self.frozen:
            raise Unavailable("partitioned")
        return await super().grant_lease(ttl)


class Candidate:
    def __init__(self, store: Store, name: str, *, ttl: int = 1) -> None:
        self.store, self.name = store, name
        self.fences: list[Fence] = []
        self.leading = asyncio.Event()
        self.stopped = asyncio.Event()
        self.release = asyncio.Event()
        token = CANDIDATE.set(name)  # the task's context names its candidate
        self.task = asyncio.create_task(leader.run_when_leader(
            store, component="scheduler", identity=name, work=self.work, ttl=ttl))
        CANDIDATE.reset(token)

    async def work(self, fence: Fence) -> None:
        self.fences.append(fence)
        self.leading.set()
        try:
            await self.release.wait()
        finally:
            self.stopped.set()
            self.leading.clear()

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@pytest.mark.asyncio
async def test_one_leader_then_the_standby_takes_over_when_renewals_stop() -> None:
    store = Partitionable()
    a = Candidate(store, "a")
    await asyncio.wait_for(a.leading.wait(), 2)
    b = Candidate(store, "b")
    try:
        await asyncio.sleep(1.5)  # longer than the ttl: a's renewals keep it leading
        assert not b.leading.is_set()
        assert await leader.current_leader(store, "scheduler") == "a"
        lease = store._key_lease[leader.leader_key("scheduler")]
        store.cut.add(lease)  # a stops renewing, as a process frozen by kill -STOP would
        store.frozen.add("a")
        start = time.monotonic()
        await asyncio.wait_for(b.leading.wait(), 3)
        assert time.monotonic() - start <= 1.6  # within the ttl (+ timer slack)
        await asyncio.wait_for(a.stopped.wait(), 2)  # a noticed and stopped its work
        assert await leader.current_leader(store, "scheduler") == "b"
        assert b.fences[0].revision > a.fences[0].revision
        with pytest.raises(Fenced, match="no longer the leader"):
            await FencedStore(store, a.fences[0]).create("/registry/pods/ns/late", b"x")
        await FencedStore(store, b.fences[0]).create("/registry/pods/ns/ok", b"x")
    finally:
        await a.close()
        await b.close()


@pytest.mark.asyncio
async def test_cancelled_leader_hands_over_at_once() -> None:
    store = InMemoryStore()
    a = Candidate(store, "a", ttl=30)
    await asyncio.wait_for(a.leading.wait(), 2)
    b = Candidate(store, "b", ttl=30)
    await asyncio.sleep(0.05)
    await a.close()  # graceful shutdown revokes the lease
    await asyncio.wait_for(b.leading.wait(), 1)
    await b.close()
    assert await leader.current_leader(store, "scheduler") is None


@pytest.mark.asyncio
async def test_work_that_returns_steps_down_and_errors_propagate() -> None:
    store = InMemoryStore()

    async def fails(fence: Fence) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await leader.run_when_leader(store, component="c", identity="x", work=fails, ttl=30)
    assert await leader.current_leader(store, "c") is None

    seen: list[Fence] = []

    async def once(fence: Fence) -> None:
        seen.append(fence)

    await leader.run_when_leader(store, component="c", identity="x", work=once, ttl=30)
    assert seen[0].key == "/corral/leader/c"


@pytest.mark.parametrize("component", [pytest.param("", id="empty"),
                                       pytest.param("a/b", id="slash")])
def test_bad_component_is_refused(component: str) -> None:
    with pytest.raises(ValueError, match="component"):
        leader.leader_key(component)
