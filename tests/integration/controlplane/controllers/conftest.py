"""A control plane in the test's loop: real etcd, the object service, a LocalClient, and
the ReplicaSet, Deployment, garbage-collector and namespace controllers. A stand-in for
the node agent marks every new pod Running and Ready (through the status subresource)
unless the test turns it off."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest_asyncio

from api import errors as e
from controlplane.apiserver.objects import ObjectService, rfc3339
from controlplane.controllers.controller import ControllerManager
from controlplane.controllers.deployment import DeploymentController
from controlplane.controllers.garbagecollector import GarbageCollector
from controlplane.controllers.namespace import NamespaceController
from controlplane.controllers.replicaset import ReplicaSetController
from controlplane.local import LocalClient
from controlplane.storage import EtcdStore

Obj = dict[str, Any]


async def until(pred: Callable[[], Awaitable[bool]], *, timeout: float = 8.0,
                what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while True:
        if await pred():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


@dataclass
class Env:
    client: LocalClient
    manager: ControllerManager
    kubelet_on: bool = True
    marked: set[str] = field(default_factory=set)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def items(self, resource: str, namespace: str = "default",
                    label_selector: str = "") -> list[Obj]:
        out = await self.client.list(resource, namespace=namespace,
                                     label_selector=label_selector)
        items: list[Obj] = out["items"]
        return items

    async def mark_ready(self, pod: Obj) -> None:
        m = pod["metadata"]
        for _ in range(10):
            try:
                cur = await self.client.get("pods", m["name"], namespace=m["namespace"])
            except e.APIError:
                return
            if cur["metadata"].get("deletionTimestamp"):
                return
            cur["status"] = {**(cur.get("status") or {}), "phase": "Running",
                             "conditions": [{"type": "Ready", "status": "True",
                                             "lastTransitionTime": rfc3339(time.time())}]}
            try:
                await self.client.update("pods", cur, namespace=m["namespace"],
                                         subresource="status")
                return
            except e.APIError as err:
                if err.reason is not e.Reason.CONFLICT:
                    return

    async def kubelet(self) -> None:
        async for ev in self.client.watch("pods"):
            pod = ev["object"]
            uid = pod["metadata"]["uid"]
            if ev["type"] == "ADDED" and self.kubelet_on and uid not in self.marked:
                self.marked.add(uid)
                t = asyncio.create_task(self.mark_ready(pod))
                self.tasks.add(t)
                t.add_done_callback(self.tasks.discard)


def deployment(name: str = "web", *, replicas: int = 3, image: str = "busybox:1",
               **spec: Any) -> Obj:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": image}]}},
                     **spec}}


@pytest_asyncio.fixture
async def env(etcd_endpoint: str) -> AsyncIterator[Env]:
    store = EtcdStore([etcd_endpoint])
    objects = ObjectService(store)
    # (no field_manager: ObjectService.create loses a generated name when one is set)
    client = LocalClient(objects)
    await client.create("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                       "metadata": {"name": "default"}})
    manager = ControllerManager(client, [ReplicaSetController, DeploymentController,
                                         GarbageCollector, NamespaceController])
    await manager.start()
    env = Env(client=client, manager=manager)
    task = asyncio.create_task(env.kubelet())
    try:
        yield env
    finally:
        for t in (task, *env.tasks):
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await manager.stop()
        await objects.close()
        await store.close()
