"""The scheduler service over InMemoryStore + ObjectService: binds, failures, events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from controlplane.local import LocalClient
from controlplane.scheduler.service import SchedulerService
from controlplane.storage import InMemoryStore
from tests.unit.controlplane.scheduler.service_harness import (
    add_node,
    add_pod,
    bound,
    eventually,
    make_cluster,
)

pytestmark = pytest.mark.asyncio
GPU_TAINT = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}


@pytest_asyncio.fixture
async def env() -> AsyncIterator[tuple[InMemoryStore, LocalClient]]:
    store = InMemoryStore()
    yield store, await make_cluster(store)
    await store.close()


async def start(store: InMemoryStore, client: LocalClient) -> tuple[SchedulerService,
                                                                     asyncio.Task[None]]:
    service = SchedulerService(client, store)
    return service, asyncio.create_task(service.run())


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_every_pod_bound_once_within_capacity(
        env: tuple[InMemoryStore, LocalClient]) -> None:
    store, client = env
    for i in range(4):
        await add_node(client, f"n{i}", cpu="1")
    for i in range(10):  # before the scheduler starts: found by the list
        await add_pod(client, f"early{i}", cpu="200m")
    service, task = await start(store, client)
    try:
        for i in range(10):  # while it runs: found by the watch
            await add_pod(client, f"late{i}", cpu="200m")
        await eventually(lambda: _count(client, 20))
        placed = await bound(client)
        per_node = {n: list(placed.values()).count(n) for n in set(placed.values())}
        assert max(per_node.values()) <= 5  # 1 cpu / 200m
        assert service.bound == 20
    finally:
        await stop(task)


async def _count(client: LocalClient, n: int) -> bool:
    return len(await bound(client)) == n


async def test_unschedulable_pod_gets_the_reason_then_binds_when_a_node_fits(
        env: tuple[InMemoryStore, LocalClient]) -> None:
    store, client = env
    for i in range(3):
        await add_node(client, f"small{i}", cpu="1")
    for i in range(2):
        await add_node(client, f"gpu{i}", cpu="8", taints=[GPU_TAINT])
    await add_pod(client, "big", cpu="2")
    service, task = await start(store, client)
    want = ("0/5 nodes are available: 2 node(s) had untolerated taint {dedicated: gpu}, "
            "3 Insufficient cpu.")
    try:
        async def reported() -> bool:
            events = (await client.list("events", namespace="default"))["items"]
            return any(e["message"] == want for e in events)
        await eventually(reported)
        events = (await client.list("events", namespace="default"))["items"]
        assert [(e["reason"], e["type"], e["involvedObject"]["name"]) for e in events] == [
            ("FailedScheduling", "Warning", "big")]
        pod = await client.get("pods", "big", namespace="default")
        assert pod["status"]["conditions"][-1] | {"lastTransitionTime": ""} == {
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": want, "lastTransitionTime": ""}
        assert service.queue.where(pod) == "unschedulable"
        await asyncio.sleep(0.2)  # no news: no more writes about it
        assert len((await client.list("events", namespace="default"))["items"]) == 1
        await add_node(client, "large", cpu="4")  # a node add brings it back
        await eventually(lambda: _count(client, 1))
        assert (await bound(client)) == {"big": "large"}
        pod = await client.get("pods", "big", namespace="default")
        assert pod["status"]["conditions"][-1]["status"] == "True"
    finally:
        await stop(task)


async def test_preemption_evicts_the_victim_and_nominates_the_node(
        env: tuple[InMemoryStore, LocalClient]) -> None:
    store, client = env
    await add_node(client, "n1", cpu="1")
    await add_pod(client, "low", cpu="800m", priority=0, node_name="n1")
    await add_pod(client, "high", cpu="800m", priority=1000)
    _, task = await start(store, client)
    try:
        async def nominated() -> bool:
            pod = await client.get("pods", "high", namespace="default")
            return (pod.get("status") or {}).get("nominatedNodeName") == "n1"
        await eventually(nominated)
        low = await client.get("pods", "low", namespace="default")
        assert low["metadata"]["deletionTimestamp"]  # evicted gracefully, as Kubernetes does
        assert "nodeName" not in (await client.get("pods", "high", namespace="default"))[
            "spec"]
        await client.delete("pods", "low", namespace="default", grace_period=0)  # the agent
        async def high_bound() -> bool:
            return await bound(client) == {"high": "n1"}
        await eventually(high_bound)
        names = [p["metadata"]["name"] for p in
                 (await client.list("pods", namespace="default"))["items"]]
        assert names == ["high"]
    finally:
        await stop(task)


async def test_pods_of_another_scheduler_are_left_alone(
        env: tuple[InMemoryStore, LocalClient]) -> None:
    store, client = env
    await add_node(client, "n1")
    await add_pod(client, "mine")
    await add_pod(client, "theirs", schedulerName="other-scheduler")
    _, task = await start(store, client)
    try:
        await eventually(lambda: _count(client, 1))
        await asyncio.sleep(0.1)
        assert await bound(client) == {"mine": "n1"}
    finally:
        await stop(task)


class SlowCommits(InMemoryStore):
    """Commits that take DELAY seconds; records how many are out at once and their sizes."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.out = 0
        self.most_out = 0
        self.sizes: list[int] = []
        self.first_at_cycle: int | None = None  # pods scheduled when the first one went out
        self.service: SchedulerService | None = None

    async def commit(self, writes: Any, *, fence: Any = None) -> int:
        if self.service is not None and self.first_at_cycle is None and \
                any(w.key.startswith("/registry/pods/") for w in writes):
            self.first_at_cycle = self.service.fast.hits + self.service.fast.fallbacks
        self.out += 1
        self.most_out = max(self.most_out, self.out)
        self.sizes.append(len(writes))
        try:
            await asyncio.sleep(self.delay)
            return await super().commit(writes, fence=fence)
        finally:
            self.out -= 1


