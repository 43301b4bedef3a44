"""Informer: a list + watch cache of one resource, with indexes and event handlers.

    cluster.list ──► replace cache (diff ─► add/update/delete handlers) ──► synced
         ▲                                                                   │
         │ Expired/Gone, error                     cluster.watch(from rv) ◄──┘
         └──────────────────────────────── ADDED/MODIFIED/DELETED ─► cache ─► handlers
                                           (a watch that just ends resumes from its rv)

Handlers run in the informer's task and must only enqueue keys. Cached objects are
shared by every controller: read them, never mutate them (deep-copy before a change).
`Informers` hands out one informer per (resource, namespace) so controllers share them.

Indexes keep a sync's reads proportional to what it is about, not to the cache: "owner"
(each ownerReference's uid: a controller's dependents), "orphan" (the namespace of
objects with no controller: candidates for adoption), "namespace", and any a controller
adds. `objects_read` counts the objects handed out, so tests can bound a sync's reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from api import errors as e
from controlplane.local import Cluster

log = logging.getLogger("corral.informer")

Obj = dict[str, Any]
Objs = list[Obj]  # (the name `list` is a method of Informer)
IndexFunc = Callable[[Obj], Iterable[str]]
RETRY_DELAY = 0.2
LIST_PAGE = 500  # objects per list call when (re-)listing
YIELD_EVERY = 256  # objects put into the cache between yields to the event loop


def key_of(obj: Obj) -> str:
    """The cache key: "namespace/name", or "name" for cluster-scoped objects."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace") or ""
    return f"{ns}/{meta.get('name', '')}" if ns else str(meta.get("name", ""))


def split_key(key: str) -> tuple[str, str]:
    """(namespace, name) of a cache key."""
    ns, _, name = key.rpartition("/")
    return ns, name


