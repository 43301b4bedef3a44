"""What the elected leader runs: the scheduler and the controllers, with fenced writes.

    run(store, timing=Timing(10 s, 8 s, 2 s), renew_store=a new EtcdStore)
      writes = TermStore(store)                      every write carries the leader fence
      run_when_leader(store, component="controlplane", identity=host:pid, work=lead,
                      writes=writes, renew_store=...)  (renewals on their own thread)
        lead(writes):
            cluster = LocalClient(ObjectService(writes))
            SchedulerService(cluster, writes) ─┐ run together; if one fails, the
            ControllerManager(cluster, controllers) ─┘ other stops and leadership is
                                                       given up (a standby takes over)

Every controlplane process serves the API; only the leader runs this. A lost lease that
this process wins straight back does not restart the term: the informers' caches are fed
by etcd's watch whoever leads, so they stay right; only writes are held meanwhile, and
TermStore sends them on under the new fence. The controllers' options (ControllerOptions:
the node lifecycle's grace period and eviction rate, from corral-controlplane's flags) are
set once with configure() before serving.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from controlplane.apiserver.objects import ObjectService
from controlplane.leader import TermStore, run_when_leader
from controlplane.leaderlease import Timing
from controlplane.local import LocalClient
from controlplane.storage import Fence, Store

log = logging.getLogger("corral.manager")

FIELD_MANAGER = "corral-controlplane"
# A component of the leader: given the fenced cluster client, the fenced store (the
# TermStore: it fences each write itself) and the term's first fence, run until cancelled.
Component = Callable[[LocalClient, Store, Fence], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class ControllerOptions:
    """kube-controller-manager's flags that corral has (None: the controller's default)."""

    node_monitor_grace_period: float | None = None  # seconds a node's Lease may go stale
    node_eviction_rate: float | None = None  # NoExecute taints (evictions) per second


_options = ControllerOptions()


def configure(options: ControllerOptions) -> None:
    """The options the controllers of every later term run with."""
    global _options
    _options = options


def options() -> ControllerOptions:
    return _options


async def scheduler(cluster: LocalClient, store: Store, fence: Fence) -> None:
    from controlplane.scheduler.service import SchedulerService
    await SchedulerService(cluster, store).run()  # STORE fences its binds


async def controllers(cluster: LocalClient, store: Store, fence: Fence) -> None:
    from controlplane.controllers.controller import ControllerManager
    from controlplane.controllers.cronjob import CronJobController
    from controlplane.controllers.daemonset import DaemonSetController
    from controlplane.controllers.deployment import DeploymentController
    from controlplane.controllers.endpoints import EndpointsController
    from controlplane.controllers.garbagecollector import GarbageCollector
    from controlplane.controllers.job import JobController
    from controlplane.controllers.namespace import NamespaceController
    from controlplane.controllers.nodelifecycle import NodeLifecycleController
    from controlplane.controllers.nodelifecycle_plan import (
        DEFAULT_EVICTION_RATE,
        DEFAULT_GRACE,
    )
    from controlplane.controllers.replicaset import ReplicaSetController

    o = _options
    lifecycle = NodeLifecycleController.factory(
        grace=DEFAULT_GRACE if o.node_monitor_grace_period is None
        else o.node_monitor_grace_period,
        eviction_rate=DEFAULT_EVICTION_RATE if o.node_eviction_rate is None
        else o.node_eviction_rate)
    async with ControllerManager(cluster, [
            DeploymentController, ReplicaSetController, DaemonSetController,
            JobController.factory(), CronJobController.factory(), lifecycle,
            EndpointsController, GarbageCollector, NamespaceController]):
        await asyncio.Event().wait()  # until the term ends (cancelled)


def default_components() -> list[tuple[str, Component]]:
    return [("scheduler", scheduler), ("controllers", controllers)]


def identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def lead(store: Store, fence: Fence, *,
               components: list[tuple[str, Component]] | None = None,
               writes: TermStore | None = None) -> None:
    """Run the components on WRITES (a TermStore over STORE, resumed on FENCE, when not
    given) until one fails or returns."""
    if writes is None:
        writes = TermStore(store)
        writes.resume(fence)
    objects = ObjectService(writes)
    cluster = LocalClient(objects, field_manager=FIELD_MANAGER)
    tasks = {asyncio.create_task(run(cluster, writes, fence), name=name): name
             for name, run in (components or default_components())}
    log.info("leading: running %s", ", ".join(tasks.values()))
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            err = t.exception()
            if err is not None:
                raise err
        log.warning("%s returned; stepping down", tasks[next(iter(done))])
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await objects.close()


async def run(store: Store, *, component: str = "controlplane", timing: Timing | None = None,
              on_change: Callable[[bool], None] | None = None,
              components: list[tuple[str, Component]] | None = None,
              renew_store: Callable[[], Store] | None = None) -> None:
    """Campaign forever; lead whenever elected (a failed term is logged, then retried).

    RENEW_STORE: a factory of stores for the renewal thread (None: renew on this loop)."""
    me = identity()
    while True:
        writes = TermStore(store)
        try:
            await run_when_leader(
                store, component=component, identity=me, timing=timing or Timing(),
                on_change=on_change, renew_store=renew_store, writes=writes,
                work=functools.partial(lead, store, components=components, writes=writes))
        except asyncio.CancelledError:
            raise
        except Exception as err:
            log.error("leader term ended: %s: %s; campaigning again",
                      type(err).__name__, err)
            await asyncio.sleep(1)
