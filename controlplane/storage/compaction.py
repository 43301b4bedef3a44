"""Periodic compaction: etcd keeps every revision until told otherwise.

Like the Kubernetes API server, every INTERVAL we compact to the revision we saw one tick
earlier, so at least one interval of history stays for watchers that reconnect; a
watcher further behind gets Gone ("too old resource version") and relists.
"""

from __future__ import annotations

import asyncio
import logging

from controlplane.storage.errors import StorageError
from controlplane.storage.interface import Store

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 300.0  # Kubernetes' --etcd-compaction-interval


async def compact_once(store: Store, previous: int | None) -> int:
    """Compact to PREVIOUS (if any); return the revision to compact to next time."""
    current = await store.current_revision()
    if previous is not None and previous > 0:
        await store.compact(previous)
    return current


async def compact_periodically(store: Store, interval: float = DEFAULT_INTERVAL) -> None:
    """Run until cancelled; a failed tick (etcd away) is logged and retried next time."""
    previous: int | None = None
    while True:
        await asyncio.sleep(interval)
        try:
            previous = await compact_once(store, previous)
        except StorageError as e:
            log.warning("compaction skipped: %s", e)
