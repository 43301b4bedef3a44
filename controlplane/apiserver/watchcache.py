"""Watch fan-out: one etcd watch per resource, shared by every client watching it.

    etcd ──watch /registry/pods/──► WatchCache("pods") ──► ring of recent events
                                        │   (decoded once, JSON encoded once)
                                        ├──► watcher 1 (namespace, selectors) ─► its queue
                                        ├──► watcher 2 ...
                                        └──► watcher N

A watcher that starts at a revision still in the ring gets the events after it replayed
from memory, then the live ones; an older revision is served by a direct store watch (so
"too old resource version" still comes from etcd's compaction). A watcher that falls
more than QUEUE_LIMIT events behind is ended, as Kubernetes ends slow watchers: the client
resumes from the last resourceVersion it saw.

Only a watcher with selectors looks at the value before a change (did the object match
before?): it is decoded when first asked for, and while such a watcher is there the cache
keeps each key's last value (``latest``) so that it is mostly not decoded at all.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from api import jsoncodec
from api import selectors as sel
from controlplane.apiserver.resources import Resource
from controlplane.storage import errors as se
from controlplane.storage import keys
from controlplane.storage.interface import EventType, Store

log = logging.getLogger("corral.watchcache")

RING = 4096
QUEUE_LIMIT = 10_000
Obj = dict[str, Any]


@dataclass(slots=True)
class Cached:
    """One change, decoded and encoded once for every watcher. The value before it
    (``prev``, only selector watchers look at it) is decoded when first asked for."""

    type: str  # ADDED MODIFIED DELETED BOOKMARK
    revision: int
    key: str
    obj: Obj | None
    raw: bytes
    prev_value: bytes | None = None
    known_prev: Obj | None = None  # prev_value decoded, or an equal copy already decoded

    @property
    def prev(self) -> Obj | None:
        if self.known_prev is None and self.prev_value is not None:
            self.known_prev = jsoncodec.loads(self.prev_value)
        return self.known_prev


Latest = collections.OrderedDict[str, tuple[bytes, Obj]]


def cached(ev: Any, res: Resource, latest: Latest | None = None) -> Cached:
    """EV decoded (and encoded with its resourceVersion) once for every watcher. LATEST
    (key -> the value of its last change, decoded) spares decoding the value before
    the change when it is the one the cache last saw for the key: that copy only serves
    to match selectors, and the two differ only in metadata.resourceVersion, which no
    selector can name. LATEST is updated with EV and keeps at most RING keys."""
    if ev.type is EventType.BOOKMARK:
        obj: Obj = {"apiVersion": res.api_version, "kind": res.kind,
                    "metadata": {"resourceVersion": str(ev.revision)}}
        return Cached("BOOKMARK", ev.revision, "", obj, jsoncodec.dumps(obj))
    obj = jsoncodec.loads(ev.value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(ev.revision)
    raw = jsoncodec.dumps(obj)
    known: Obj | None = None
    if ev.prev_value is not None and latest is not None:
        seen = latest.get(ev.key)
        known = seen[1] if seen is not None and seen[0] == ev.prev_value else None
    if latest is not None:
        if ev.type is EventType.DELETED:
            latest.pop(ev.key, None)
        else:
            latest[ev.key] = (ev.value, obj)
            latest.move_to_end(ev.key)
            if len(latest) > RING:
                latest.popitem(last=False)
    return Cached(ev.type.value, ev.revision, ev.key, obj, raw, ev.prev_value, known)


class Selection:
    """What one watcher asked for: a key prefix (its namespace), selectors, bookmarks."""

    __slots__ = ("bookmarks", "fields", "labels", "prefix")

    def __init__(self, prefix: str, labels: sel.Selector, fields: sel.FieldSelector,
                 bookmarks: bool) -> None:
        self.prefix = prefix
        self.labels = labels
        self.fields = fields
        self.bookmarks = bookmarks


class _Watcher(Selection):
    __slots__ = ("closed", "queue")

    def __init__(self, prefix: str, labels: sel.Selector, fields: sel.FieldSelector,
                 bookmarks: bool) -> None:
        super().__init__(prefix, labels, fields, bookmarks)
        self.queue: asyncio.Queue[Cached | None] = asyncio.Queue()
        self.closed = False

    def offer(self, c: Cached) -> None:
        if self.closed:
            return
        if self.queue.qsize() >= QUEUE_LIMIT:
            self.closed = True  # too slow: end it; the client re-watches from its last RV
            self.queue.put_nowait(None)
            return
        self.queue.put_nowait(c)


def matches(obj: Obj | None, labels: sel.Selector, fields: sel.FieldSelector) -> bool:
    if obj is None:
        return False
    return labels.matches((obj.get("metadata") or {}).get("labels") or {}) and \
        fields.matches(obj)


def view(c: Cached, w: Selection) -> tuple[str, Obj | None, bytes] | None:
    """What watcher W sees of change C: the event type, or None if not for it. An object
    that stops matching the selectors is DELETED for W, one that starts matching ADDED,
    as Kubernetes' filtered watches do."""
    if c.type == "BOOKMARK":
        return ("BOOKMARK", c.obj, c.raw) if w.bookmarks else None
    if not c.key.startswith(w.prefix):
        return None
    if w.labels.empty() and not w.fields.requirements:
        return c.type, c.obj, c.raw
    now = c.type != "DELETED" and matches(c.obj, w.labels, w.fields)
    before = matches(c.prev, w.labels, w.fields)
    if c.type == "DELETED":
        return ("DELETED", c.obj, c.raw) if before else None
    if now:
        return ("MODIFIED" if before else "ADDED"), c.obj, c.raw
    return ("DELETED", c.obj, c.raw) if before else None


