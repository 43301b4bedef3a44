"""The node lifecycle controller: marks nodes whose Lease went stale, taints them, and
evicts their pods after the pods' tolerationSeconds (nodelifecycle_plan decides).

    nodes informer ─────────────────► key node ─┐
    leases informer (corral-node-lease) ─► node ─┼─► queue ─► sync(node):
    pods informer ──► the pod's node ────────────┘
        node_health(lease, now, grace) ─► nodes/status (Ready=Unknown / True)
        desired_taints(...) ─► nodes (NoSchedule at once; a new NoExecute taint only with
                               a token of the eviction-rate limiter, else retry later)
        each pod on the node: eviction_time(...) <= now ─► graceful delete; else requeue
        requeue when the lease would go stale

The clock is injectable (NodeLifecycleController.factory(clock=...)); the grace period,
the default tolerationSeconds and the eviction rate are options.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable

from api import errors as e
from controlplane.controllers import nodelifecycle_plan as nl
from controlplane.controllers.controller import Controller
from controlplane.controllers.informer import Handler, Informers
from controlplane.controllers.plan_util import Obj, deleting, meta, name_of, phase
from controlplane.local import Cluster

log = logging.getLogger("corral.controllers.nodelifecycle")
NODE_INDEX = "spec.nodeName"


def _node_of(pod: Obj) -> list[str]:
    node = (pod.get("spec") or {}).get("nodeName")
    return [str(node)] if node else []


class NodeLifecycleController(Controller):
    name = "nodelifecycle"
    grace = nl.DEFAULT_GRACE
    default_toleration_seconds = nl.DEFAULT_TOLERATION_SECONDS
    eviction_rate = nl.DEFAULT_EVICTION_RATE

    @classmethod
    def factory(cls, *, grace: float = nl.DEFAULT_GRACE,
                default_toleration_seconds: int = nl.DEFAULT_TOLERATION_SECONDS,
                eviction_rate: float = nl.DEFAULT_EVICTION_RATE,
                clock: Callable[[], float] = time.time,
                ) -> Callable[[Cluster, Informers], NodeLifecycleController]:
        """A ControllerManager factory with these options."""
        def make(cluster: Cluster, informers: Informers) -> NodeLifecycleController:
            c = cls.__new__(cls)
            c.grace = grace
            c.default_toleration_seconds = default_toleration_seconds
            c.eviction_rate = eviction_rate
            Controller.__init__(c, cluster, informers, clock=clock)
            return c
        return make

    def setup(self) -> None:
        self.limiter = nl.RateLimiter(self.eviction_rate)
        self.nodes = self.informer("nodes")
        self.leases = self.informers.get("leases", nl.LEASE_NAMESPACE)
        self.pods = self.informer("pods")
        self.pods.add_index(NODE_INDEX, _node_of)
        self.nodes.add_handler(Handler(on_add=self.enqueue,
                                       on_update=lambda _o, new: self.enqueue(new),
                                       on_delete=self.enqueue))
        self.leases.add_handler(Handler(on_add=self._lease, on_update=lambda _o, n:
                                        self._lease(n)))
        self.pods.add_handler(Handler(on_add=self._pod, on_update=self._pod_updated))

    def _lease(self, lease: Obj) -> None:
        self.queue.add(name_of(lease))

    def _pod(self, pod: Obj) -> None:
        for node in _node_of(pod):
            self.queue.add(node)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if _node_of(old) != _node_of(new) or (new.get("spec") or {}).get(
                "tolerations") != (old.get("spec") or {}).get("tolerations"):
            self._pod(new)

    async def sync(self, key: str) -> None:
        node = self.nodes.get(key)
        if node is None:
            return
        now = self.clock()
        lease = self.leases.get(f"{nl.LEASE_NAMESPACE}/{key}")
        health = nl.node_health(node, lease, now=now, grace=self.grace)
        requeue = health.probe_in
        node = await self._write_conditions(node, health.conditions)
        may_add = False
        if nl.needs_no_execute(node, health):
            may_add = self.limiter.try_take(now)
            if not may_add:
                requeue = min(requeue, self.limiter.wait(now))
        taints = nl.desired_taints(node, health, now=now, may_add_no_execute=may_add)
        node = await self._write_taints(node, taints)
        evict_in = await self._evict(node, now)
        if evict_in is not None:
            requeue = min(requeue, evict_in)
        self.queue.add_after(key, max(requeue, 0.01))

    async def _write_conditions(self, node: Obj, conditions: list[Obj]) -> Obj:
        if ((node.get("status") or {}).get("conditions") or []) == conditions:
            return node
        out = copy.deepcopy(node)
        out.setdefault("status", {})["conditions"] = conditions
        log.info("node %s: Ready=%s", name_of(node),
                 next((c.get("status") for c in conditions if c.get("type") == "Ready"), ""))
        return await self.cluster.update("nodes", out, subresource="status")

    async def _write_taints(self, node: Obj, taints: list[Obj]) -> Obj:
        if ((node.get("spec") or {}).get("taints") or []) == taints:
            return node
        out = copy.deepcopy(node)
        spec = out.setdefault("spec", {})
        if taints:
            spec["taints"] = taints
        else:
            spec.pop("taints", None)
        return await self.cluster.update("nodes", out)

    async def _evict(self, node: Obj, now: float) -> float | None:
        """Evict the pods whose time is up; seconds until the next one's (None: none)."""
        taints = (node.get("spec") or {}).get("taints") or []
        if not any(t.get("effect") == "NoExecute" for t in taints):
            return None
        nearest: float | None = None
        for pod in self.pods.by_index(NODE_INDEX, name_of(node)):
            if deleting(pod) or phase(pod) in ("Succeeded", "Failed"):
                continue
            at = nl.eviction_time(pod, taints, now=now,
                                  default_seconds=self.default_toleration_seconds)
            if at is None:
                continue
            if at > now:
                nearest = at - now if nearest is None else min(nearest, at - now)
                continue
            m = meta(pod)
            log.info("node %s: evicting pod %s/%s", name_of(node), m.get("namespace"),
                     m.get("name"))
            try:
                await self.cluster.delete("pods", str(m.get("name")),
                                          namespace=str(m.get("namespace") or ""),
                                          uid=str(m.get("uid") or ""))
            except e.APIError as err:
                if err.reason not in (e.Reason.NOT_FOUND, e.Reason.CONFLICT):
                    raise
        return nearest
