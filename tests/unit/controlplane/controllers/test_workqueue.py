"""The work queue: de-duplication, in-flight exclusion, backoff, delays (fake clock)."""

from __future__ import annotations

import asyncio

import pytest

from controlplane.controllers.workqueue import Backoff, ShutDown, WorkQueue


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_adds_of_one_key_are_handed_out_once() -> None:
    q = WorkQueue()
    for k in ("a", "b", "a", "a", "c", "b"):
        q.add(k)
    assert len(q) == 3
    assert [q.get_nowait() for _ in range(4)] == ["a", "b", "c", None]


def test_a_key_being_processed_is_not_handed_out_again_until_done() -> None:
    q = WorkQueue()
    q.add("a")
    assert q.get_nowait() == "a"
    q.add("a")
    q.add("a")
    assert q.get_nowait() is None  # in flight
    assert q.processing() == {"a"}
    q.done("a")
    assert q.get_nowait() == "a"  # re-added while processing: once, after done
    q.done("a")
    assert q.get_nowait() is None


@pytest.mark.parametrize(("failures", "delay"), [
    pytest.param(0, 0.005, id="first"),
    pytest.param(1, 0.01, id="second"),
    pytest.param(5, 0.16, id="sixth"),
    pytest.param(20, 1000.0, id="capped"),
])
def test_backoff_doubles_from_5ms_to_1000s(failures: int, delay: float) -> None:
    b = Backoff()
    for _ in range(failures):
        b.when("k")
    assert b.when("k") == pytest.approx(delay)
    assert b.when("other") == pytest.approx(0.005)


def test_rate_limited_adds_wait_and_forget_resets() -> None:
    clock = Clock()
    q = WorkQueue(clock=clock)
    q.add_rate_limited("k")  # 5 ms
    assert q.get_nowait() is None and q.waiting() == 1
    clock.t += 0.005
    assert q.get_nowait() == "k"
    q.done("k")
    q.add_rate_limited("k")  # 10 ms
    clock.t += 0.009
    assert q.get_nowait() is None
    clock.t += 0.001
    assert q.get_nowait() == "k"
    q.done("k")
    assert q.retries("k") == 2
    q.forget("k")
    assert q.retries("k") == 0


def test_add_after_keeps_the_earliest_time() -> None:
    clock = Clock()
    q = WorkQueue(clock=clock)
    q.add_after("k", 10)
    q.add_after("k", 2)
    q.add_after("k", 5)
    clock.t += 2
    assert q.get_nowait() == "k"
    q.done("k")
    clock.t += 10
    assert q.get_nowait() is None  # the later adds were folded into the first


@pytest.mark.asyncio
async def test_get_waits_for_an_add_and_for_a_delay() -> None:
    q = WorkQueue()
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    assert not getter.done()
    q.add("x")
    assert await asyncio.wait_for(getter, 1) == "x"
    q.done("x")
    q.add_after("y", 0.02)
    assert await asyncio.wait_for(q.get(), 1) == "y"


@pytest.mark.asyncio
async def test_fake_clock_delays_need_a_wake() -> None:
    clock = Clock()
    q = WorkQueue(clock=clock)
    q.add_after("k", 60)
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0.01)
    assert not getter.done()
    clock.t += 60
    q.wake()
    assert await asyncio.wait_for(getter, 1) == "k"


@pytest.mark.asyncio
async def test_shutdown_drains_then_raises() -> None:
    q = WorkQueue()
    q.add("a")
    waiting = WorkQueue()
    blocked = asyncio.create_task(waiting.get())
    await asyncio.sleep(0)
    q.shutdown()
    waiting.shutdown()
    q.add("b")  # ignored
    assert await q.get() == "a"
    with pytest.raises(ShutDown):
        await q.get()
    with pytest.raises(ShutDown):
        await asyncio.wait_for(blocked, 1)
