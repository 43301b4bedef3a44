"""The controller base, expectations, and the manager that runs a set of controllers.

    ControllerManager(cluster, [ReplicaSetController, ...])
      ├─ Informers: one shared informer per resource
      ├─ each controller: setup() registers handlers (they only enqueue keys)
      ├─ informers start; wait until every cache has synced
      └─ each controller: N workers ── queue.get() ─► sync(key) ─► done(key)
                                         error ─► add_rate_limited(key); ok ─► forget(key)

A subclass sets `name` and `resources`, registers handlers in `setup()`, and writes an
idempotent `async sync(key)` that reads the caches, decides in a pure function, and writes
through the Cluster. Cached objects are shared: deep-copy before changing one.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from api import errors as e
from controlplane.controllers.informer import Informer, Informers, key_of
from controlplane.controllers.workqueue import ShutDown, WorkQueue
from controlplane.local import Cluster

log = logging.getLogger("corral.controllers")

Obj = dict[str, Any]
EXPECTATIONS_TTL = 300.0  # client-go: give up waiting for our own writes after 5 minutes
# a write that failed this way may have been committed all the same
AMBIGUOUS = (e.Reason.UNAVAILABLE, e.Reason.TIMEOUT, e.Reason.INTERNAL)


async def record_event(cluster: Cluster, obj: dict[str, Any], *, involved: tuple[str, str],
                       kind: str, reason: str, message: str, component: str, now: str) -> None:
    """Best effort: an Event of type KIND (Normal or Warning) on OBJ, whose apiVersion and
    kind are INVOLVED, the one a user sees in `clusterctl describe`; a failure to record it
    is only logged."""
    m = obj.get("metadata") or {}
    ns = m.get("namespace", "")
    event: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": f"{m.get('name', '')}.", "namespace": ns},
        "involvedObject": {"apiVersion": involved[0], "kind": involved[1],
                           "name": m.get("name", ""), "namespace": ns, "uid": m.get("uid", "")},
        "reason": reason, "message": message, "type": kind, "count": 1,
        "firstTimestamp": now, "lastTimestamp": now, "source": {"component": component}}
    try:
        await cluster.create("events", event, namespace=ns)
    except e.APIError as err:
        log.debug("%s %s: event %s not recorded: %s", component, m.get("name"), reason, err)


async def write_status(cluster: Cluster, resource: str, obj: dict[str, Any],
                       status: dict[str, Any]) -> None:
    """OBJ's status subresource set to STATUS, unless it already is."""
    if (obj.get("status") or {}) == status:
        return
    out = copy.deepcopy(obj)  # OBJ may be the informer's cached copy
    out["status"] = status
    await cluster.update(resource, out, namespace=(obj.get("metadata") or {}).get(
        "namespace", ""), subresource="status")


async def may_exist(cluster: Cluster, resource: str, *, namespace: str, name: str,
                    err: e.APIError) -> bool | None:
    """After ERR creating NAME: does it exist all the same? False: surely not (a refusal,
    or not found when looked up); True: it does; None: cannot tell (the look failed
    too). A timeout or an unavailable store may have come after etcd committed it."""
    if err.reason not in AMBIGUOUS:
        return False
    try:
        await cluster.get(resource, name, namespace=namespace)
    except e.APIError as look:
        return False if look.reason is e.Reason.NOT_FOUND else None
    return True


@dataclass
class _Expected:
    adds: int = 0
    creates: set[str] = field(default_factory=set)
    deletes: set[str] = field(default_factory=set)
    since: float = 0.0


