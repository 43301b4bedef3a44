"""The pull's per-digest in-flight table: one download per (store, digest) at a time."""

from __future__ import annotations

import asyncio

import pytest

from runtime.service.content import Digest, MemoryContentStore
from runtime.service.images.pull import _INFLIGHT, _once

D = Digest("sha256:" + "a" * 64)


def test_second_caller_awaits_the_first_download() -> None:
    store = MemoryContentStore()
    calls = []

    async def fetch() -> int:
        calls.append(1)
        await asyncio.sleep(0.05)
        return 42

    async def go() -> list[int]:
        return list(await asyncio.gather(_once(store, D, fetch), _once(store, D, fetch)))

    assert asyncio.run(go()) == [42, 0]  # the second downloaded nothing itself
    assert calls == [1] and _INFLIGHT == {}


def test_other_stores_do_not_share() -> None:
    calls = []

    async def fetch() -> int:
        calls.append(1)
        await asyncio.sleep(0.01)
        return 1

    async def go() -> None:
        await asyncio.gather(_once(MemoryContentStore(), D, fetch),
                             _once(MemoryContentStore(), D, fetch))

    asyncio.run(go())
    assert len(calls) == 2


def test_a_failed_download_is_tried_again_by_the_waiter() -> None:
    store = MemoryContentStore()
    calls = []

    async def fetch() -> int:
        calls.append(1)
        await asyncio.sleep(0.01)
        if len(calls) == 1:
            raise RuntimeError("first failed")
        return 7

    async def go() -> list[object]:
        return list(await asyncio.gather(_once(store, D, fetch), _once(store, D, fetch),
                                         return_exceptions=True))

    first, second = asyncio.run(go())
    assert isinstance(first, RuntimeError) and second == 7
    assert len(calls) == 2 and _INFLIGHT == {}


def test_a_cancelled_waiter_does_not_cancel_the_download() -> None:
    store = MemoryContentStore()

    async def fetch() -> int:
        await asyncio.sleep(0.05)
        return 3

    async def go() -> int:
        owner = asyncio.ensure_future(_once(store, D, fetch))
        await asyncio.sleep(0)
        waiter = asyncio.ensure_future(_once(store, D, fetch))
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        return await owner

    assert asyncio.run(go()) == 3
    assert _INFLIGHT == {}
