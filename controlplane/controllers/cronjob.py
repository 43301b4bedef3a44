"""The CronJob controller: creates a CronJob's Jobs on its schedule (cronjob_plan decides).

    cronjobs informer ──► key ns/name ─┐
    jobs informer ──► owning CronJob ──┴─► queue ─► sync(key):
        cached cronjob + its Jobs ─► cronjob_plan.plan(now) ─► delete Jobs (Replace,
        history limits), create the run's Job, write status (cronjobs/status), record
        events, requeue at the next schedule time

A Job's name is fixed by its schedule time, so a sync that runs twice for one time finds
the Job (or AlreadyExists) and creates nothing more. The clock is injectable
(CronJobController.factory(clock=...)): tests move time by hand.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from api import errors as e
from controlplane.controllers import cronjob_plan as cp
from controlplane.controllers.controller import Controller, record_event, write_status
from controlplane.controllers.informer import Handler, Informers, split_key
from controlplane.controllers.plan_util import Obj, deleting, meta, rfc3339
from controlplane.local import Cluster

log = logging.getLogger("corral.controllers.cronjob")


def _owner_key(job: Obj) -> str | None:
    m = meta(job)
    for ref in m.get("ownerReferences") or ():
        if ref.get("controller") and ref.get("kind") == "CronJob":
            return f"{m.get('namespace', '')}/{ref.get('name', '')}"
    return None


class CronJobController(Controller):
    name = "cronjob"

    @classmethod
    def factory(cls, *, clock: Callable[[], float] = time.time,
                ) -> Callable[[Cluster, Informers], CronJobController]:
        """A ControllerManager factory with this clock (tests pass a fake one)."""
        def make(cluster: Cluster, informers: Informers) -> CronJobController:
            return cls(cluster, informers, clock=clock)
        return make

    def setup(self) -> None:
        self.cronjobs = self.informer("cronjobs")
        self.jobs = self.informer("jobs")
        self.cronjobs.add_handler(Handler(on_add=self.enqueue,
                                          on_update=lambda _old, new: self.enqueue(new),
                                          on_delete=self.enqueue))
        self.jobs.add_handler(Handler(on_add=self._job, on_update=lambda _o, new:
                                      self._job(new), on_delete=self._job))

    def _job(self, job: Obj) -> None:
        key = _owner_key(job)
        if key:
            self.queue.add(key)

    async def sync(self, key: str) -> None:
        cronjob = self.cronjobs.get(key)
        if cronjob is None or deleting(cronjob):
            return
        namespace, _ = split_key(key)
        uid = str(meta(cronjob).get("uid") or "")
        jobs = [j for j in self.jobs.by_index("owner", uid) if cp.owned(cronjob, j)]
        plan = cp.plan(cronjob, jobs, self.clock())
        for name in plan.delete:
            await self._delete_job(cronjob, name, namespace)
        status = plan.status
        if plan.create is not None:
            made = await self._create_job(cronjob, plan.create, namespace)
            if made is not None:
                status = {**status, "active": [*status.get("active", []),
                                               cp.job_reference(made)]}
        await self._write_status(cronjob, status)
        for kind, reason, message in plan.events:
            await self._event(cronjob, kind, reason, message)
        if plan.requeue_after is not None:
            self.queue.add_after(key, max(plan.requeue_after, 0.001))

    async def _create_job(self, cronjob: Obj, job: Obj, namespace: str) -> Obj | None:
        """The Job made, or None when it exists already (an earlier sync made it)."""
        name = str(job["metadata"]["name"])
        try:
            made: Obj = await self.cluster.create("jobs", job, namespace=namespace)
        except e.APIError as err:
            if err.reason is not e.Reason.ALREADY_EXISTS:
                await self._event(cronjob, "Warning", "FailedCreate",
                                  f"Error creating job: {err}")
                raise
            return None
        log.info("cronjob %s: created job %s", meta(cronjob).get("name"), name)
        await self._event(cronjob, "Normal", "SuccessfulCreate", f"Created job {name}")
        return made

    async def _delete_job(self, cronjob: Obj, name: str, namespace: str) -> None:
        try:
            await self.cluster.delete("jobs", name, namespace=namespace,
                                      propagation="Background")
        except e.APIError as err:
            if err.reason is not e.Reason.NOT_FOUND:
                raise
            return
        await self._event(cronjob, "Normal", "SuccessfulDelete", f"Deleted job {name}")

    async def _event(self, cronjob: Obj, kind: str, reason: str, message: str) -> None:
        await record_event(self.cluster, cronjob, involved=("batch/v1", "CronJob"), kind=kind,
                           reason=reason, message=message, component="cronjob-controller",
                           now=rfc3339(self.clock()))

    async def _write_status(self, cronjob: Obj, status: dict[str, Any]) -> None:
        await write_status(self.cluster, "cronjobs", cronjob, status)