class Expectations:
    """What a controller wrote and has not yet seen come back through its informer.

    While a key's expectations are pending, the controller must not create or delete for
    it again (its cache does not show its own writes yet). Creates are expected either as
    a count (`adds`) or by name (`creates`): a named create whose answer was lost (a
    timeout after etcd committed it) stays expected until its object is seen, so the
    next sync cannot count it missing and create it twice."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._by_key: dict[str, _Expected] = {}

    def expect(self, key: str, *, adds: int = 0, creates: Iterable[str] = (),
               deletes: Iterable[str] = ()) -> None:
        self._by_key[key] = _Expected(adds=adds, creates=set(creates),
                                      deletes=set(deletes), since=self.clock())

    def expect_creation(self, key: str, dependent: str) -> None:
        """One more named create for KEY (e.g. a retry under a new name)."""
        exp = self._by_key.setdefault(key, _Expected(since=self.clock()))
        exp.creates.add(dependent)

    def creation_observed(self, key: str, dependent: str = "") -> None:
        """DEPENDENT ("ns/name") of KEY was seen, or will not be: a named expectation
        is cleared by its name only; a count by any creation."""
        exp = self._by_key.get(key)
        if exp is None:
            return
        if dependent and dependent in exp.creates:
            exp.creates.discard(dependent)
        elif exp.adds > 0:
            exp.adds -= 1

    def deletion_observed(self, key: str, dependent: str) -> None:
        exp = self._by_key.get(key)
        if exp is not None:
            exp.deletes.discard(dependent)

    def satisfied(self, key: str) -> bool:
        exp = self._by_key.get(key)
        if exp is None or (exp.adds <= 0 and not exp.creates and not exp.deletes):
            return True
        return self.clock() - exp.since > EXPECTATIONS_TTL

    def forget(self, key: str) -> None:
        self._by_key.pop(key, None)


class Controller:
    """Base class: a work queue of keys, N workers, errors requeued with backoff."""

    name = "controller"
    workers = 2

    def __init__(self, cluster: Cluster, informers: Informers, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.cluster = cluster
        self.informers = informers
        self.clock = clock
        self.queue = WorkQueue(name=self.name)
        self._tasks: list[asyncio.Task[None]] = []
        self.setup()

    def informer(self, resource: str) -> Informer:
        return self.informers.get(resource)

    def setup(self) -> None:
        """Ask for informers and register handlers (subclasses)."""

    async def sync(self, key: str) -> None:
        """Make KEY's actual state match its desired state. Idempotent (subclasses)."""
        raise NotImplementedError

    def enqueue(self, obj: Obj) -> None:
        self.queue.add(key_of(obj))

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            try:
                await self.sync(key)
            except asyncio.CancelledError:
                self.queue.done(key)
                raise
            except e.APIError as err:
                level = logging.DEBUG if err.reason in (
                    e.Reason.CONFLICT, e.Reason.NOT_FOUND, e.Reason.ALREADY_EXISTS) \
                    else logging.WARNING
                log.log(level, "%s: sync %s: %s (retry %d)", self.name, key, err,
                        self.queue.retries(key))
                self.queue.add_rate_limited(key)
            except Exception:
                log.exception("%s: sync %s failed (retry %d)", self.name, key,
                              self.queue.retries(key))
                self.queue.add_rate_limited(key)
            else:
                self.queue.forget(key)
            self.queue.done(key)

    def start(self) -> None:
        for i in range(self.workers):
            self._tasks.append(asyncio.create_task(self._worker(),
                                                   name=f"{self.name}-worker-{i}"))

    async def stop(self) -> None:
        self.queue.shutdown()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks.clear()


ControllerFactory = Callable[[Cluster, Informers], Controller]


class ControllerManager:
    """Runs CONTROLLERS over shared informers; `async with` starts and stops them all."""

    def __init__(self, cluster: Cluster, controllers: Sequence[ControllerFactory], *,
                 resync: float = 0.0) -> None:
        self.cluster = cluster
        self.informers = Informers(cluster, resync=resync)
        self.controllers = [make(cluster, self.informers) for make in controllers]

    def get(self, name: str) -> Controller:
        for c in self.controllers:
            if c.name == name:
                return c
        raise KeyError(name)

    async def start(self) -> None:
        self.informers.start()
        await self.informers.wait_synced()
        for c in self.controllers:
            c.start()

    async def stop(self) -> None:
        for c in self.controllers:
            await c.stop()
        await self.informers.stop()

    async def __aenter__(self) -> ControllerManager:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()