class WatchCache:
    def __init__(self, store: Store, res: Resource, *, bookmark_interval: float = 5.0
                 ) -> None:
        self.store = store
        self.res = res
        self.prefix = keys.list_prefix(res.name)
        self.bookmark_interval = bookmark_interval
        self.ring: collections.deque[Cached] = collections.deque(maxlen=RING)
        # see cached(): kept only while a watcher with selectors (the only reader of the
        # values before changes) is there; emptied when the last one leaves
        self.latest: Latest = collections.OrderedDict()
        self.selective = 0  # watchers with selectors
        self.watchers: set[_Watcher] = set()
        self.revision = 0  # everything up to here has been seen
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        await self._ready.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for w in list(self.watchers):
            w.closed = True
            w.queue.put_nowait(None)

    async def _run(self) -> None:
        while True:
            try:
                if not self.revision:
                    self.revision = await self.store.current_revision()
                    self.ring.clear()
                    self.latest.clear()
                self._ready.set()
                stream = self.store.watch(self.prefix, from_revision=self.revision,
                                          bookmark_interval=self.bookmark_interval)
                try:
                    async for ev in stream:
                        c = cached(ev, self.res, self.latest if self.selective else None)
                        if c.type != "BOOKMARK":
                            self.ring.append(c)
                        self.revision = max(self.revision, c.revision)
                        for w in self.watchers:
                            w.offer(c)
                finally:
                    await stream.aclose()  # type: ignore[attr-defined]
            except se.Gone:
                # history we had not seen was compacted: every watcher must re-list
                log.warning("watch cache %s: history compacted; watchers restart",
                            self.res.name)
                for w in list(self.watchers):
                    w.closed = True
                    w.queue.put_nowait(None)
                self.revision = 0
            except se.StorageError as err:
                log.warning("watch cache %s: %s; retrying", self.res.name, err)
                await asyncio.sleep(0.5)

    def covers(self, revision: int) -> bool:
        """Can a watch from REVISION be served from memory?"""
        if revision >= self.revision:
            return True
        return bool(self.ring) and self.ring[0].revision <= revision + 1

    async def watch(self, *, namespace: str, labels: sel.Selector,
                    fields: sel.FieldSelector, from_revision: int, bookmarks: bool,
                    ) -> AsyncIterator[Obj]:
        prefix = keys.list_prefix(self.res.name, namespace or None) if \
            self.res.namespaced and namespace else self.prefix
        w = _Watcher(prefix, labels, fields, bookmarks)
        from_revision = from_revision or self.revision
        backlog = [c for c in self.ring if c.revision > from_revision]
        selective = not (labels.empty() and not fields.requirements)
        self.watchers.add(w)
        self.selective += selective
        try:
            last = from_revision
            for c in backlog:
                out = view(c, w)
                last = c.revision
                if out is not None:
                    yield {"type": out[0], "object": out[1], "raw": out[2]}
            while True:
                c2 = await w.queue.get()
                if c2 is None:
                    return
                if c2.revision <= last and c2.type != "BOOKMARK":
                    continue  # already replayed from the ring
                out = view(c2, w)
                if out is not None:
                    yield {"type": out[0], "object": out[1], "raw": out[2]}
        finally:
            self.watchers.discard(w)
            self.selective -= selective
            if not self.selective:
                self.latest.clear()
