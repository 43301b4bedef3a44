"""Container events (CRI GetContainerEvents): created, started, stopped (exit or OOM), deleted.

::

    cri/service.py ──publish(Event)──► EventBus ──► one bounded asyncio.Queue per subscriber
    (threads: a waiter per running task                ▲
     reports its exit, with OOMKilled)                  └── subscribe(): the gRPC stream

publish() may be called from any thread; it hands the event to the loop the bus was made
on. A subscriber that falls MAX_BACKLOG events behind is dropped (its stream ends), so a
slow client never holds the daemon's memory.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass

MAX_BACKLOG = 1000


class EventType(enum.Enum):  # values are CRI's ContainerEventType numbers
    CREATED = 0
    STARTED = 1
    STOPPED = 2
    DELETED = 3


@dataclass(frozen=True)
class Event:
    tenant: str
    container_id: str
    sandbox_id: str
    type: EventType
    at_ns: int
    exit_code: int = 0
    reason: str = ""  # STOPPED: Completed, Error, OOMKilled


_END = object()


class EventBus:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._subs: set[asyncio.Queue[object]] = set()

    def publish(self, event: Event) -> None:
        """From any thread. With no subscriber nothing is scheduled (each event woke the
        event loop; 2-3 per pod start, and usually no one listens)."""
        if not self._subs or self.loop.is_closed():
            return
        try:
            self.loop.call_soon_threadsafe(self._deliver, event)
        except RuntimeError:  # the loop is shutting down
            pass

    def _deliver(self, event: Event) -> None:
        for q in list(self._subs):
            if q.qsize() >= MAX_BACKLOG:
                self._subs.discard(q)
                q.put_nowait(_END)
            else:
                q.put_nowait(event)

    def close(self) -> None:
        for q in list(self._subs):
            q.put_nowait(_END)
        self._subs.clear()

    async def subscribe(self, tenant: str | None = None) -> AsyncIterator[Event]:
        """Events (of TENANT, or all) from now on, until the bus closes."""
        q: asyncio.Queue[object] = asyncio.Queue()
        self._subs.add(q)
        try:
            while True:
                item = await q.get()
                if item is _END:
                    return
                assert isinstance(item, Event)
                if tenant is None or item.tenant == tenant:
                    yield item
        finally:
            self._subs.discard(q)

    @property
    def subscribers(self) -> int:
        return len(self._subs)
