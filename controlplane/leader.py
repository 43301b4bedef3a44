"""Leader election on an etcd lease, and the fence every leader write carries.

    run_when_leader(store, component="controlplane", identity="host-1", work=run_all,
                    timing=Timing(lease_duration=10, renew_deadline=8, retry_period=2))

        campaign ─► key /corral/leader/<component> absent?
            │         yes: grant a lease (ttl = lease_duration), create the key on it (a txn:
            │              only if still absent) ─► lead
            │         no:  watch it until it is deleted (or the lease behind it expires),
            │              re-checking every lease_duration ─► campaign
        lead ───► work(Fence(key, create revision)) ║ renew (leaderlease.keep_leading)
            │      work returns  ─► revoke the lease (a standby leads at once), return
            │      lease lost    ─► TermStore given and the key is free: take it back at
            │                       once and keep WORK running (its caches stay; held writes
            │                       go on under the new fence); else cancel WORK, campaign
            └──── cancelled      ─► cancel work, revoke the lease, re-raise

Keeping the lease renewed (the rules, and the thread they may run on) is
controlplane.leaderlease's: Timing, Lost, Renewal, keep_leading and RenewalThread are
imported from there.

A standby leads within lease_duration of the leader's last renewal (plus etcd's 0.5 s
expiry check and a watch round trip). Work writes through `FencedStore`/`TermStore`: each
write carries a compare on the key's create revision, so a deposed leader that has not
noticed yet (paused, partitioned) gets `Fenced` instead of landing a late write. Leadership
is never assumed from the clock alone: only the fence is authoritative.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from controlplane.leaderlease import Lost, RenewalThread, Timing, keep_leading, scaled
from controlplane.storage import (
    EventType,
    Fence,
    Fenced,
    InvalidArgument,
    NotFound,
    StorageError,
    Store,
    TxnFailed,
    Unavailable,
    Write,
)
from controlplane.storage.etcd import (
    RETRY,
    BatchedWrites,
    Outcome,
    PendingWrite,
    WriteBatcher,
)
from controlplane.storage.forwarding import CommitWrites

LEADER_PREFIX = "/corral/leader/"
RETRY_SECONDS = 0.5  # campaign retries while etcd is unavailable

log = logging.getLogger(__name__)
Work = Callable[[Fence], Coroutine[Any, Any, None]]


class TermStore(BatchedWrites, CommitWrites):
    """A Store whose writes are fenced on the current term's fence and held while the
    lease is in doubt, so a term this process wins back at once costs its work nothing.

        resume(fence) ─► writes go out fenced on FENCE (the ones held go now)
        suspend()     ─► new writes wait; a write etcd refused as Fenced waits too, then
                         is sent again under the next fence (a Fenced txn wrote nothing,
                         and each write keeps its own compare-and-swap conditions)
        depose()      ─► every waiting and later write fails with Fenced
    Single creates and updates share commits (etcd.BatchedWrites, as EtcdStore's: group
    commit): those that arrive while one is out go together in the next, one fenced
    commit (_send_batch), as the API server's own writes do; a write that fails its own
    condition fails alone, the others go out again.
    Reads, watches and leases pass through to the inner store."""

    def __init__(self, inner: Store, *, hold_limit: float = 30.0) -> None:
        super().__init__(inner)
        self.fence: Fence | None = None
        self._changed = asyncio.Condition()
        self._open = False
        self._deposed = False
        self._hold_limit = hold_limit
        self._batcher = WriteBatcher(self._send_batch)

    def _notify(self) -> None:
        async def wake() -> None:
            async with self._changed:
                self._changed.notify_all()
        asyncio.get_running_loop().create_task(wake())

    def resume(self, fence: Fence) -> None:
        self.fence, self._open, self._deposed = fence, True, False
        self._notify()

    def suspend(self) -> None:
        self._open = False

    def depose(self) -> None:
        self._open, self._deposed = False, True
        self._notify()

    def _refused(self, fence: Fence | None) -> Fenced:
        key = fence.key if fence is not None else LEADER_PREFIX
        return Fenced(key, expected_revision=fence.revision if fence else 0,
                      current_revision=0)

    async def _usable(self, stale: Fence | None) -> Fence:
        """The fence to write under: not STALE, once open; Fenced once deposed."""
        if self._open and self.fence is not None and self.fence != stale:
            return self.fence  # leading: no wait, no lock
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._hold_limit):
                    await self._changed.wait_for(lambda: self._deposed or (
                        self._open and self.fence is not None and self.fence != stale))
        if self._deposed or not self._open or self.fence is None or self.fence == stale:
            raise self._refused(self.fence)
        return self.fence

    async def _send_batch(self, batch: Sequence[PendingWrite],
                          ) -> list[Outcome]:
        """BATCH as one fenced commit: every write's revision, or which failed (their
        errors) and which only shared the commit with them (to be sent again)."""
        try:
            revision = await self.commit([Write(w.key, w.value, w.expected_revision)
                                          for w in batch])
        except TxnFailed as err:
            return [err.failures.get(w.key, RETRY) for w in batch]
        return [revision] * len(batch)

    async def commit(self, writes: Sequence[Write], *, fence: Fence | None = None) -> int:
        if fence is not None:
            raise InvalidArgument(f"TermStore.commit: fence {fence.key}@{fence.revision} "
                                  "given, but this store chooses the fence itself")
        stale: Fence | None = None
        while True:
            current = await self._usable(stale)
            try:
                return await self.inner.commit(writes, fence=current)
            except Fenced:
                if self.fence == current:
                    self.suspend()  # the lease is gone: wait for the election's verdict
                stale = current


def leader_key(component: str) -> str:
    if not component or "/" in component:
        raise ValueError(f"leader election: component {component!r}: must be non-empty "
                         "without '/'")
    return LEADER_PREFIX + component


async def current_leader(store: Store, component: str) -> str | None:
    """The identity leading COMPONENT, or None."""
    try:
        value, _ = await store.get(leader_key(component))
    except NotFound:
        return None
    return value.decode()


async def run_when_leader(store: Store, *, component: str, identity: str, work: Work,
                          timing: Timing | None = None, ttl: int | None = None,
                          on_change: Callable[[bool], None] | None = None,
                          renew_store: Callable[[], Store] | None = None,
                          writes: TermStore | None = None) -> None:
    """Campaign for COMPONENT and run WORK(fence) while leading; see the module docstring.

    TIMING (or, shorter, a whole-second TTL with the default proportions) sets the lease;
    RENEW_STORE makes renewals run on their own thread; WRITES, the TermStore WORK writes
    through, lets a lost lease that this process wins back keep WORK running. Returns when
    WORK returns; WORK's exception propagates (after stepping down). ON_CHANGE(True/False)
    is told when this process starts and stops leading."""
    t = timing or (Timing() if ttl is None else scaled(ttl))
    key = leader_key(component)
    term: tuple[Fence, int, float] | None = None
    while True:
        if term is None:
            term = await campaign(store, key=key, identity=identity, ttl=t.ttl)
        fence, lease, granted = term
        log.info("%s: %s leads (revision %d)", key, identity, fence.revision)
        if writes is not None:
            writes.resume(fence)
        if on_change is not None:
            on_change(True)
        term = None
        worker = asyncio.create_task(work(fence), name=f"leader:{key}")
        try:
            while True:
                outcome = await _lead(store, worker=worker, lease=lease, timing=t,
                                      granted=granted, renew_store=renew_store)
                if outcome is None:  # WORK finished
                    return
                log.warning("%s: %s lost its lease (%s)", key, identity, outcome.value)
                if writes is None:
                    break
                writes.suspend()
                with contextlib.suppress(StorageError):  # the key may outlive our renewals
                    await store.revoke_lease(lease)
                again = await _take_back(store, key=key, identity=identity, ttl=t.ttl)
                if again is None:
                    break
                fence, lease, granted = again
                writes.resume(fence)  # held writes go on; WORK keeps its caches
                log.info("%s: %s leads again (revision %d), work kept", key, identity,
                         fence.revision)
        finally:  # deposed, or cancelled while taking the key back
            if writes is not None:
                writes.depose()
            await _stop(worker)
            if on_change is not None:
                on_change(False)
        log.warning("%s: %s campaigning again", key, identity)


async def campaign(store: Store, *, key: str, identity: str,
                   ttl: int) -> tuple[Fence, int, float]:
    """Wait until KEY can be created on a new lease; return the fence, the lease and when
    the grant was asked for (the lease lives at least ttl from then)."""
    while True:
        try:
            _, rev = await store.get(key)
        except NotFound:
            won = await _take_back(store, key=key, identity=identity, ttl=ttl)
            if won is not None:
                return won
            continue
        except Unavailable:
            await asyncio.sleep(RETRY_SECONDS)
            continue
        await _until_deleted(store, key=key, after=rev, recheck=float(ttl))


async def _take_back(store: Store, *, key: str, identity: str,
                     ttl: int) -> tuple[Fence, int, float] | None:
    """One try at creating KEY on a new lease: None if another candidate has it."""
    granted = time.monotonic()
    lease = await _retrying(lambda: store.grant_lease(ttl))
    try:
        created = await store.commit([Write(key, identity.encode(), 0, lease=lease)])
    except (TxnFailed, StorageError):  # another candidate won the race, or etcd hiccup
        with contextlib.suppress(StorageError):
            await store.revoke_lease(lease)
        return None
    return Fence(key, created), lease, granted


async def _until_deleted(store: Store, *, key: str, after: int, recheck: float) -> None:
    """Return when KEY is deleted after revision AFTER, or after RECHECK seconds (so a
    missed event or a broken watch costs at most that much)."""
    with contextlib.suppress(TimeoutError, StorageError):
        async with asyncio.timeout(recheck):
            stream = store.watch(LEADER_PREFIX, from_revision=after)
            async with contextlib.aclosing(stream):  # type: ignore[type-var]
                async for ev in stream:
                    if ev.key == key and ev.type is EventType.DELETED:
                        return


async def _lead(store: Store, *, worker: asyncio.Task[None], lease: int, timing: Timing,
                granted: float, renew_store: Callable[[], Store] | None) -> Lost | None:
    """Wait for WORKER while LEASE lives: None when WORKER finished (the lease is revoked;
    its exception propagates), else why the lease was lost (WORKER still runs)."""
    if renew_store is not None:
        renewer = RenewalThread(renew_store, lease=lease, timing=timing, granted=granted)
        keeper = asyncio.create_task(renewer.wait())
    else:
        keeper = asyncio.create_task(keep_leading(store, lease=lease, timing=timing,
                                                  granted=granted))
    try:
        await asyncio.wait({worker, keeper}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # cancelled: stop working and hand over at once
        await _stop(worker, keeper)
        with contextlib.suppress(StorageError):
            await store.revoke_lease(lease)
        raise
    if not worker.done():
        return keeper.result()
    await _stop(keeper)
    with contextlib.suppress(StorageError):
        await store.revoke_lease(lease)  # step down at once: a standby leads now
    worker.result()  # WORK's exception, if it raised
    return None


async def _stop(*tasks: asyncio.Task[Any]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _retrying(op: Callable[[], Awaitable[int]]) -> int:
    while True:
        try:
            return await op()
        except Unavailable:
            await asyncio.sleep(RETRY_SECONDS)
