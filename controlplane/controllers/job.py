"""The Job controller: runs a Job's pods to completion (job_plan decides, this acts).

    jobs informer ──► key ns/name ─┐
    pods informer ──► owning Job ──┴─► queue ─► sync(key):
        cached job + its pods ─► job_plan.plan(now) ─► delete pods, create pods,
        write status (jobs/status), delete the Job after its TTL, requeue for a
        backoff, a deadline or a TTL
Expectations keep a sync from creating again before the informer shows its own creates.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from api import errors as e
from controlplane.controllers import job_plan
from controlplane.controllers.controller import (
    Controller,
    Expectations,
    may_exist,
    record_event,
    write_status,
)
from controlplane.controllers.informer import Handler, Informers, split_key
from controlplane.controllers.plan_util import Obj, deleting, meta, name_of, rfc3339
from controlplane.controllers.podutil import generate_name
from controlplane.local import Cluster

log = logging.getLogger("corral.controllers.job")


def _owner_key(obj: Obj, kind: str) -> str | None:
    m = meta(obj)
    for ref in m.get("ownerReferences") or ():
        if ref.get("controller") and ref.get("kind") == kind:
            return f"{m.get('namespace', '')}/{ref.get('name', '')}"
    return None


class JobController(Controller):
    name = "job"
    backoff_base = job_plan.BACKOFF_BASE

    @classmethod
    def factory(cls, *, backoff_base: float = job_plan.BACKOFF_BASE,
                clock: Callable[[], float] = time.time,
                ) -> Callable[[Cluster, Informers], JobController]:
        """A ControllerManager factory with these options (tests shorten the backoff)."""
        def make(cluster: Cluster, informers: Informers) -> JobController:
            c = cls.__new__(cls)
            c.backoff_base = backoff_base
            Controller.__init__(c, cluster, informers, clock=clock)
            return c
        return make

    def setup(self) -> None:
        self.expectations = Expectations()
        self.jobs = self.informer("jobs")
        self.pods = self.informer("pods")
        self.jobs.add_handler(Handler(on_add=self.enqueue,
                                      on_update=lambda _old, new: self.enqueue(new),
                                      on_delete=self.enqueue))
        self.pods.add_handler(Handler(on_add=self._pod_added, on_update=self._pod_updated,
                                      on_delete=self._pod_deleted))

    def _pod_added(self, pod: Obj) -> None:
        key = _owner_key(pod, "Job")
        if key:
            self.expectations.creation_observed(key, name_of(pod))
            self.queue.add(key)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        key = _owner_key(new, "Job")
        if key:
            if deleting(new) and not deleting(old):
                self.expectations.deletion_observed(key, name_of(new))
            self.queue.add(key)

    def _pod_deleted(self, pod: Obj) -> None:
        key = _owner_key(pod, "Job")
        if key:
            self.expectations.deletion_observed(key, name_of(pod))
            self.queue.add(key)

    async def sync(self, key: str) -> None:
        job = self.jobs.get(key)
        if job is None:
            self.expectations.forget(key)
            return
        if deleting(job) or not self.expectations.satisfied(key):
            return
        namespace, name = split_key(key)
        uid = str(meta(job).get("uid") or "")
        pods = [p for p in self.pods.by_index("owner", uid) if job_plan.owned(job, p)]
        plan = job_plan.plan(job, pods, self.clock(), backoff_base=self.backoff_base)
        if plan.delete_job:
            try:
                await self.cluster.delete("jobs", name, namespace=namespace,
                                          propagation="Background", uid=uid)
            except e.APIError as err:
                if err.reason is not e.Reason.NOT_FOUND:
                    raise
            return
        self.expectations.expect(key, deletes=plan.delete)
        for pod_name in plan.delete:
            try:
                await self.cluster.delete("pods", pod_name, namespace=namespace)
            except e.APIError as err:
                self.expectations.deletion_observed(key, pod_name)
                if err.reason is not e.Reason.NOT_FOUND:
                    raise
        for _ in range(plan.create):  # each expected by name (see Expectations)
            pod = job_plan.new_pod(job)
            pod_name = pod["metadata"]["name"] = generate_name(
                pod["metadata"]["generateName"])
            self.expectations.expect_creation(key, pod_name)
            try:
                await self.cluster.create("pods", pod, namespace=namespace)
            except e.APIError as err:
                if await may_exist(self.cluster, "pods", namespace=namespace,
                                   name=pod_name, err=err) is False:
                    self.expectations.creation_observed(key, pod_name)
                raise
        await self._write_status(job, plan.status)
        for kind, reason, message in plan.events:
            await self._event(job, kind, reason, message)
        if plan.requeue_after is not None:
            self.queue.add_after(key, max(plan.requeue_after, 0.001))

    async def _event(self, job: Obj, kind: str, reason: str, message: str) -> None:
        await record_event(self.cluster, job, involved=("batch/v1", "Job"), kind=kind,
                           reason=reason, message=message, component="job-controller",
                           now=rfc3339(self.clock()))

    async def _write_status(self, job: Obj, status: dict[str, Any]) -> None:
        await write_status(self.cluster, "jobs", job, status)
