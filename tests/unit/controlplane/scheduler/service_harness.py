"""A cluster in memory for the scheduler service: ObjectService over a Store, LocalClient."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from controlplane.apiserver.objects import ObjectService
from controlplane.local import LocalClient
from controlplane.storage import Store
from tests.unit.controlplane.scheduler import harness as h


async def make_cluster(store: Store) -> LocalClient:
    client = LocalClient(ObjectService(store, watch_cache=False))
    await client.create("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                       "metadata": {"name": "default"}})
    return client


async def add_node(client: LocalClient, name: str, **kw: Any) -> None:
    node = h.node(name, **kw)
    await client.create("nodes", node)


async def add_pod(client: LocalClient, name: str, *, cpu: str = "100m",
                  **kw: Any) -> dict[str, Any]:
    pod = h.pod(name, containers=[h.container(cpu=cpu)], **kw)
    out: dict[str, Any] = await client.create("pods", pod, namespace="default")
    return out


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


async def bound(client: LocalClient) -> dict[str, str]:
    pods = (await client.list("pods", namespace="default"))["items"]
    return {p["metadata"]["name"]: p["spec"]["nodeName"] for p in pods
            if p["spec"].get("nodeName")}
