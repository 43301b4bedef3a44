"""The leader's lease: how long it lasts, and keeping it renewed (controlplane.leader's
campaign grants it; this module keeps it until it is lost and says why).

    Timing(lease_duration, renew_deadline, retry_period)      validated, ttl in whole s
    keep_leading(store, lease, timing, granted) ─► Lost       on the caller's loop
    RenewalThread(store_factory, ...).wait()    ─► Lost       the same, on its own thread

        every retry_period: store.keep_alive(lease) ─► Renewal.succeeded(sent, ttl)
        every wake-up:      Renewal.verdict(now, in_flight) ─► None (leading) | Lost

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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from controlplane.storage import NotFound, Store

# The renewal thread lets the lease go if the main loop is stuck longer: 3x the longest
# stall measured (a 10000-pod re-list on 100 nodes held the loop 18 s).
MAX_LOOP_STALL = 60.0

log = logging.getLogger("controlplane.leader")  # the election's log, as before the split
Clock = Callable[[], float]

__all__ = ["MAX_LOOP_STALL", "Clock", "Lost", "Renewal", "RenewalThread", "Timing",
           "keep_leading", "scaled"]


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


def scaled(ttl: int) -> Timing:
    """Timing for a whole-second TTL in the default proportions (tests use short ones)."""
    return Timing(lease_duration=ttl, renew_deadline=ttl * 0.8, retry_period=ttl * 0.2)