@pytest.mark.parametrize("in_flight", [pytest.param(1, id="one-txn-out"),
                                       pytest.param(3, id="three-txns-out")])
async def test_binds_overlap_the_cycle_in_group_commits(in_flight: int) -> None:
    store = SlowCommits(0.05)
    client = await make_cluster(store)
    try:
        for i in range(20):
            await add_node(client, f"n{i}", cpu="64", pods=110)
        for i in range(600):
            await add_pod(client, f"p{i}", cpu="10m")
        store.sizes.clear()
        service = SchedulerService(client, store, batch=50, binds_in_flight=in_flight)
        store.service = service
        task = asyncio.create_task(service.run())
        try:
            await eventually(lambda: _count(client, 600), timeout=20)
        finally:
            await stop(task)
        binds = store.sizes
        assert service.bound == 600
        assert store.most_out == in_flight  # as many transactions out as allowed, no more
        assert max(binds) == 50 and sum(binds) == 600
        assert len(binds) < 600 // 10  # group commit: pods share transactions
        # the first bind went out while the cycle still had pods to schedule
        assert store.first_at_cycle is not None and store.first_at_cycle < 600
    finally:
        await store.close()


async def test_a_listed_batch_rebuilds_each_node_once() -> None:
    # the start of a term counts every bound pod; each node's summary must be rebuilt once
    # for the batch, not once per pod (quadratic in the pods per node)
    service = SchedulerService(None, InMemoryStore())  # type: ignore[arg-type]
    for name in ("n0", "n1"):
        service.nodes[name] = {"metadata": {"name": name}, "status": {"allocatable": {
            "cpu": "64", "memory": "64Gi", "pods": "500"}}}
    rebuilt: list[str] = []
    real = service.snapshot.put

    def put(info: Any) -> None:
        rebuilt.append(info.name)
        real(info)

    service.snapshot.put = put  # type: ignore[method-assign]
    pods = [{"metadata": {"name": f"p{i}", "namespace": "default", "uid": str(i)},
             "spec": {"nodeName": f"n{i % 2}", "containers": [{"name": "c", "resources": {
                 "requests": {"cpu": "10m"}}}]}} for i in range(400)]
    service._add_pods(pods)
    assert sorted(rebuilt) == ["n0", "n1"]
    assert service.snapshot.get("n0") is not None
    assert len(service.node_pods["n0"]) == len(service.node_pods["n1"]) == 200
