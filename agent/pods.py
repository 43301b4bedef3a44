"""The pods bound to this node: one watch, one worker per pod, one shared relist.

    list+watch pods (fieldSelector spec.nodeName=<node>) ──► PodManager.handle(event)
        ADDED/MODIFIED: the pod's worker gets the new object (started if new)
        DELETED:        its worker is told the pod is gone (stop, remove, no API call)
    Relist (every second, and on demand, coalesced) ──► wakes workers whose runtime
        state changed; sandboxes whose pod the API does not know are cleaned up by a
        worker for the orphan. Every relist also sets the burstable QoS tier's weight from
        its pods' requests; every SWEEP_EVERY relists (and at each list), pod cgroups of
        pods gone from here are removed (qos.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

from agent import cri as C
from agent import qos as Q
from agent.metrics.record import RECORDER
from agent.worker import PodWorker, WorkerEnv
from api import errors

log = logging.getLogger("corral.agent.pods")
SWEEP_EVERY = 30  # relists between sweeps of pod cgroups left busy by their pods


class PodSource(Protocol):
    async def list(self, resource: str, *, namespace: str = "", **kw: Any
                   ) -> dict[str, Any]: ...

    def watch(self, resource: str, *, namespace: str = "", **kw: Any
              ) -> AsyncIterator[dict[str, Any]]: ...


class Relist:
    """Runtime.observe() shared by all callers: a caller gets a relist that started after
    it asked, and callers that ask together share one."""

    def __init__(self, runtime: C.Runtime) -> None:
        self.runtime = runtime
        self.pods: dict[str, C.PodRuntime] = {}
        self._lock = asyncio.Lock()
        self._started = 0.0

    async def __call__(self) -> Mapping[str, C.PodRuntime]:
        asked = time.monotonic()
        async with self._lock:
            if self._started >= asked:
                return self.pods
            self._started = time.monotonic()
            self.pods = await self.runtime.observe()
            return self.pods


def _fingerprint(pr: C.PodRuntime | None) -> tuple[Any, ...]:
    if pr is None:
        return ()
    return (tuple(sorted((s.id, s.ready) for s in pr.sandboxes)),
            tuple(sorted((c.id, c.state) for c in pr.containers)))


class PodManager:
    def __init__(self, *, source: PodSource, node_name: str, env: WorkerEnv,
                 relist: Relist, relist_period: float = 1.0) -> None:
        self.source = source
        self.node_name = node_name
        self.env = env
        self.relist = relist
        self.relist_period = relist_period
        self.workers: dict[str, PodWorker] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._seen: dict[str, tuple[Any, ...]] = {}
        self.synced = asyncio.Event()
        self._tier_pods: frozenset[str] | None = None  # uids the burstable tier was set for

    @property
    def selector(self) -> str:
        return f"spec.nodeName={self.node_name}"

    def handle(self, event: Mapping[str, Any]) -> None:
        pod = event["object"]
        uid = str((pod.get("metadata") or {}).get("uid") or "")
        if not uid:
            return
        worker = self.workers.get(uid)
        if event["type"] == "DELETED":
            if worker is not None:
                worker.mark_gone()
            return
        if (pod.get("spec") or {}).get("nodeName") != self.node_name:
            if worker is not None:
                worker.mark_gone()
            return
        if worker is None:
            self.start_worker(pod)
        else:
            worker.update(pod)

    def start_worker(self, pod: Mapping[str, Any], *, gone: bool = False) -> PodWorker:
        worker = PodWorker(self.env, pod, gone=gone)
        self.workers[worker.uid] = worker
        self._tasks[worker.uid] = asyncio.create_task(self._run(worker))
        RECORDER.set_pod_workers(len(self.workers))
        return worker

    async def _run(self, worker: PodWorker) -> None:
        try:
            await worker.run()
        finally:
            self.workers.pop(worker.uid, None)
            self._tasks.pop(worker.uid, None)
            RECORDER.set_pod_workers(len(self.workers))

    async def list_and_watch(self) -> None:
        """List, start workers, clean orphans, then watch; relist on any watch error."""
        while True:
            try:
                listed = await self.source.list("pods", field_selector=self.selector)
                known = set()
                for pod in listed.get("items") or []:
                    known.add(str(pod["metadata"]["uid"]))
                    self.handle({"type": "ADDED", "object": pod})
                for uid, worker in list(self.workers.items()):
                    if uid not in known:
                        worker.mark_gone()
                await self.adopt_orphans(known)
                self.synced.set()
                rv = str((listed.get("metadata") or {}).get("resourceVersion") or "")
                async for event in self.source.watch("pods", field_selector=self.selector,
                                                     resource_version=rv):
                    if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                        self.handle(event)
            except asyncio.CancelledError:
                raise
            except errors.APIError as err:
                log.warning("pods: watch: %s; listing again", err)
                await asyncio.sleep(1)
            except Exception:
                log.exception("pods: watch failed; listing again")
                await asyncio.sleep(1)

    async def adopt_orphans(self, known: set[str]) -> None:
        """Sandboxes and containers of pods the API does not bind here: stop and remove."""
        pods = await self.relist()
        for uid, pr in pods.items():
            if uid in known or uid in self.workers:
                continue
            log.info("pods: %s/%s (uid %s) is not bound here; removing its containers",
                     pr.namespace, pr.name, uid)
            fake = {"metadata": {"uid": uid, "name": pr.name or uid,
                                 "namespace": pr.namespace or "default"},
                    "spec": {"terminationGracePeriodSeconds": 2}}
            self.start_worker(fake, gone=True)
        await self.sweep(keep=known | set(pods))

    async def sweep(self, *, keep: set[str]) -> None:
        """Pod cgroups of pods neither in KEEP nor with a worker here: removed, in a thread
        (one whose last task was still exiting when its pod went is retried by the next
        sweep); a failure is logged, as for the relist itself."""
        try:
            busy = await asyncio.to_thread(Q.sweep_pod_cgroups, self.env.cgroup_parent,
                                           keep=keep | set(self.workers))
        except (Q.CgroupError, OSError) as err:
            log.warning("pods: sweeping pod cgroups: %s", err)
            return
        if busy:
            log.warning("pods: pod cgroups still busy: %s", ", ".join(busy))

    async def relist_loop(self) -> None:
        relists = 0
        while True:
            await asyncio.sleep(self.relist_period)
            try:
                pods = await self.relist()
            except Exception as err:  # the runtime may be restarting
                log.warning("pods: relist: %s", err)
                continue
            relists += 1
            # the burstable tier weighs as its pods' requests: set again only when the
            # pods here changed (a pod's requests do not)
            live = {uid: w.pod for uid, w in self.workers.items() if not w.gone}
            if frozenset(live) != self._tier_pods and Q.update_burstable_tier(
                    list(live.values()), self.env.cgroup_parent):
                self._tier_pods = frozenset(live)
            if relists % SWEEP_EVERY == 0:
                await self.sweep(keep=set(pods))
            for uid, worker in list(self.workers.items()):
                fp = _fingerprint(pods.get(uid))
                if self._seen.get(uid) != fp:
                    self._seen[uid] = fp
                    worker.wake()
            for uid in set(self._seen) - set(self.workers):
                del self._seen[uid]

    async def run(self) -> None:
        tasks = [asyncio.create_task(self.list_and_watch()),
                 asyncio.create_task(self.relist_loop()),
                 asyncio.create_task(self.env.writer.run())]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks + list(self._tasks.values()):
                t.cancel()
            for t in tasks + list(self._tasks.values()):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
