"""The scheduling queue (Kubernetes' PriorityQueue): where pending pods wait for a cycle.

    add ──► activeQ ──pop──► (scheduling cycle) ──fails──► add_unschedulable
              ▲   ▲                                            │
              │   └── backoff over ── backoffQ ◄── event that │ may help, or a move
              │                          ▲         happened during the cycle
              └── event / 5 min ── unschedulableQ ◄────────────┘ otherwise

    activeQ        highest spec.priority first, then first come
    backoffQ       per pod 1 s after the first failed attempt, doubling to 10 s
    unschedulable  each pod with the plugins that rejected it; a cluster event moves back
                   the pods it may help (a node added helps all; a deleted pod frees
                   resources; ...), and every pod goes back after 5 minutes regardless

A plain data structure: no threads, no asyncio, no sleeping. Time comes from an injected
clock; `pop()` returns None when nothing is ready and the caller waits on its own condition
(`next_ready_in()` says how long until a backoff ends).
"""

from __future__ import annotations

import enum
import heapq
import itertools
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from controlplane.scheduler.terms import pod_key, pod_priority

INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 10.0
MAX_UNSCHEDULABLE = 300.0


class Event(enum.Enum):
    NODE_ADD = "NodeAdd"
    NODE_LABELS = "NodeUpdateLabels"
    NODE_TAINTS = "NodeUpdateTaints"
    NODE_ALLOCATABLE = "NodeUpdateAllocatable"
    NODE_SCHEDULABLE = "NodeUpdateUnschedulable"
    POD_ADD = "AssignedPodAdd"
    POD_LABELS = "AssignedPodUpdateLabels"
    POD_DELETE = "AssignedPodDelete"


# The plugins whose rejection an event may undo (Kubernetes' EventsToRegister); None: all.
EVENT_PLUGINS: dict[Event, frozenset[str] | None] = {
    Event.NODE_ADD: None,
    Event.NODE_LABELS: frozenset({"NodeAffinity", "InterPodAffinity", "PodTopologySpread"}),
    Event.NODE_TAINTS: frozenset({"TaintToleration", "NodeUnschedulable",
                                  "PodTopologySpread"}),
    Event.NODE_ALLOCATABLE: frozenset({"NodeResourcesFit"}),
    Event.NODE_SCHEDULABLE: frozenset({"NodeUnschedulable"}),
    Event.POD_ADD: frozenset({"InterPodAffinity", "PodTopologySpread"}),
    Event.POD_LABELS: frozenset({"InterPodAffinity", "PodTopologySpread"}),
    Event.POD_DELETE: frozenset({"NodeResourcesFit", "InterPodAffinity",
                                 "PodTopologySpread"}),
}


def node_update_events(old: Mapping[str, Any], new: Mapping[str, Any]) -> set[Event]:
    """What changed between two versions of a node, as queue events."""
    def part(obj: Mapping[str, Any], *path: str) -> Any:
        for p in path:
            obj = obj.get(p) or {}
        return obj

    events: set[Event] = set()
    if part(old, "metadata", "labels") != part(new, "metadata", "labels"):
        events.add(Event.NODE_LABELS)
    if part(old, "spec", "taints") != part(new, "spec", "taints"):
        events.add(Event.NODE_TAINTS)
    if part(old, "status", "allocatable") != part(new, "status", "allocatable"):
        events.add(Event.NODE_ALLOCATABLE)
    if bool(part(old, "spec").get("unschedulable")) != bool(
            part(new, "spec").get("unschedulable")):
        events.add(Event.NODE_SCHEDULABLE)
    return events


@dataclass
class QueuedPod:
    pod: Mapping[str, Any]
    added: float  # when it first entered the queue (arrival order)
    attempts: int = 0  # scheduling cycles it has been through
    last_failure: float = 0.0
    rejectors: frozenset[str] = frozenset()  # plugins that rejected it last time
    cycle: int = 0  # the scheduling cycle that popped it
    seq: int = 0  # tie-break: insertion order

    @property
    def key(self) -> str:
        return pod_key(self.pod)


