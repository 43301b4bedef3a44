"""Leader election on a real etcd: leases, a standby taking over, fenced late writes."""

from __future__ import annotations

import asyncio
import time

import pytest

from controlplane import leader
from controlplane.storage import EtcdStore, Fence, Fenced, FencedStore, Unavailable

pytestmark = pytest.mark.asyncio
TTL = 2  # etcd's minimum lease ttl with its default election timeout


class FrozenRenewals(EtcdStore):
    """A real EtcdStore whose lease renewals can be stopped, as for a leader frozen or
    cut off from etcd while its process lives on."""

    frozen = False

    async def keep_alive(self, lease: int) -> int:
        if self.frozen:
            raise Unavailable("renewals stopped by the test")
        return await super().keep_alive(lease)

    async def grant_lease(self, ttl: int) -> int:
        # cut off from campaigning too: otherwise a may win the key back before b, since
        # both race for it once a's lease is gone (its late writes still reach etcd)
        if self.frozen:
            raise Unavailable("lease grants stopped by the test")
        return await super().grant_lease(ttl)


async def test_standby_leads_within_the_ttl_and_the_deposed_leader_is_fenced(
        etcd_endpoint: str) -> None:
    store_a, store_b = FrozenRenewals([etcd_endpoint]), EtcdStore([etcd_endpoint])
    fences: dict[str, Fence] = {}
    leading = {"a": asyncio.Event(), "b": asyncio.Event()}
    a_stopped = asyncio.Event()

    def work(name: str) -> leader.Work:
        async def run(fence: Fence) -> None:
            fences[name] = fence
            leading[name].set()
            try:
                await asyncio.Event().wait()
            finally:
                if name == "a":
                    a_stopped.set()
        return run

    a = asyncio.create_task(leader.run_when_leader(
        store_a, component="scheduler", identity="a", work=work("a"), ttl=TTL))
    await asyncio.wait_for(leading["a"].wait(), 5)
    b = asyncio.create_task(leader.run_when_leader(
        store_b, component="scheduler", identity="b", work=work("b"), ttl=TTL))
    try:
        await asyncio.sleep(TTL * 1.5)  # a renews: b stays standby past the ttl
        assert not leading["b"].is_set()
        assert await leader.current_leader(store_b, "scheduler") == "a"
        late = FencedStore(store_a, fences["a"])
        await late.create("/registry/pods/ns/early", b"x")  # a's fenced writes land
        store_a.frozen = True
        start = time.monotonic()
        await asyncio.wait_for(leading["b"].wait(), TTL + 3)
        took = time.monotonic() - start
        assert took <= TTL + 1.5, f"the standby took {took:.1f} s to lead"
        await asyncio.wait_for(a_stopped.wait(), TTL + 2)
        assert await leader.current_leader(store_b, "scheduler") == "b"
        with pytest.raises(Fenced, match="no longer the leader") as info:
            await late.create("/registry/pods/ns/late", b"x")
        assert info.value.current_revision == fences["b"].revision
        await FencedStore(store_b, fences["b"]).create("/registry/pods/ns/late", b"x")
    finally:
        for task in (a, b):
            task.cancel()
        await asyncio.gather(a, b, return_exceptions=True)
        await store_a.close()
        await store_b.close()


async def test_graceful_stop_hands_over_without_waiting_for_the_ttl(
        etcd_endpoint: str) -> None:
    stores = [EtcdStore([etcd_endpoint]) for _ in range(2)]
    leading = [asyncio.Event(), asyncio.Event()]

    def work(i: int) -> leader.Work:
        async def run(fence: Fence) -> None:
            leading[i].set()
            await asyncio.Event().wait()
        return run

    tasks = [asyncio.create_task(leader.run_when_leader(
        s, component="controllers", identity=str(i), work=work(i), ttl=30))
        for i, s in enumerate(stores)]
    try:
        done, _ = await asyncio.wait([asyncio.create_task(e.wait()) for e in leading],
                                     timeout=5, return_when=asyncio.FIRST_COMPLETED)
        first = 0 if leading[0].is_set() else 1
        assert done and not leading[1 - first].is_set()
        tasks[first].cancel()
        start = time.monotonic()
        await asyncio.wait_for(leading[1 - first].wait(), 3)
        assert time.monotonic() - start < 2  # not the 30 s ttl
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for s in stores:
            await s.close()
