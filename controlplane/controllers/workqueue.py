"""A keyed work queue with client-go's guarantees, for asyncio.

    add(key) ──► dirty set ──► queue (FIFO, each key once) ──► get() ──► processing
                   ▲                                                       │ done(key)
                   └── re-added while processing: waits here until done ◄──┘
    add_after(key, delay) ──► waiting heap ──(clock reaches it)──► add(key)
    add_rate_limited(key) ──► add_after(key, backoff(key)): 5 ms doubling to 1000 s
    forget(key)           ──► the key's backoff starts over

A key is never handed to two workers at once; a key added many times before a worker
takes it is handed out once. The clock is injectable (tests use a fake one and call
`wake()` after moving it); `get()` also wakes itself when the next delayed key is due.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import itertools
import time
from collections.abc import Callable

BASE_DELAY = 0.005
MAX_DELAY = 1000.0


class ShutDown(Exception):
    """get() on a queue that was shut down and has nothing left to hand out."""


class Backoff:
    """Per-key exponential backoff: BASE * 2**failures, capped at MAX."""

    def __init__(self, base: float = BASE_DELAY, cap: float = MAX_DELAY) -> None:
        self.base = base
        self.cap = cap
        self._failures: dict[str, int] = {}

    def when(self, key: str) -> float:
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        return float(min(self.base * (2.0 ** min(n, 64)), self.cap))

    def retries(self, key: str) -> int:
        return self._failures.get(key, 0)

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)


class WorkQueue:
    """De-duplicating, in-flight-exclusive queue of string keys."""

    def __init__(self, *, name: str = "", clock: Callable[[], float] = time.monotonic,
                 backoff: Backoff | None = None) -> None:
        self.name = name
        self.clock = clock
        self.backoff = backoff or Backoff()
        self._queue: collections.deque[str] = collections.deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._waiting: list[tuple[float, int, str]] = []  # (due, seq, key) heap
        self._due: dict[str, float] = {}  # earliest due time per waiting key
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._shutdown = False

    # -- adding ---------------------------------------------------------------------------

    def add(self, key: str) -> None:
        if self._shutdown or key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.append(key)
            self._wake.set()

    def add_after(self, key: str, delay: float) -> None:
        if self._shutdown:
            return
        if delay <= 0:
            self.add(key)
            return
        due = self.clock() + delay
        if self._due.get(key, float("inf")) <= due:
            return  # already waiting for an earlier time
        self._due[key] = due
        heapq.heappush(self._waiting, (due, next(self._seq), key))
        self._wake.set()

    def add_rate_limited(self, key: str) -> None:
        self.add_after(key, self.backoff.when(key))

    def forget(self, key: str) -> None:
        self.backoff.forget(key)

    def retries(self, key: str) -> int:
        return self.backoff.retries(key)

    # -- taking ---------------------------------------------------------------------------

    def _promote(self) -> float | None:
        """Move due keys into the queue; the seconds until the next one is due."""
        now = self.clock()
        while self._waiting:
            due, _, key = self._waiting[0]
            if self._due.get(key) != due:  # superseded by an earlier add_after
                heapq.heappop(self._waiting)
                continue
            if due > now:
                return due - now
            heapq.heappop(self._waiting)
            del self._due[key]
            self.add(key)
        return None

    def get_nowait(self) -> str | None:
        """The next key (now marked processing), or None if none is ready."""
        self._promote()
        if not self._queue:
            return None
        key = self._queue.popleft()
        self._dirty.discard(key)
        self._processing.add(key)
        return key

    async def get(self) -> str:
        """Wait for the next key. Raises ShutDown once shut down and drained."""
        while True:
            key = self.get_nowait()
            if key is not None:
                return key
            if self._shutdown:
                raise ShutDown(self.name)
            wait = self._promote()
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            except TimeoutError:
                pass

    def done(self, key: str) -> None:
        """The worker finished KEY: if it was re-added meanwhile, it is queued again."""
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._wake.set()

    def wake(self) -> None:
        """Re-check delayed keys now (after a fake clock moved)."""
        self._wake.set()

    # -- state ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._queue)

    def waiting(self) -> int:
        return len(self._due)

    def processing(self) -> frozenset[str]:
        return frozenset(self._processing)

    def shutdown(self) -> None:
        """Stop accepting keys; getters return what is queued, then raise ShutDown."""
        self._shutdown = True
        self._waiting.clear()
        self._due.clear()
        self._wake.set()

    @property
    def is_shut_down(self) -> bool:
        return self._shutdown