@dataclass
class _Heap:
    """A heap with lazy deletion: each push gets a token, and an entry whose token is no
    longer the live one for its key is stale (removed, or pushed again with a new key)."""

    sort_key: Callable[[QueuedPod], tuple[Any, ...]]
    entries: list[tuple[tuple[Any, ...], int, QueuedPod]] = field(default_factory=list)
    live: dict[str, tuple[QueuedPod, int]] = field(default_factory=dict)
    counter: itertools.count[int] = field(default_factory=itertools.count)

    def push(self, qp: QueuedPod) -> None:
        token = next(self.counter)
        self.live[qp.key] = (qp, token)
        heapq.heappush(self.entries, (self.sort_key(qp), token, qp))

    def peek(self) -> QueuedPod | None:
        while self.entries:
            _, token, qp = self.entries[0]
            current = self.live.get(qp.key)
            if current is not None and current[1] == token:
                return qp
            heapq.heappop(self.entries)
        return None

    def pop(self) -> QueuedPod | None:
        qp = self.peek()
        if qp is not None:
            heapq.heappop(self.entries)
            del self.live[qp.key]
        return qp

    def get(self, key: str) -> QueuedPod | None:
        current = self.live.get(key)
        return current[0] if current is not None else None

    def remove(self, key: str) -> QueuedPod | None:
        current = self.live.pop(key, None)
        return current[0] if current is not None else None

    def __len__(self) -> int:
        return len(self.live)


