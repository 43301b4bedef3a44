"""Leader election on an etcd lease, the renewal rules, and the fence every leader write carries.

    run_when_leader(store, component="controlplane", identity="host-1", work=run_all,
                    timing=Timing(lease_duration=10, renew_deadline=8, retry_period=2))

        campaign ─► key /corral/leader/<component> absent?
            │         yes: grant a lease (ttl = lease_duration), create the key on it (a txn:
            │              only if still absent) ─► lead
            │         no:  watch it until it is deleted (or the lease behind it expires),
            │              re-checking every lease_duration ─► campaign
        lead ───► work(Fence(key, create revision)) ║ renew (Renewal's rules, below)
            │      work returns  ─► revoke the lease (a standby leads at once), return
            │      lease lost    ─► TermStore given and the key is free: take it back at
            │                       once and keep WORK running (its caches stay; held writes
            │                       go on under the new fence); else cancel WORK, campaign
            └──── cancelled      ─► cancel work, revoke the lease, re-raise

Renewal (pure rules, `Renewal`): an attempt is started every retry_period; none has a
deadline of its own: each counts as long as its answer could still extend the lease (the
lease lives at least ttl from the send time of the last success: etcd expires it no
earlier), so a slow renewal that still succeeds within the ttl is a success. The leader
steps down when the renew deadline has passed since the last success and no attempt is
left that could still succeed, or at once when the lease has expired or etcd says it is
gone.

The renewals run where nothing else can starve them: with a `renew_store` factory, on a
thread of their own with their own event loop and etcd connection (a re-list that holds
the main loop for seconds delays nothing), which stops renewing only if the main loop has
not run for MAX_LOOP_STALL (a hung leader must not keep the cluster forever; one that
comes back takes the key back if no standby has it, keeping its work).

A standby leads within lease_duration of the leader's last renewal (plus etcd's 0.5 s
expiry check and a watch round trip). Work writes through `FencedStore`/`TermStore`: each
write carries a compare on the key's create revision, so a deposed leader that has not
noticed yet (paused, partitioned) gets `Fenced` instead of landing a late write. Leadership
is never assumed from the clock alone: only the fence is authoritative.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

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
from controlplane.storage.forwarding import ForwardingStore

LEADER_PREFIX = "/corral/leader/"
RETRY_SECONDS = 0.5  # campaign retries while etcd is unavailable
# The renewal thread lets the lease go if the main loop is stuck longer: 3x the longest
# stall measured (a 10000-pod re-list on 100 nodes held the loop 18 s).
MAX_LOOP_STALL = 60.0

log = logging.getLogger(__name__)
Work = Callable[[Fence], Coroutine[Any, Any, None]]
Clock = Callable[[], float]

__all__ = ["LEADER_PREFIX", "Lost", "Renewal", "TermStore", "Timing", "Work", "campaign",
           "current_leader", "keep_leading", "leader_key", "run_when_leader"]


@dataclass(frozen=True)
class Timing:
    """kube-controller-manager's --leader-elect-* durations, in seconds.

    lease_duration 10 s: the etcd lease ttl, so a `kill -9`ed leader is replaced within
    ~10.5 s (the HA bound is 15 s: 4 s spare for a loaded machine); renew_deadline 8 s: a
    leader that cannot renew steps down 2 s before a standby may take over; retry_period
    2 s: four renewal attempts fit in the renew deadline."""

    lease_duration: float = 10.0
    renew_deadline: float = 8.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        for name in ("lease_duration", "renew_deadline", "retry_period"):
            if not getattr(self, name) > 0:
                raise ValueError(f"leader election: {name}: must be > 0, "
                                 f"got {getattr(self, name):g}s")
        if self.renew_deadline >= self.lease_duration:
            raise ValueError(f"leader election: renew_deadline: must be < lease_duration "
                             f"({self.lease_duration:g}s), got {self.renew_deadline:g}s")
        if self.retry_period >= self.renew_deadline:
            raise ValueError(f"leader election: retry_period: must be < renew_deadline "
                             f"({self.renew_deadline:g}s), got {self.retry_period:g}s")

    @property
    def ttl(self) -> int:
        """etcd leases are whole seconds."""
        return max(1, math.ceil(self.lease_duration))


class Lost(enum.Enum):
    """Why a leader stopped renewing."""

    GONE = "etcd says the lease is gone"
    EXPIRED = "the lease expired before a renewal succeeded"
    DEADLINE = "no renewal succeeded within the renew deadline"
    STALLED = "the event loop did not run for too long"


@dataclass
class Renewal:
    """The leader's view of its lease: times are a monotonic clock's, passed in."""

    timing: Timing
    last_ok: float  # when the last successful renewal (or the grant) was sent
    expires: float = field(init=False)  # etcd expires the lease no earlier than this

    def __post_init__(self) -> None:
        self.expires = self.last_ok + self.timing.ttl

    def useful(self, sent: float, now: float) -> bool:
        """Whether an attempt sent at SENT, still unanswered at NOW, could yet extend the
        lease (its answer would renew it to SENT + ttl)."""
        return sent + self.timing.ttl > max(now, self.expires)

    def may_start(self, now: float) -> bool:
        """Attempts start until the renew deadline; after it, only those in flight count."""
        return now < self.last_ok + self.timing.renew_deadline and now < self.expires

    def succeeded(self, *, sent: float, ttl: float) -> None:
        """An attempt sent at SENT renewed the lease to TTL (late answers never shorten it)."""
        if sent + ttl > self.expires:
            self.last_ok, self.expires = sent, sent + ttl

    def verdict(self, now: float, *, in_flight: int) -> Lost | None:
        """None while leading; else why the leader must step down."""
        if now >= self.expires:
            return Lost.EXPIRED
        if now >= self.last_ok + self.timing.renew_deadline and not in_flight:
            return Lost.DEADLINE
        return None


class TermStore(ForwardingStore):
    """A Store whose writes are fenced on the current term's fence and held while the
    lease is in doubt, so a term this process wins back at once costs its work nothing.

        resume(fence) ─► writes go out fenced on FENCE (the ones held go now)
        suspend()     ─► new writes wait; a write etcd refused as Fenced waits too, then
                         is sent again under the next fence (a Fenced txn wrote nothing,
                         and each write keeps its own compare-and-swap conditions)
        depose()      ─► every waiting and later write fails with Fenced
    Reads, watches and leases pass through to the inner store."""

    def __init__(self, inner: Store, *, hold_limit: float = 30.0) -> None:
        super().__init__(inner)
        self.fence: Fence | None = None
        self._changed = asyncio.Condition()
        self._open = False
        self._deposed = False
        self._hold_limit = hold_limit

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

    async def _one(self, write: Write) -> int:
        try:
            return await self.commit([write])
        except TxnFailed as err:  # one write: its own error, as the unfenced verb raises
            raise err.failures[write.key] from None

    async def create(self, key: str, value: bytes) -> int:
        return await self._one(Write(key, value, 0))

    async def update(self, key: str, value: bytes, expected_revision: int) -> int:
        return await self._one(Write(key, value, expected_revision))

    async def delete(self, key: str, expected_revision: int | None = None) -> int:
        return await self._one(Write(key, None, expected_revision))



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


async def keep_leading(store: Store, *, lease: int, timing: Timing, granted: float,
                       clock: Clock = time.monotonic,
                       alive: Callable[[float], bool] | None = None) -> Lost:
    """Renew LEASE (granted at GRANTED) by Renewal's rules until it is lost; return why.

    ALIVE(now), when given, is asked before each attempt: False lets the lease go."""
    state = Renewal(timing, granted)
    attempts: dict[asyncio.Task[int], float] = {}
    next_at = granted + timing.retry_period

    try:
        while True:
            now = clock()
            if alive is not None and not alive(now):
                return Lost.STALLED
            for task in [t for t, sent in attempts.items() if not state.useful(sent, now)]:
                task.cancel()  # too old to matter: no deadline cuts a useful one short
                del attempts[task]
            if now >= next_at and state.may_start(now):
                attempts[asyncio.create_task(store.keep_alive(lease))] = now
                next_at = now + timing.retry_period
            lost = state.verdict(now, in_flight=len(attempts))
            if lost is not None:
                return lost
            wake = max(0.0, min([state.expires, *([next_at] if state.may_start(now) else []),
                                 *(sent + timing.ttl for sent in attempts.values())]) - now)
            if not attempts:
                await asyncio.sleep(wake)
                continue
            done, _ = await asyncio.wait(attempts, timeout=wake,
                                         return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                sent = attempts.pop(task)
                err = task.exception()
                if err is None:
                    state.succeeded(sent=sent, ttl=task.result())
                elif isinstance(err, NotFound):
                    return Lost.GONE
                else:  # Unavailable, etcd's deadline, ...: the next attempt may do better
                    log.warning("lease %x: renewal failed after %.1f s: %s: %s", lease,
                                clock() - sent, type(err).__name__, err)
    finally:
        for task in attempts:
            task.cancel()
        await asyncio.gather(*attempts, return_exceptions=True)


class RenewalThread:
    """keep_leading on a thread of its own: its own event loop and store (STORE_FACTORY,
    called on that thread), so a busy main loop cannot starve renewals. The main loop
    proves it still runs by tick()ing; the thread gives the lease up after MAX_LOOP_STALL
    without a tick."""

    def __init__(self, store_factory: Callable[[], Store], *, lease: int, timing: Timing,
                 granted: float, stall_limit: float = MAX_LOOP_STALL) -> None:
        self._factory, self._lease, self._timing = store_factory, lease, timing
        self._granted, self._stall_limit = granted, stall_limit
        self._ticked = time.monotonic()
        self._result: concurrent.futures.Future[Lost] = concurrent.futures.Future()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name=f"lease-{lease:x}",
                                        daemon=True)

    def tick(self) -> None:
        self._ticked = time.monotonic()

    def _alive(self, now: float) -> bool:
        return now - self._ticked < self._stall_limit

    def _main(self) -> None:
        try:
            self._result.set_result(asyncio.run(self._renew()))
        except asyncio.CancelledError:  # stopped by _stop()
            self._result.cancel()
        except BaseException as err:  # a bug or a store that cannot be made: never lose it
            self._result.set_exception(err)
        finally:
            self._ready.set()

    async def _renew(self) -> Lost:
        self._loop = asyncio.get_running_loop()
        store = self._factory()
        try:
            self._task = asyncio.current_task()
            self._ready.set()
            return await keep_leading(store, lease=self._lease, timing=self._timing,
                                      granted=self._granted, alive=self._alive)
        finally:
            await store.close()

    async def wait(self) -> Lost:
        """Run the thread; return when the lease is lost. Cancelled: stop the thread."""
        self._thread.start()
        result = asyncio.wrap_future(self._result)
        try:
            while not result.done():  # the main loop ticks while it waits
                self.tick()
                await asyncio.wait({result}, timeout=self._timing.retry_period)
            return result.result()
        finally:
            await asyncio.to_thread(self._stop)

    def _stop(self) -> None:
        if self._thread.ident is None:  # never started
            return
        self._ready.wait()
        loop, task = self._loop, self._task
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(task.cancel)
        self._thread.join()


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


def scaled(ttl: int) -> Timing:
    """Timing for a whole-second TTL in the default proportions (tests use short ones)."""
    return Timing(lease_duration=ttl, renew_deadline=ttl * 0.8, retry_period=ttl * 0.2)


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
