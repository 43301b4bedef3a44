"""Compaction keeps one interval of history: a watcher older than that gets Gone."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from controlplane.storage import Gone, InMemoryStore
from controlplane.storage.compaction import compact_once, compact_periodically

KEY = "/registry/configmaps/default/a"


def test_compact_once_compacts_to_the_previous_tick() -> None:
    async def go() -> None:
        s = InMemoryStore()
        r1 = await s.create(KEY, b"1")
        nxt = await compact_once(s, None)  # first tick: nothing compacted yet
        assert nxt == r1
        r2 = await s.update(KEY, b"2", r1)
        assert await compact_once(s, nxt) == r2
        with pytest.raises(Gone):  # history before r1 is gone ...
            await s.list("/registry/configmaps/", revision=r1 - 1)
        page = await s.list("/registry/configmaps/", revision=r1)  # ... r1 itself is kept
        assert [i.value for i in page.items] == [b"1"]
    asyncio.run(go())


def test_compact_periodically_runs_until_cancelled() -> None:
    async def go() -> None:
        s = InMemoryStore()
        r1 = await s.create(KEY, b"1")
        await s.update(KEY, b"2", r1)
        task = asyncio.create_task(compact_periodically(s, interval=0.01))
        await asyncio.sleep(0.1)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with pytest.raises(Gone):
            await s.list("/registry/configmaps/", revision=r1)
    asyncio.run(go())
