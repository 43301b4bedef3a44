"""The CronJob controller against a real etcd, with the Job controller and the garbage
collector, and a fake clock the test moves a minute at a time.

The controllers run in the test's loop over EtcdStore + ObjectService + LocalClient; the
test plays the node agent (each pod of a Job succeeds) and the clock (it advances the
CronJob controller's clock and wakes the CronJob, as the requeue timer would)."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any, cast

import pytest
import pytest_asyncio

from api import errors as e
from controlplane.apiserver.objects import ObjectService
from controlplane.controllers.controller import ControllerManager
from controlplane.controllers.cronjob import CronJobController
from controlplane.controllers.cronjob_plan import job_name
from controlplane.controllers.garbagecollector import GarbageCollector
from controlplane.controllers.job import JobController
from controlplane.controllers.plan_util import parse_time
from controlplane.local import Cluster, LocalClient
from controlplane.storage import EtcdStore

pytestmark = pytest.mark.asyncio
Obj = dict[str, Any]
NS = "default"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def start_at(self, *objs: Obj) -> None:
        """Just after the objects' creation (whole seconds), so every minute the test
        moves to comes after it."""
        self.now = max(parse_time(o["metadata"]["creationTimestamp"]) or 0.0
                       for o in objs) + 0.5


@pytest_asyncio.fixture
async def client(etcd_endpoint: str) -> AsyncIterator[LocalClient]:
    store = EtcdStore([etcd_endpoint])
    objects = ObjectService(store)
    c = LocalClient(objects)
    await c.create("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                  "metadata": {"name": NS}})
    try:
        yield c
    finally:
        await objects.close()
        await store.close()


async def eventually(check: Callable[[], Awaitable[Any]], *, timeout: float = 8.0,
                     what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = await check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def items(c: LocalClient, resource: str, selector: str = "") -> list[Obj]:
    out: list[Obj] = (await c.list(resource, namespace=NS, label_selector=selector))["items"]
    return out


def cronjob_manifest(name: str, **spec: Any) -> Obj:
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
            "spec": {"schedule": "* * * * *", **spec, "jobTemplate": {
                "metadata": {"labels": {"app": name}},
                "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
                    {"name": "c", "image": "busybox:1", "command": ["date"]}]}}}}}}


async def succeed_pods(c: LocalClient, job: Obj) -> None:
    """The node agent: every pod of JOB runs and exits 0."""
    for pod in await items(c, "pods", f"controller-uid={job['metadata']['uid']}"):
        if (pod.get("status") or {}).get("phase") == "Succeeded":
            continue
        fresh = copy.deepcopy(pod)
        fresh["status"] = {**(pod.get("status") or {}), "phase": "Succeeded"}
        try:
            await c.update("pods", fresh, namespace=NS, subresource="status")
        except e.APIError as err:
            if err.reason not in (e.Reason.CONFLICT, e.Reason.NOT_FOUND):
                raise


def complete(job: Obj) -> bool:
    return any(cond.get("type") == "Complete" and cond.get("status") == "True"
               for cond in (job.get("status") or {}).get("conditions") or ())


async def test_every_minute_runs_jobs_to_completion_and_prunes_history(
        client: LocalClient) -> None:
    clock = Clock()
    manager = ControllerManager(cast(Cluster, client), [
        CronJobController.factory(clock=clock), JobController, GarbageCollector])
    await manager.start()
    controller = manager.get("cronjob")
    try:
        cj = await client.create("cronjobs", cronjob_manifest(
            "tick", successfulJobsHistoryLimit=2), namespace=NS)
        clock.start_at(cj)
        await asyncio.sleep(0.3)
        assert await items(client, "jobs") == [], "no run is due before the first minute"
        made: list[str] = []
        for _ in range(4):
            clock.now = (clock.now // 60 + 1) * 60 + 1  # one second into the next minute
            controller.queue.add(f"{NS}/tick")  # what the requeue timer does
            name = job_name(cj, clock.now - 1)
            job = await eventually(partial(_get, client, "jobs", name),
                                   what=f"job {name}")
            made.append(name)
            ref = job["metadata"]["ownerReferences"][0]
            assert (ref["kind"], ref["uid"], ref["controller"]) == (
                "CronJob", cj["metadata"]["uid"], True)
            assert job["metadata"]["labels"]["app"] == "tick"
            got = await eventually(partial(_active_is, client, [name]),
                                   what=f"{name} in status.active")
            assert got["status"]["lastScheduleTime"].endswith(":00Z")
            # the same minute again: the Job exists, so nothing more is made
            controller.queue.add(f"{NS}/tick")
            await asyncio.sleep(0.2)
            assert sorted(j["metadata"]["name"] for j in await items(
                client, "jobs", "app=tick") if not complete(j)) == [name]

            async def finished(job: Obj = job) -> bool:
                await succeed_pods(client, job)
                return complete(await client.get("jobs", job["metadata"]["name"],
                                                 namespace=NS))
            await eventually(finished, what=f"{name} to complete")
            await eventually(lambda: _active_is(client, []), what="status.active emptied")

        async def pruned() -> list[str] | None:
            names = sorted(j["metadata"]["name"] for j in await items(client, "jobs"))
            return names if names == sorted(made[-2:]) else None
        await eventually(pruned, what="the two oldest finished Jobs deleted")
        status = (await client.get("cronjobs", "tick", namespace=NS))["status"]
        assert status["lastSuccessfulTime"]

        async def pods_of_pruned_gone() -> bool:
            left = {p["metadata"]["labels"].get("job-name")
                    for p in await items(client, "pods")}
            return not left & set(made[:2])
        await eventually(pods_of_pruned_gone, what="pods of deleted Jobs collected")
        events = [ev["reason"] for ev in await items(client, "events")
                  if ev["involvedObject"]["kind"] == "CronJob"]
        assert events.count("SuccessfulCreate") == 4
        assert events.count("SuccessfulDelete") == 2
    finally:
        await manager.stop()


async def test_forbid_waits_for_the_active_job_and_replace_replaces_it(
        client: LocalClient) -> None:
    clock = Clock()
    manager = ControllerManager(cast(Cluster, client), [
        CronJobController.factory(clock=clock), JobController])
    await manager.start()
    controller = manager.get("cronjob")
    try:
        forbid = await client.create("cronjobs", cronjob_manifest(
            "solo", concurrencyPolicy="Forbid"), namespace=NS)
        replace = await client.create("cronjobs", cronjob_manifest(
            "fresh", concurrencyPolicy="Replace"), namespace=NS)
        clock.start_at(forbid, replace)
        first = (clock.now // 60 + 1) * 60
        clock.now = first + 1
        for name in ("solo", "fresh"):
            controller.queue.add(f"{NS}/{name}")
        for first_run in (job_name(forbid, first), job_name(replace, first)):
            await eventually(partial(_get, client, "jobs", first_run),
                             what=f"the first run {first_run}")
        clock.now = first + 61
        for name in ("solo", "fresh"):
            controller.queue.add(f"{NS}/{name}")
        second = job_name(replace, first + 60)
        await eventually(lambda: _get(client, "jobs", second), what="the replacing run")
        await eventually(lambda: _absent(client, "jobs", job_name(replace, first)),
                         what="the replaced run deleted")
        await asyncio.sleep(0.3)
        assert await _get(client, "jobs", job_name(forbid, first + 60)) is None
        # the active run ends within the minute: the skipped run starts then
        await succeed_pods(client, await client.get("jobs", job_name(forbid, first),
                                                    namespace=NS))
        await eventually(lambda: _get(client, "jobs", job_name(forbid, first + 60)),
                         what="the skipped run once the first ended")
    finally:
        await manager.stop()


async def _get(c: LocalClient, resource: str, name: str) -> Obj | None:
    try:
        got: Obj = await c.get(resource, name, namespace=NS)
    except e.APIError as err:
        if err.reason is e.Reason.NOT_FOUND:
            return None
        raise
    return got


async def _absent(c: LocalClient, resource: str, name: str) -> bool:
    return await _get(c, resource, name) is None


async def _active_is(c: LocalClient, names: list[str]) -> Obj | None:
    cj = await c.get("cronjobs", "tick", namespace=NS)
    active = [r["name"] for r in (cj.get("status") or {}).get("active") or ()]
    return cj if active == names else None
