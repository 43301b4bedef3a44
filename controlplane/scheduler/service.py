"""The running scheduler: a cache fed by list+watch, the queue, cycles, batched binds.

    Cluster.list+watch nodes ─┬► cache: nodes, pods per node ─► Snapshot (in place)
    PodFeed.list+watch pods  ─┴► pending pods (no nodeName, our schedulerName) ─► queue
      (informer: straight from the store, its own binds known by their bytes, not decoded)
    scheduling loop (synchronous, one pod at a time):
        queue.pop ─► FastPath.schedule_one(pod, snapshot, start=rotating index)
                     (schedule_one's decision; equivalence-class caches, see fastpath)
          node     ─► assume into the snapshot ─► bind queue
          none     ─► queue.add_unschedulable(rejecting plugins); FailedScheduling Event and
                      PodScheduled=False (reason Unschedulable) via pods/status, written only
                      when the message changes; preemption: delete the victims, set
                      status.nominatedNodeName
    binding (asynchronous, group commit): up to BATCH pods per etcd txn (binder.Binder),
        started straight from the cycle when no txn is out or a full batch waits (at most
        binds_in_flight out), and from the end of the previous txn; the cycle yields every
        SLICE, so no hop of the pipeline waits long behind it; a failed pod is forgotten
        from the snapshot and retried after backoff; Fenced (not the leader) stops it all.
    watch events: an assumed pod seen bound is confirmed; a pod deleted, a node added or
        changed move the unschedulable pods they may help back to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import random
import time
from collections.abc import Mapping
from typing import Any

from controlplane.apiserver.objects import rfc3339
from controlplane.local import Cluster
from controlplane.scheduler.binder import BATCH, Binder, Binding
from controlplane.scheduler.fastpath import FastPath
from controlplane.scheduler.framework import Profile
from controlplane.scheduler.informer import PodFeed
from controlplane.scheduler.plugins import DEFAULT_CONFIG, default_registry
from controlplane.scheduler.queue import Event, QueuedPod, SchedulingQueue, node_update_events
from controlplane.scheduler.schedule import Decision
from controlplane.scheduler.snapshot import NodeInfo, Snapshot
from controlplane.scheduler.terms import pod_key
from controlplane.storage import Fence, Fenced, NotFound, StorageError, Store

log = logging.getLogger(__name__)
Obj = dict[str, Any]
MERGE = "application/merge-patch+json"
TERMINAL = ("Succeeded", "Failed")
COMPONENT = "default-scheduler"
# The cycle yields to the event loop at least this often (seconds): a bind's answer, the
# next bind and watch events wait at most this long behind it (every hop of the binding
# pipeline did wait a whole 100-pod run of cycles, ~40 ms, which throttled the binds).
SLICE = 0.002


class SchedulerService:
    """Schedules the pods of SCHEDULER_NAME; reads through CLUSTER, binds through STORE
    (fenced on FENCE when given: the leader's fence from controlplane.leader)."""

    def __init__(self, cluster: Cluster, store: Store, *, fence: Fence | None = None,
                 profile: Profile | None = None, percentage: int = 0, batch: int = BATCH,
                 binds_in_flight: int = 4, rng: random.Random | None = None,
                 wall_clock: Any = time.time) -> None:
        self.cluster = cluster
        self.profile = profile or Profile.from_config(DEFAULT_CONFIG, default_registry())
        self.scheduler_name = self.profile.name
        self.fast = FastPath(self.profile)  # schedule_one's decisions, cached per pod class
        self.feed = PodFeed(store)
        self.binder = Binder(store, fence=fence, batch=batch, clock=wall_clock,
                             expect=self.feed)
        self.percentage = percentage
        self.rng = rng or random.Random()
        self.wall_clock = wall_clock
        self.queue = SchedulingQueue()
        self.snapshot = Snapshot()
        self.nodes: dict[str, Obj] = {}
        self.node_pods: dict[str, dict[str, Obj]] = {}  # node -> pod key -> pod
        self.pod_node: dict[str, str] = {}  # pod key -> node it counts against
        self._deferred: set[str] | None = None  # nodes to rebuild when _add_pods ends
        self.latest: dict[str, Obj] = {}  # pending pod key -> newest version seen
        self.assumed: set[str] = set()
        self.reported: dict[str, str] = {}  # pod key -> last failure message written
        self.bound = 0  # pods bound by this service
        self._start = 0
        self._wake = asyncio.Event()
        self._to_bind: list[tuple[QueuedPod, Binding]] = []
        self._bind_wake = asyncio.Event()
        self._max_in_flight = binds_in_flight
        self._in_flight = 0  # bind transactions out
        self.queue_busy = False  # the cycle is running: part batches wait for more pods
        self._background: set[asyncio.Task[Any]] = set()
        self._fatal: BaseException | None = None

    # ---- running ---------------------------------------------------------------------

    async def run(self) -> None:
        """List, then watch and schedule until cancelled; raises Fenced when deposed."""
        # both lists at once (etcd reads one while we decode the other), nodes used first
        nodes, (pods, pod_rv) = await asyncio.gather(self.cluster.list("nodes"),
                                                     self.feed.list())
        node_rv = self._set_nodes(nodes)
        self._add_pods(pods)
        # The cache just listed is long-lived: the collector need not walk it again at
        # every full collection (those took ~8% of the scheduler's time at 10000 pods);
        # it is handed back to the collector when the service stops (deposed, cancelled).
        gc.freeze()
        tasks = [asyncio.create_task(self._watch_nodes(node_rv)),
                 asyncio.create_task(self._watch_pods(pod_rv)),
                 asyncio.create_task(self._schedule_loop()),
                 asyncio.create_task(self._bind_loop())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for task in [*tasks, *self._background]:
                task.cancel()
            await asyncio.gather(*tasks, *self._background, return_exceptions=True)
            gc.unfreeze()

    async def _list_nodes(self) -> str:
        return self._set_nodes(await self.cluster.list("nodes"))

    def _set_nodes(self, listed: Obj) -> str:
        for node in listed["items"]:
            self.nodes[node["metadata"]["name"]] = node
        self.snapshot = Snapshot(
            NodeInfo.from_node(n, self.node_pods.get(name, {}).values())
            for name, n in self.nodes.items())
        return str(listed["metadata"]["resourceVersion"])

    async def _list_pods(self) -> int:
        pods, rv = await self.feed.list()
        self._add_pods(pods)
        return rv

    def _add_pods(self, pods: list[Obj]) -> None:
        """Count a listed batch: each touched node's summary is rebuilt once at the end,
        not once per pod (that grew with the square of the pods per node: 18 s with 10000
        bound pods on 100 nodes, a stalled loop at a leader term's start)."""
        self._deferred = set()
        try:
            for pod in pods:
                self._on_pod("ADDED", pod)
        finally:
            touched, self._deferred = self._deferred, None
        for name in touched:
            self._rebuild(name)

    async def _watch_nodes(self, rv: str) -> None:
        while True:
            try:
                async for ev in self.cluster.watch("nodes", resource_version=rv):
                    obj = ev["object"]
                    rv = obj["metadata"].get("resourceVersion") or rv
                    if ev["type"] != "BOOKMARK":
                        self._on_node(ev["type"], obj)
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # Gone or a broken stream: relist, then resume
                log.warning("scheduler: watch nodes: %s; listing again", err)
                await asyncio.sleep(0.5)
                with contextlib.suppress(Exception):
                    rv = await self._list_nodes()

    async def _watch_pods(self, rv: int) -> None:
        while True:
            try:
                async for kind, pod, at in self.feed.watch(rv):
                    rv = at  # resume after it
                    if pod is not None:
                        self._on_pod(kind, pod)
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # Gone or a broken stream: relist, then resume
                log.warning("scheduler: watch pods: %s; listing again", err)
                await asyncio.sleep(0.5)
                with contextlib.suppress(Exception):
                    rv = await self._list_pods()

    # ---- cache -----------------------------------------------------------------------

    def _on_node(self, kind: str, node: Obj) -> None:
        name = node["metadata"]["name"]
        old = self.nodes.get(name)
        if kind == "DELETED":
            self.nodes.pop(name, None)
            self.snapshot.remove(name)
            return
        self.nodes[name] = node
        self._rebuild(name)
        if old is None:
            self.queue.on_event(Event.NODE_ADD)
        for event in node_update_events(old or {}, node):
            self.queue.on_event(event)

    def _rebuild(self, name: str) -> None:
        if self._deferred is not None:  # inside _add_pods: once per node, at its end
            self._deferred.add(name)
            return
        node = self.nodes.get(name)
        if node is not None:
            self.snapshot.put(NodeInfo.from_node(node, self.node_pods.get(name, {}).values()))

    def _count(self, key: str, pod: Obj, node: str) -> None:
        self.node_pods.setdefault(node, {})[key] = pod
        self.pod_node[key] = node

    def _uncount(self, key: str) -> None:
        node = self.pod_node.pop(key, None)
        if node is not None:
            self.node_pods.get(node, {}).pop(key, None)
            self._rebuild(node)

    def _on_pod(self, kind: str, pod: Obj) -> None:
        key = pod_key(pod)
        spec = pod.get("spec") or {}
        node = spec.get("nodeName")
        gone = kind == "DELETED" or (pod.get("status") or {}).get("phase") in TERMINAL
        if gone:
            self.latest.pop(key, None)
            self.reported.pop(key, None)
            self.queue.delete(pod)
            if key in self.pod_node:
                self._uncount(key)
                self.assumed.discard(key)
                self.queue.on_event(Event.POD_DELETE)
            return
        if node:
            self.latest.pop(key, None)
            self.reported.pop(key, None)
            if key in self.assumed and self.pod_node.get(key) == node:
                self.assumed.discard(key)  # our bind, confirmed: resources already counted
                self.node_pods[node][key] = pod
                return
            self.queue.delete(pod)  # bound by someone else: never ours to bind again
            old = self.node_pods.get(node, {}).get(key)
            if old is not None and old.get("metadata", {}).get("labels") == \
                    pod["metadata"].get("labels"):
                self.node_pods[node][key] = pod
                return
            self.assumed.discard(key)
            if key in self.pod_node:
                self._uncount(key)
            self._count(key, pod, node)
            self._rebuild(node)
            self.queue.on_event(Event.POD_ADD if old is None else Event.POD_LABELS)
            return
        if spec.get("schedulerName", COMPONENT) != self.scheduler_name or \
                pod["metadata"].get("deletionTimestamp"):
            return
        before = self.latest.get(key)
        self.latest[key] = pod
        if before is None or before.get("spec") != spec or \
                before["metadata"].get("labels") != pod["metadata"].get("labels"):
            self.queue.add(pod)

    # ---- the scheduling cycle ----------------------------------------------------------

    async def _schedule_loop(self) -> None:
        clock = time.perf_counter
        while True:
            self._wake.clear()
            until = clock() + SLICE
            self.queue_busy = True
            while (qp := self.queue.pop()) is not None:
                self._schedule(qp)
                if clock() >= until:  # a time slice: then yield, so watches and binds run
                    await asyncio.sleep(0)
                    until = clock() + SLICE
            self.queue_busy = False
            self._pump_binds(flush=True)
            wait = self.queue.next_ready_in()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait if wait is not None else 1.0):
                    await self._wake.wait()

    def _schedule(self, qp: QueuedPod) -> None:
        key = qp.key
        pod: Obj = self.latest.get(key) or dict(qp.pod)
        decision = self.fast.schedule_one(pod, self.snapshot, self.rng, start=self._start,
                                          percentage=self.percentage)
        if len(self.snapshot):
            self._start = (self._start + (decision.evaluated or len(self.snapshot))) % len(
                self.snapshot)
        if decision.node is None:
            self._unschedulable(qp, pod, decision)
            return
        self.snapshot.assume_in_place(pod, decision.node)
        self._count(key, pod, decision.node)
        self.assumed.add(key)
        self._to_bind.append((qp, Binding(pod, decision.node)))
        self._pump_binds()

    def _unschedulable(self, qp: QueuedPod, pod: Obj, decision: Decision) -> None:
        rejectors = {s.plugin for s in decision.node_statuses.values() if s.plugin}
        if decision.status.plugin:
            rejectors.add(decision.status.plugin)
        self.queue.add_unschedulable(qp, rejectors)
        nominated = decision.nominated
        if self.reported.get(qp.key) == decision.message and nominated is None:
            return  # nothing new to tell: an unchanged failure costs no writes
        self.reported[qp.key] = decision.message
        self._spawn(self._report(pod, decision))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _report(self, pod: Obj, decision: Decision) -> None:
        meta = pod["metadata"]
        name, ns = meta["name"], meta.get("namespace") or "default"
        now = rfc3339(self.wall_clock())
        status: Obj = {"conditions": [
            *[c for c in (pod.get("status") or {}).get("conditions") or ()
              if c.get("type") != "PodScheduled"],
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": decision.message, "lastTransitionTime": now}]}
        try:
            if decision.nominated is not None:
                for victim in decision.nominated.victims:
                    vm = victim["metadata"]
                    with contextlib.suppress(Exception):
                        await self.cluster.delete("pods", vm["name"],
                                                  namespace=vm.get("namespace") or "default")
                status["nominatedNodeName"] = decision.nominated.nominated_node
            await self.cluster.patch("pods", name, json.dumps({"status": status}).encode(),
                                     patch_type=MERGE, namespace=ns, subresource="status")
            await self.cluster.create("events", {
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"generateName": f"{name}.", "namespace": ns},
                "involvedObject": {"kind": "Pod", "name": name, "namespace": ns,
                                   "uid": meta.get("uid", "")},
                "reason": "FailedScheduling", "message": decision.message, "type": "Warning",
                "count": 1, "firstTimestamp": now, "lastTimestamp": now,
                "source": {"component": COMPONENT}, "reportingComponent": COMPONENT,
                "action": "Scheduling"}, namespace=ns)
        except Exception as err:  # the pod may be gone; the next failure reports again
            self.reported.pop(pod_key(pod), None)
            log.info("scheduler: reporting %s/%s unschedulable: %s", ns, name, err)

    # ---- the binding cycle -------------------------------------------------------------

    async def _bind_loop(self) -> None:
        """Raises the error that stopped the binds (Fenced); the binds themselves start
        straight from the cycle and from the end of the previous bind (_pump_binds)."""
        while True:
            self._bind_wake.clear()
            await self._bind_wake.wait()
            if self._fatal is not None:
                raise self._fatal

    def _pump_binds(self, *, flush: bool = False) -> None:
        """Start transactions for the waiting binds: group commit, as WriteBatcher does. A
        transaction goes out when none is out, or when a full batch waits and a slot is
        free (FLUSH: the cycle has gone idle, a part batch may take a free slot)."""
        size = self.binder.batch
        while self._to_bind and self._fatal is None and self._in_flight < self._max_in_flight \
                and (self._in_flight == 0 or flush or len(self._to_bind) >= size):
            batch, self._to_bind = self._to_bind[:size], self._to_bind[size:]
            self._in_flight += 1
            self._spawn(self._bind(batch))

    async def _bind(self, batch: list[tuple[QueuedPod, Binding]]) -> None:
        try:
            results = await self.binder.bind([b for _, b in batch])
        finally:
            self._in_flight -= 1
        for qp, binding in batch:
            err = results.get(binding.key)
            if err is None:
                self.bound += 1
                self.queue.done(qp)
                continue
            self._forget(qp.key)
            if isinstance(err, Fenced):
                self._fatal = err
                self._bind_wake.set()
            elif isinstance(err, NotFound):
                self.queue.done(qp)
            else:
                self.queue.add_backoff(qp)
        if self._fatal is None:
            self._pump_binds(flush=not self.queue_busy)
            self._wake.set()

    def _forget(self, key: str) -> None:
        """Undo an assumption whose bind failed."""
        if key in self.assumed:
            self.assumed.discard(key)
            self._uncount(key)


def bind_errors(results: Mapping[str, StorageError | None]) -> dict[str, str]:
    """The failed binds of a Binder result, as text (for logs and tests)."""
    return {key: str(err) for key, err in results.items() if err is not None}