def _rv(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def by_namespace(obj: Obj) -> list[str]:
    return [str((obj.get("metadata") or {}).get("namespace") or "")]


def by_owner_uid(obj: Obj) -> list[str]:
    return [str(r.get("uid")) for r in (obj.get("metadata") or {}).get(
        "ownerReferences") or [] if r.get("uid")]


def by_orphan_namespace(obj: Obj) -> list[str]:
    """The namespace of an object no controller owns (it may be adopted); else none."""
    meta = obj.get("metadata") or {}
    if any(r.get("controller") for r in meta.get("ownerReferences") or ()):
        return []
    return [str(meta.get("namespace") or "")]


_DEFAULT_INDEXES: dict[str, IndexFunc] = {
    "namespace": by_namespace, "owner": by_owner_uid, "orphan": by_orphan_namespace}


@dataclass
class Handler:
    on_add: Callable[[Obj], None] | None = None
    on_update: Callable[[Obj, Obj], None] | None = None
    on_delete: Callable[[Obj], None] | None = None


class Informer:
    """The cache of RESOURCE (in NAMESPACE, matching LABEL_SELECTOR) kept by list + watch."""

    def __init__(self, cluster: Cluster, resource: str, *, namespace: str = "",
                 label_selector: str = "", resync: float = 0.0) -> None:
        self.cluster = cluster
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.resync = resync
        self.handlers: list[Handler] = []
        self.items: dict[str, Obj] = {}
        self._indexers: dict[str, IndexFunc] = dict(_DEFAULT_INDEXES)
        # index -> value -> keys (a dict as an insertion-ordered set)
        self._indices: dict[str, dict[str, dict[str, None]]] = {
            name: {} for name in self._indexers}
        self.objects_read = 0
        self._synced = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.resource_version = ""
        self.relists = 0

    # -- reading the cache ----------------------------------------------------------------

    def get(self, key: str) -> Obj | None:
        return self.items.get(key)

    def list(self) -> Objs:
        self.objects_read += len(self.items)
        return list(self.items.values())

    def by_index(self, index: str, value: str) -> Objs:
        """The cached objects whose INDEX function gave VALUE, in the order they came."""
        keys = self._indices[index].get(value, {})
        self.objects_read += len(keys)
        return [self.items[k] for k in keys]

    def index_count(self, index: str, value: str) -> int:
        """How many cached objects INDEX maps to VALUE (reads none of them)."""
        return len(self._indices[index].get(value, ()))

    @property
    def has_synced(self) -> bool:
        return self._synced.is_set()

    async def wait_synced(self) -> None:
        await self._synced.wait()

    # -- configuration --------------------------------------------------------------------

    def add_index(self, name: str, fn: IndexFunc) -> None:
        """Index the cache by FN's values (existing entries are indexed now)."""
        if name in self._indexers:
            return
        self._indexers[name] = fn
        self._indices[name] = {}
        for key, obj in self.items.items():
            for v in fn(obj):
                self._indices[name].setdefault(v, {})[key] = None

    def add_handler(self, handler: Handler) -> None:
        """Register HANDLER; objects already cached are delivered to it as adds."""
        self.handlers.append(handler)
        if handler.on_add:
            for obj in list(self.items.values()):
                handler.on_add(obj)

    # -- the cache ------------------------------------------------------------------------

    def _index(self, key: str, obj: Obj | None, old: Obj | None) -> None:
        for name, fn in self._indexers.items():
            idx = self._indices[name]
            before = list(fn(old)) if old is not None else []
            after = list(fn(obj)) if obj is not None else []
            if before == after:
                continue  # the usual update: the object stays where it is
            for v in before:
                s = idx.get(v)
                if s is not None:
                    s.pop(key, None)
                    if not s:
                        del idx[v]
            for v in after:
                idx.setdefault(v, {})[key] = None

    def _put(self, obj: Obj) -> None:
        key = key_of(obj)
        old = self.items.get(key)
        self.items[key] = obj
        self._index(key, obj, old)
        for h in self.handlers:
            if old is None:
                if h.on_add:
                    h.on_add(obj)
            elif h.on_update:
                h.on_update(old, obj)

    def _remove(self, obj: Obj) -> None:
        key = key_of(obj)
        old = self.items.pop(key, None)
        if old is None:
            return
        self._index(key, None, old)
        for h in self.handlers:
            if h.on_delete:
                h.on_delete(obj)

    async def _replace(self, objs: Objs) -> None:
        """The cache becomes OBJS; handlers hear of each difference. Yields to the loop
        every YIELD_EVERY objects: a re-list of 10000 pods must not starve the rest of
        the process (the leader's lease renewal among them)."""
        fresh = {key_of(o): o for o in objs}
        for n, key in enumerate([k for k in self.items if k not in fresh], 1):
            self._remove(self.items[key])
            if n % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        for n, (key, obj) in enumerate(fresh.items(), 1):
            old = self.items.get(key)
            if old is None or _rv(old) != _rv(obj):
                self._put(obj)
            if n % YIELD_EVERY == 0:
                await asyncio.sleep(0)

    # -- running --------------------------------------------------------------------------

    async def _list(self) -> None:
        """List in pages of LIST_PAGE (each continue token pins the first page's
        revision, so the pages make one consistent snapshot), then replace the cache."""
        items: Objs = []
        token, revision = "", ""
        while True:
            page = await self.cluster.list(self.resource, namespace=self.namespace,
                                           label_selector=self.label_selector,
                                           limit=LIST_PAGE, continue_token=token)
            items.extend(page["items"])
            revision = revision or str(page["metadata"]["resourceVersion"])
            token = str(page["metadata"].get("continue") or "")
            if not token:
                break
        self.relists += 1
        await self._replace(items)
        self.resource_version = revision
        self._synced.set()

    async def _watch(self) -> bool:
        """Watch from the last resourceVersion; False when a re-list is needed."""
        events = 0
        try:
            async for ev in self.cluster.watch(self.resource, namespace=self.namespace,
                                               label_selector=self.label_selector,
                                               resource_version=self.resource_version):
                events += 1
                kind, obj = ev["type"], ev["object"]
                if kind == "ERROR":
                    return False
                rv = _rv(obj)
                if rv:
                    self.resource_version = rv
                if kind in ("ADDED", "MODIFIED"):
                    self._put(obj)
                elif kind == "DELETED":
                    self._remove(obj)
        except e.APIError as err:
            if err.reason is not e.Reason.GONE:
                log.warning("informer %s: watch failed: %s", self.resource, err)
                await asyncio.sleep(RETRY_DELAY)
            return False
        if not events:
            await asyncio.sleep(RETRY_DELAY)  # ended at once: do not spin
        return True

    async def run(self) -> None:
        """List, then watch for ever; re-list when the watch's history is gone. A
        restarted informer first tries to resume from the last resourceVersion it saw."""
        while True:
            if not self.resource_version:
                try:
                    await self._list()
                except asyncio.CancelledError:
                    raise
                except Exception as err:
                    log.warning("informer %s: list failed: %s", self.resource, err)
                    await asyncio.sleep(RETRY_DELAY)
                    continue
            while await self._watch():
                pass
            self.resource_version = ""

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.resync)
            for obj in list(self.items.values()):
                for h in self.handlers:
                    if h.on_update:
                        h.on_update(obj, obj)

    def start(self) -> None:
        if self._tasks:
            return
        self._tasks.append(asyncio.create_task(self.run(), name=f"informer-{self.resource}"))
        if self.resync > 0:
            self._tasks.append(asyncio.create_task(self._resync()))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks.clear()


class Informers:
    """One shared informer per (resource, namespace) for every controller."""

    def __init__(self, cluster: Cluster, *, resync: float = 0.0) -> None:
        self.cluster = cluster
        self.resync = resync
        self._all: dict[tuple[str, str], Informer] = {}

    def get(self, resource: str, namespace: str = "") -> Informer:
        inf = self._all.get((resource, namespace))
        if inf is None:
            inf = self._all[(resource, namespace)] = Informer(
                self.cluster, resource, namespace=namespace, resync=self.resync)
        return inf

    def start(self) -> None:
        for inf in self._all.values():
            inf.start()

    async def wait_synced(self) -> None:
        await asyncio.gather(*(inf.wait_synced() for inf in self._all.values()))

    async def stop(self) -> None:
        for inf in self._all.values():
            await inf.stop()