class SchedulingQueue:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 initial_backoff: float = INITIAL_BACKOFF, max_backoff: float = MAX_BACKOFF,
                 max_unschedulable: float = MAX_UNSCHEDULABLE) -> None:
        self.clock = clock
        self.initial_backoff, self.max_backoff = initial_backoff, max_backoff
        self.max_unschedulable = max_unschedulable
        self._active = _Heap(lambda qp: (-pod_priority(qp.pod), qp.added, qp.seq))
        self._backoff = _Heap(self.backoff_expiry_key)
        self._unschedulable: dict[str, tuple[QueuedPod, float]] = {}  # key -> (pod, since)
        self._in_flight: dict[str, QueuedPod] = {}
        self._seq = itertools.count()
        self.scheduling_cycle = 0
        self._move_request_cycle = -1

    # ---- backoff ----------------------------------------------------------------------

    def backoff_duration(self, qp: QueuedPod) -> float:
        """1 s after the first attempt, doubled per attempt, at most 10 s."""
        if qp.attempts <= 0:
            return 0.0
        return min(self.initial_backoff * float(2 ** (qp.attempts - 1)), self.max_backoff)

    def backoff_expiry(self, qp: QueuedPod) -> float:
        return qp.last_failure + self.backoff_duration(qp)

    def backoff_expiry_key(self, qp: QueuedPod) -> tuple[Any, ...]:
        return (self.backoff_expiry(qp), qp.seq)

    def _backing_off(self, qp: QueuedPod) -> bool:
        return qp.attempts > 0 and self.backoff_expiry(qp) > self.clock()

    # ---- adding and removing pods -----------------------------------------------------

    def add(self, pod: Mapping[str, Any]) -> None:
        """A new pending pod, or a new version of one already queued (kept in place, but an
        unschedulable pod whose spec changed gets another try)."""
        key = pod_key(pod)
        queued = self._find(key)
        if queued is None:
            self._active.push(QueuedPod(pod, self.clock(), seq=next(self._seq)))
            return
        queued.pod = pod
        if key in self._in_flight:
            return
        if key in self._unschedulable:
            del self._unschedulable[key]
            self._requeue(queued)
        elif key in self._active.live:
            self._active.push(queued)  # priority may have changed

    def delete(self, pod: Mapping[str, Any]) -> None:
        key = pod_key(pod)
        self._active.remove(key)
        self._backoff.remove(key)
        self._unschedulable.pop(key, None)
        self._in_flight.pop(key, None)

    def _find(self, key: str) -> QueuedPod | None:
        for qp in (self._active.get(key), self._backoff.get(key),
                   self._unschedulable.get(key, (None, 0.0))[0], self._in_flight.get(key)):
            if qp is not None:
                return qp
        return None

    def _requeue(self, qp: QueuedPod) -> None:
        (self._backoff if self._backing_off(qp) else self._active).push(qp)

    # ---- the scheduling loop's side ---------------------------------------------------

    def pop(self) -> QueuedPod | None:
        """The next pod to schedule, or None. Flushes ended backoffs and overdue
        unschedulable pods first."""
        self.flush()
        qp = self._active.pop()
        if qp is None:
            return None
        self.scheduling_cycle += 1
        qp.attempts += 1
        qp.cycle = self.scheduling_cycle
        self._in_flight[qp.key] = qp
        return qp

    def done(self, qp: QueuedPod) -> None:
        """The pod was scheduled (or given up on): forget it."""
        self._in_flight.pop(qp.key, None)

    def add_unschedulable(self, qp: QueuedPod, rejectors: Iterable[str] = ()) -> None:
        """The cycle found no node; REJECTORS are the plugins that said no. If an event came
        in while the pod was being scheduled it goes to backoff, not to wait for another."""
        if self._in_flight.pop(qp.key, None) is None:
            return  # deleted while in flight
        qp.last_failure = self.clock()
        qp.rejectors = frozenset(rejectors)
        if self._move_request_cycle >= qp.cycle:
            self._backoff.push(qp)
        else:
            self._unschedulable[qp.key] = (qp, self.clock())

    def add_backoff(self, qp: QueuedPod) -> None:
        """A cycle that failed for another reason (an error, a lost bind): retry after
        backoff."""
        if self._in_flight.pop(qp.key, None) is None:
            return
        qp.last_failure = self.clock()
        self._backoff.push(qp)

    # ---- events and time --------------------------------------------------------------

    def on_event(self, event: Event) -> int:
        """Move back the unschedulable pods EVENT may help; returns how many moved."""
        self._move_request_cycle = self.scheduling_cycle
        helps = EVENT_PLUGINS[event]
        moved = [key for key, (qp, _) in self._unschedulable.items()
                 if helps is None or not qp.rejectors or qp.rejectors & helps]
        for key in moved:
            qp, _ = self._unschedulable.pop(key)
            self._requeue(qp)
        return len(moved)

    def flush(self) -> None:
        now = self.clock()
        while (qp := self._backoff.peek()) is not None and self.backoff_expiry(qp) <= now:
            self._backoff.pop()
            self._active.push(qp)
        overdue = [key for key, (_, since) in self._unschedulable.items()
                   if now - since >= self.max_unschedulable]
        for key in overdue:
            qp, _ = self._unschedulable.pop(key)
            self._requeue(qp)

    def next_ready_in(self) -> float | None:
        """Seconds until the next backoff ends (0 if a pod is ready), None if none waits."""
        if len(self._active):
            return 0.0
        qp = self._backoff.peek()
        return None if qp is None else max(0.0, self.backoff_expiry(qp) - self.clock())

    # ---- inspection -------------------------------------------------------------------

    def lengths(self) -> dict[str, int]:
        return {"active": len(self._active), "backoff": len(self._backoff),
                "unschedulable": len(self._unschedulable), "inFlight": len(self._in_flight)}

    def where(self, pod: Mapping[str, Any]) -> str | None:
        key = pod_key(pod)
        for name, keys in (("active", self._active.live), ("backoff", self._backoff.live),
                           ("unschedulable", self._unschedulable),
                           ("inFlight", self._in_flight)):
            if key in keys:
                return name
        return None
