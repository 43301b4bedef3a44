"""The scheduler service on a real etcd: batched fenced binds, two schedulers racing."""

from __future__ import annotations

import asyncio
import json

import pytest

from controlplane.local import LocalClient
from controlplane.scheduler.service import SchedulerService
from controlplane.storage import EtcdStore, Fence
from tests.unit.controlplane.scheduler.service_harness import (
    add_node,
    add_pod,
    bound,
    eventually,
    make_cluster,
)

pytestmark = pytest.mark.asyncio


async def _setup(store: EtcdStore, *, nodes: int, pods: int) -> LocalClient:
    client = await make_cluster(store)
    for i in range(nodes):
        await add_node(client, f"n{i}", cpu="4")
    await asyncio.gather(*(add_pod(client, f"p{i}", cpu="100m") for i in range(pods)))
    return client


async def _binds_per_pod(store: EtcdStore, since: int) -> dict[str, int]:
    """How many writes set spec.nodeName on each pod (from etcd's own history)."""
    counts: dict[str, int] = {}
    sentinel = "/registry/pods/~end/of-history"
    await store.create(sentinel, b"{}")
    stream = store.watch("/registry/pods/", from_revision=since)
    async for ev in stream:
        if ev.key == sentinel:
            break
        prev = json.loads(ev.prev_value) if ev.prev_value else {}
        if json.loads(ev.value)["spec"].get("nodeName") and not prev.get("spec", {}).get(
                "nodeName"):
            counts[ev.key] = counts.get(ev.key, 0) + 1
    await stream.aclose()  # type: ignore[attr-defined]
    return counts


async def test_200_pods_on_20_nodes_bound_exactly_once(etcd_endpoint: str) -> None:
    store = EtcdStore([etcd_endpoint])
    try:
        client = await _setup(store, nodes=20, pods=200)
        since = await store.current_revision()
        fence = Fence("/corral/leader/scheduler", await store.create(
            "/corral/leader/scheduler", b"me"))
        service = SchedulerService(client, store, fence=fence)
        task = asyncio.create_task(service.run())
        try:
            async def all_bound() -> bool:
                return len(await bound(client)) == 200
            await eventually(all_bound, timeout=20)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert service.bound == 200
        assert service.binder.transactions < 200  # batched: many pods per txn
        placed = await bound(client)
        per_node = [list(placed.values()).count(f"n{i}") for i in range(20)]
        assert max(per_node) - min(per_node) <= 10  # spread by LeastAllocated
        counts = await _binds_per_pod(store, since)
        assert len(counts) == 200 and set(counts.values()) == {1}
    finally:
        await store.close()


async def test_two_schedulers_racing_never_bind_a_pod_twice(etcd_endpoint: str) -> None:
    stores = [EtcdStore([etcd_endpoint]) for _ in range(2)]
    try:
        client = await _setup(stores[0], nodes=10, pods=300)
        since = await stores[0].current_revision()
        services = []
        for i, store in enumerate(stores):
            key = f"/corral/leader/scheduler-{i}"
            fence = Fence(key, await store.create(key, b"me"))
            services.append(SchedulerService(LocalClient(client.objects), store, fence=fence,
                                             batch=20))
        tasks = [asyncio.create_task(s.run()) for s in services]
        try:
            async def all_bound() -> bool:
                return len(await bound(client)) == 300
            await eventually(all_bound, timeout=25)
            await asyncio.sleep(0.3)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        assert sum(s.bound for s in services) == 300
        counts = await _binds_per_pod(stores[0], since)
        assert len(counts) == 300 and set(counts.values()) == {1}
    finally:
        for s in stores:
            await s.close()
