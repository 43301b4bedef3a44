"""Namespaces as this API server's watch cache sees them: the check every create makes
(ObjectService.namespace_usable) without a read from etcd each time.

::

    start() ─► the namespaces WatchCache, started ─► list the namespaces at its revision R
            ─► its events after R, as one more watcher of the cache: name -> object
            (the cache ends the watch on compaction: list again)

    lookup(name, written=W) ─► the view has seen revision W (this process's last write of
                               a namespace)? else wait for it, at most CATCH_UP s
                            ─► the namespace as the view holds it, or None: not in the
                               view (created a moment ago elsewhere?), or the view is not
                               running or caught up: the caller asks the store

Within one API server a namespace marked for deletion is refused from the next create on;
across servers, after the watch's delay (milliseconds). The timer this replaces trusted a
namespace for 2 s after it was last read, so creates slipped into it meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from api import jsoncodec
from api import selectors as sel
from controlplane.apiserver.watchcache import WatchCache
from controlplane.storage import errors as se
from controlplane.storage import keys
from controlplane.storage.interface import Store

log = logging.getLogger("corral.nsview")

CATCH_UP = 1.0  # seconds a check waits for the view to see this process's own write
RETRY = 0.5
Obj = dict[str, Any]


class NamespaceView:
    def __init__(self, store: Store, cache: WatchCache) -> None:
        self.store = store
        self.cache = cache
        self.objects: dict[str, Obj] = {}
        self.revision = 0  # every namespace change up to here is in self.objects
        self.ready = False
        self._tick = asyncio.Event()  # set (and replaced) whenever revision moves
        self._started = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Run the view; return once it has listed (or failed its first list)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        await self._started.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.ready = False

    async def lookup(self, name: str, *, written: int = 0) -> Obj | None:
        """Namespace NAME as the view holds it once it has seen revision WRITTEN; None
        when the view does not hold it, or is not running or caught up in time."""
        if not self.ready:
            return None
        if self.revision < written:
            try:
                await asyncio.wait_for(self._seen(written), CATCH_UP)
            except TimeoutError:
                return None
        return self.objects.get(name) if self.ready else None

    async def _seen(self, revision: int) -> None:
        while self.revision < revision:
            tick = self._tick
            await tick.wait()

    def _moved(self, revision: int) -> None:
        self.revision = max(self.revision, revision)
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    async def _run(self) -> None:
        prefix = keys.list_prefix("namespaces")
        while True:
            try:
                await self.cache.start()
                rev = self.cache.revision
                items = (await self.store.list(prefix, revision=rev or None)).items
                self.objects = {}
                for item in items:
                    obj = jsoncodec.loads(item.value)
                    self.objects[(obj.get("metadata") or {}).get("name", "")] = obj
                self.revision, self.ready = 0, True
                self._moved(rev)
                self._started.set()
                async for ev in self.cache.watch(
                        namespace="", labels=sel.Selector([]),
                        fields=sel.FieldSelector([]), from_revision=rev, bookmarks=False):
                    self._apply(ev)
                log.info("namespace view: the watch ended; listing again")
            except se.StorageError as err:
                log.warning("namespace view: %s; retrying", err)
                await asyncio.sleep(RETRY)
            finally:
                self.ready = False
                self._started.set()

    def _apply(self, ev: Obj) -> None:
        obj = ev["object"] or {}
        meta = obj.get("metadata") or {}
        if ev["type"] == "DELETED":
            self.objects.pop(meta.get("name", ""), None)
        elif ev["type"] in ("ADDED", "MODIFIED"):
            self.objects[meta.get("name", "")] = obj
        self._moved(int(meta.get("resourceVersion") or 0))
