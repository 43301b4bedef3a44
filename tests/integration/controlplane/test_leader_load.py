"""Leadership under load on a real etcd: a leader whose event loop is blocked (a long
synchronous re-list) keeps leading, because its renewals run on their own thread."""

from __future__ import annotations

import asyncio
import time

import pytest

from controlplane import leader
from controlplane.leaderlease import Timing
from controlplane.storage import EtcdStore, Fence, FencedStore

pytestmark = pytest.mark.asyncio
# etcd's minimum lease ttl is 2 s with its default election timeout; 3 s leaves the
# blocked loop of the second case room to exceed the whole ttl
TIMING = Timing(lease_duration=3, renew_deadline=2.4, retry_period=0.6)


@pytest.mark.parametrize("blocked", [
    pytest.param(2.7, id="blocked-past-the-renew-deadline-within-the-ttl"),
    pytest.param(4.5, id="blocked-longer-than-the-whole-ttl"),
])
async def test_a_leader_with_a_blocked_loop_keeps_leading(etcd_endpoint: str,
                                                          blocked: float) -> None:
    store_a, store_b = EtcdStore([etcd_endpoint]), EtcdStore([etcd_endpoint])
    fences: dict[str, list[Fence]] = {"a": [], "b": []}
    leading = {"a": asyncio.Event(), "b": asyncio.Event()}

    def work(name: str) -> leader.Work:
        async def run(fence: Fence) -> None:
            fences[name].append(fence)
            leading[name].set()
            await asyncio.Event().wait()
        return run

    a = asyncio.create_task(leader.run_when_leader(
        store_a, component="controlplane", identity="a", work=work("a"), timing=TIMING,
        renew_store=lambda: EtcdStore([etcd_endpoint], timeout=TIMING.lease_duration)))
    await asyncio.wait_for(leading["a"].wait(), 5)
    b = asyncio.create_task(leader.run_when_leader(
        store_b, component="controlplane", identity="b", work=work("b"), timing=TIMING))
    try:
        await asyncio.sleep(0.3)  # b is watching the key
        time.sleep(blocked)  # the whole loop stops, as a long synchronous re-list does
        await asyncio.sleep(TIMING.lease_duration)  # b would have its chance now
        assert not leading["b"].is_set(), "the standby took over from a busy leader"
        assert len(fences["a"]) == 1, "the leader's term was restarted"
        assert await leader.current_leader(store_b, "controlplane") == "a"
        await FencedStore(store_a, fences["a"][0]).create("/registry/pods/ns/after", b"x")
    finally:
        for task in (a, b):
            task.cancel()
        await asyncio.gather(a, b, return_exceptions=True)
        await store_a.close()
        await store_b.close()


async def test_without_its_own_thread_a_blocked_leader_loses_its_term(
        etcd_endpoint: str) -> None:
    """The control: renewing on the blocked loop itself loses the lease: the standby
    leads, or (both candidates share this loop, so either may win the race) the leader's
    term ends and a new one starts."""
    store_a, store_b = EtcdStore([etcd_endpoint]), EtcdStore([etcd_endpoint])
    terms = {"a": 0, "b": 0}
    changed = asyncio.Event()

    def work(name: str) -> leader.Work:
        async def run(fence: Fence) -> None:
            terms[name] += 1
            if terms["a"] > 1 or terms["b"]:
                changed.set()
            await asyncio.Event().wait()
        return run

    a = asyncio.create_task(leader.run_when_leader(
        store_a, component="controlplane", identity="a", work=work("a"), timing=TIMING))
    b = None
    try:
        async with asyncio.timeout(5):
            while not terms["a"]:
                await asyncio.sleep(0.05)
        b = asyncio.create_task(leader.run_when_leader(
            store_b, component="controlplane", identity="b", work=work("b"), timing=TIMING))
        await asyncio.sleep(0.3)
        assert not changed.is_set()
        time.sleep(4.5)
        await asyncio.wait_for(changed.wait(), TIMING.lease_duration + 2)
    finally:
        tasks = [t for t in (a, b) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await store_a.close()
        await store_b.close()
