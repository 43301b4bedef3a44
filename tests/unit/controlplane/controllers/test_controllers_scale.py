"""Workload controllers over an in-memory Cluster whose watch the test releases event by
event. ReplicaSet: creates that fail ambiguously (committed, then a timeout) never make it
exceed its replicas; a sync reads only its own pods and the orphans; updates that change
nothing it counts do not sync; status-only syncs are spaced. Deployment and Endpoints: a
sync's reads do not grow with the other objects of the namespace."""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from api import errors as e
from controlplane.controllers.controller import Expectations
from controlplane.controllers.deployment import DeploymentController
from controlplane.controllers.endpoints import EndpointsController
from controlplane.controllers.informer import Informers
from controlplane.controllers.job import JobController
from controlplane.controllers.replicaset import ReplicaSetController

Obj = dict[str, Any]
NS = "default"


class HeldCluster:
    """Just the Cluster verbs the ReplicaSet controller uses, in memory. Writes are
    visible to get/list at once; watch events wait in `held` until `release()`."""

    def __init__(self) -> None:
        self.objs: dict[tuple[str, str], Obj] = {}  # (resource, ns/name) -> object
        self.rv = itertools.count(1)
        self.names = itertools.count(1)
        self.held: list[tuple[str, Obj]] = []
        self.queues: dict[str, list[asyncio.Queue[Obj]]] = {}
        self.creates = 0
        self.lists = 0
        self.timed_out: set[str] = set()  # pods whose create committed, then failed
        # given the n-th pod create (1-based), the error to raise after committing it
        self.fail_after_commit: Callable[[int], e.APIError | None] = lambda n: None
        self.lost_creates: set[int] = set()  # n-th pod creates that time out uncommitted
        self.failing_gets = 0  # the next this many gets time out

    def _stamp(self, obj: Obj) -> Obj:
        obj["metadata"]["resourceVersion"] = str(next(self.rv))
        return obj

    def _emit(self, resource: str, kind: str, obj: Obj) -> None:
        self.held.append((resource, {"type": kind, "object": copy.deepcopy(obj)}))

    def release(self, n: int | None = None) -> None:
        """Deliver the first N held watch events (all of them by default)."""
        n = len(self.held) if n is None else n
        for resource, ev in self.held[:n]:
            for q in self.queues.get(resource, []):
                q.put_nowait(ev)
        del self.held[:n]

    def pods(self) -> list[Obj]:
        return [o for (res, _), o in self.objs.items() if res == "pods"]

    async def get(self, resource: str, name: str, *, namespace: str = "",
                  subresource: str = "") -> Obj:
        if self.failing_gets > 0:
            self.failing_gets -= 1
            raise e.APIError(e.Reason.UNAVAILABLE, "etcd: DEADLINE_EXCEEDED")
        obj = self.objs.get((resource, f"{namespace}/{name}"))
        if obj is None:
            raise e.not_found(resource, name, namespace)
        return copy.deepcopy(obj)

    async def list(self, resource: str, *, namespace: str = "", label_selector: str = "",
                   field_selector: str = "", limit: int = 0, continue_token: str = "",
                   resource_version: str = "") -> Obj:
        items = [copy.deepcopy(o) for (res, _), o in self.objs.items() if res == resource]
        self.lists += 1
        start = int(continue_token or 0)
        end = start + limit if limit else len(items)
        meta = {"resourceVersion": "1"} | ({"continue": str(end)} if end < len(items) else {})
        return {"items": items[start:end], "metadata": meta}

    async def create(self, resource: str, obj: Obj, *, namespace: str = "",
                     subresource: str = "", dry_run: bool = False,
                     field_manager: str = "") -> Obj:
        obj = copy.deepcopy(obj)
        m = obj["metadata"]
        if not m.get("name"):
            m["name"] = f"{m['generateName']}{next(self.names):05d}"
        key = (resource, f"{namespace}/{m['name']}")
        if key in self.objs:
            raise e.already_exists(resource, m["name"], namespace)
        if resource == "pods" and self.creates + 1 in self.lost_creates:
            self.creates += 1
            raise e.APIError(e.Reason.UNAVAILABLE, "etcd: DEADLINE_EXCEEDED")
        m.update(namespace=namespace, uid=f"uid-{m['name']}",
                 creationTimestamp="2026-01-01T00:00:00Z")
        self.objs[key] = self._stamp(obj)
        self._emit(resource, "ADDED", obj)
        if resource == "pods":
            self.creates += 1
            err = self.fail_after_commit(self.creates)
            if err is not None:
                self.timed_out.add(m["name"])
                raise err
        return copy.deepcopy(obj)

    async def update(self, resource: str, obj: Obj, *, namespace: str = "",
                     subresource: str = "", dry_run: bool = False,
                     field_manager: str = "") -> Obj:
        key = (resource, f"{namespace}/{obj['metadata']['name']}")
        if key not in self.objs:
            raise e.not_found(resource, obj["metadata"]["name"], namespace)
        self.objs[key] = self._stamp(copy.deepcopy(obj))
        self._emit(resource, "MODIFIED", self.objs[key])
        return copy.deepcopy(self.objs[key])

    async def delete(self, resource: str, name: str, *, namespace: str = "",
                     **_: Any) -> Obj:
        obj = self.objs.pop((resource, f"{namespace}/{name}"), None)
        if obj is None:
            raise e.not_found(resource, name, namespace)
        self._emit(resource, "DELETED", obj)
        return obj

    async def watch(self, resource: str, **_: Any) -> AsyncIterator[Obj]:
        q: asyncio.Queue[Obj] = asyncio.Queue()
        self.queues.setdefault(resource, []).append(q)
        while True:
            yield await q.get()


def replica_set(replicas: int, name: str = "web") -> Obj:
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "i"}]}}}}


def other_pod(i: int) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"other-{i}", "namespace": NS, "labels": {"app": "other"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                              "name": "other", "uid": "uid-other",
                                              "controller": True}]},
            "spec": {}}


async def settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


async def started(cluster: HeldCluster, *objs: tuple[str, Obj]) -> tuple[
        ReplicaSetController, Informers]:
    for resource, obj in objs:
        await cluster.create(resource, obj, namespace=NS)
    cluster.held.clear()  # the informers list these
    informers = Informers(cluster)  # type: ignore[arg-type]
    ctl = ReplicaSetController(cluster, informers)  # type: ignore[arg-type]
    informers.start()
    await informers.wait_synced()
    await settle()
    return ctl, informers


async def sync(ctl: ReplicaSetController, key: str = f"{NS}/web") -> None:
    try:
        await ctl.sync(key)
    except e.APIError:
        pass  # the worker would requeue it


def timeout_on(*which: int) -> Callable[[int], e.APIError | None]:
    return lambda n: e.APIError(e.Reason.UNAVAILABLE, "etcd: DEADLINE_EXCEEDED") \
        if n in which else None


@pytest.mark.asyncio
@pytest.mark.parametrize(("replicas", "ambiguous"), [
    pytest.param(10, (3,), id="one-timeout"),
    pytest.param(10, (2, 3), id="two-timeouts-in-one-batch"),
    pytest.param(40, (1, 9, 20), id="timeouts-in-several-batches"),
])
async def test_committed_creates_that_time_out_never_overshoot(
        replicas: int, ambiguous: tuple[int, ...]) -> None:
    """A create that committed but answered with a timeout: the pod comes back through
    the watch later than the others. Until it does, the ReplicaSet must not create again."""
    cluster = HeldCluster()
    ctl, informers = await started(cluster, ("replicasets", replica_set(replicas)))
    cluster.fail_after_commit = timeout_on(*ambiguous)
    try:
        for _ in range(20):
            await sync(ctl)
            # every event but the pods that timed out (those arrive later)
            slow = [ev for ev in cluster.held
                    if ev[1]["object"]["metadata"]["name"] in cluster.timed_out]
            cluster.held = [ev for ev in cluster.held if ev not in slow]
            cluster.release()
            await settle()
            await sync(ctl)
            assert len(cluster.pods()) <= replicas
            cluster.held.extend(slow)
            cluster.release()
            await settle()
            if len(cluster.pods()) == replicas:
                break
        await sync(ctl)
        assert len(cluster.pods()) == replicas
    finally:
        await informers.stop()


@pytest.mark.asyncio
@pytest.mark.parametrize("others", [
    pytest.param(10, id="10-other-pods"),
    pytest.param(2000, id="2000-other-pods"),
])
async def test_a_sync_reads_its_own_pods_not_the_namespace(others: int) -> None:
    """Cost per sync does not grow with the other pods in the namespace."""
    cluster = HeldCluster()
    ctl, informers = await started(
        cluster, ("replicasets", replica_set(3)),
        *(("pods", other_pod(i)) for i in range(others)))
    try:
        await sync(ctl)
        cluster.release()
        await settle()
        before = ctl.pods.objects_read
        await sync(ctl)
        assert len([p for p in cluster.pods() if p["metadata"]["name"].startswith("web-")]) \
            == 3
        assert ctl.pods.objects_read - before <= 3
    finally:
        await informers.stop()


@pytest.mark.parametrize(("steps", "satisfied"), [
    pytest.param([("seen", "ns/a"), ("seen", "ns/b")], True, id="both-seen"),
    pytest.param([("seen", "ns/a")], False, id="one-still-expected"),
    pytest.param([("seen", "ns/a"), ("seen", "ns/other")], False,
                 id="someone-elses-pod-clears-nothing"),
    pytest.param([("seen", "ns/a"), ("retry", "ns/b"), ("seen", "ns/b")], False,
                 id="renamed-retry-waits-for-the-new-name"),
    pytest.param([("seen", "ns/a"), ("retry", "ns/b"), ("seen", "ns/b2")], True,
                 id="renamed-retry-seen"),
    pytest.param([("seen", "ns/a"), ("expire", "")], True, id="gives-up-after-ttl"),
])
def test_named_creation_expectations(steps: list[tuple[str, str]], satisfied: bool) -> None:
    t = [0.0]
    exp = Expectations(clock=lambda: t[0])
    exp.expect("k", creates=["ns/a", "ns/b"])
    for step, name in steps:
        if step == "seen":
            exp.creation_observed("k", name)
        elif step == "retry":  # the name was taken: the create goes on under b2
            exp.expect_creation("k", "ns/b2")
            exp.creation_observed("k", name)
        else:
            t[0] = 301.0
    assert exp.satisfied("k") is satisfied


def pod_of_web(name: str, **changes: Any) -> Obj:
    obj: Obj = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": NS, "resourceVersion": "1",
                             "labels": {"app": "web"},
                             "ownerReferences": [{"apiVersion": "apps/v1",
                                                  "kind": "ReplicaSet", "name": "web",
                                                  "uid": "uid-web", "controller": True}]},
                "spec": {}, "status": {"phase": "Pending"}}
    for path, value in changes.items():
        part, field = path.split("__")
        obj[part][field] = value
    return obj


@pytest.mark.asyncio
@pytest.mark.parametrize(("changes", "enqueued"), [
    pytest.param({"spec__nodeName": "node-1"}, False, id="bound-no-sync"),
    pytest.param({"metadata__resourceVersion": "2"}, False, id="rv-only-no-sync"),
    pytest.param({"status__phase": "Running"}, True, id="phase-syncs"),
    pytest.param({"status__conditions": [{"type": "Ready", "status": "True"}]}, True,
                 id="ready-syncs"),
    pytest.param({"metadata__labels": {"app": "db"}}, True, id="labels-sync"),
    pytest.param({"metadata__deletionTimestamp": "2026-01-01T00:00:00Z"}, True,
                 id="deleting-syncs"),
])
async def test_pod_updates_that_change_nothing_counted_do_not_sync(
        changes: Obj, enqueued: bool) -> None:
    cluster = HeldCluster()
    ctl, informers = await started(cluster, ("replicasets", replica_set(1)))
    try:
        while (key := ctl.queue.get_nowait()) is not None:
            ctl.queue.done(key)
        ctl._pod_updated(pod_of_web("p"), pod_of_web("p", **changes))
        assert (len(ctl.queue) == 1) is enqueued
    finally:
        await informers.stop()


@pytest.mark.asyncio
async def test_status_only_syncs_are_spaced_while_creates_are_in_flight() -> None:
    """With its creates unobserved a sync can only refresh status: a burst of pod events
    plans at most once per interval, and the key comes back when the interval ends."""
    cluster = HeldCluster()
    ctl, informers = await started(cluster, ("replicasets", replica_set(50)))
    t = [100.0]
    ctl.queue.clock = lambda: t[0]
    try:
        await sync(ctl)  # creates 50; none observed yet
        cluster.release(10)
        await settle()
        before = ctl.pods.objects_read
        t[0] += 0.01
        for _ in range(5):
            await sync(ctl)
        assert ctl.pods.objects_read == before  # too soon: no plan
        assert ctl.queue.waiting() == 1  # the status is refreshed a little later
        t[0] += 1.0
        for _ in range(5):
            await sync(ctl)
        assert ctl.pods.objects_read - before == 10  # one plan over the 10 seen
        cluster.release()
        await settle()
        await sync(ctl)  # all observed: a full sync at once
        assert ctl.pods.objects_read - before == 60
        assert len(cluster.pods()) == 50
    finally:
        await informers.stop()


def deployment(name: str) -> Obj:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}",
                         "generation": 1},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "i"}]}}}}


@pytest.mark.asyncio
@pytest.mark.parametrize("pods", [pytest.param(5, id="5-pods"),
                                  pytest.param(1000, id="1000-pods")])
async def test_a_deployment_sync_reads_no_pod_and_only_its_replica_sets(pods: int) -> None:
    cluster = HeldCluster()
    informers = Informers(cluster)  # type: ignore[arg-type]
    ctl = DeploymentController(cluster, informers)  # type: ignore[arg-type]
    await cluster.create("deployments", deployment("web"), namespace=NS)
    await cluster.create("deployments", deployment("other"), namespace=NS)
    informers.start()
    await informers.wait_synced()
    try:
        for name in ("web", "other"):  # each makes its ReplicaSet
            await ctl.sync(f"{NS}/{name}")
        cluster.release()
        await settle()
        for i in range(pods):
            await cluster.create("pods", other_pod(i), namespace=NS)
        cluster.release()
        await settle()
        pods_before, rses_before = ctl.pods.objects_read, ctl.rses.objects_read
        await ctl.sync(f"{NS}/web")
        assert ctl.pods.objects_read == pods_before
        assert ctl.rses.objects_read - rses_before == 1  # its own; not "other"'s
    finally:
        await informers.stop()


def labelled_pod(name: str, app: str, ip: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": {"app": app, "tier": "x"}},
            "spec": {"nodeName": "n"},
            "status": {"phase": "Running", "podIP": ip,
                       "conditions": [{"type": "Ready", "status": "True"}]}}


@pytest.mark.asyncio
@pytest.mark.parametrize("others", [pytest.param(5, id="5-other-pods"),
                                    pytest.param(1000, id="1000-other-pods")])
async def test_an_endpoints_sync_reads_the_pods_it_selects(others: int) -> None:
    cluster = HeldCluster()
    informers = Informers(cluster)  # type: ignore[arg-type]
    ctl = EndpointsController(cluster, informers)  # type: ignore[arg-type]
    await cluster.create("services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": NS},
        "spec": {"selector": {"app": "web", "tier": "x"},
                 "ports": [{"port": 80, "targetPort": 8080}]}}, namespace=NS)
    for i in range(3):
        await cluster.create("pods", labelled_pod(f"web-{i}", "web", f"10.0.0.{i + 1}"),
                             namespace=NS)
    for i in range(others):  # share tier=x with the service's pods, not app=web
        await cluster.create("pods", labelled_pod(f"o-{i}", "other", "10.1.0.1"),
                             namespace=NS)
    informers.start()
    await informers.wait_synced()
    try:
        before = ctl.pods.objects_read
        await ctl.sync(f"{NS}/web")
        assert ctl.pods.objects_read - before == 3
        (subset,) = cluster.objs[("endpoints", f"{NS}/web")]["subsets"]
        assert sorted(a["ip"] for a in subset["addresses"]) == [
            "10.0.0.1", "10.0.0.2", "10.0.0.3"]
    finally:
        await informers.stop()


@pytest.mark.asyncio
async def test_a_relist_comes_in_pages_and_lets_the_loop_run() -> None:
    """10000 pods listed at once and put in the cache in one go would block the event
    loop for seconds (the leader's lease renewal included)."""
    cluster = HeldCluster()
    for i in range(1200):
        await cluster.create("pods", other_pod(i), namespace=NS)
    informers = Informers(cluster)  # type: ignore[arg-type]
    pods = informers.get("pods")
    seen: list[int] = []

    async def ticker() -> None:
        while True:
            seen.append(len(pods.items))
            await asyncio.sleep(0)

    tick = asyncio.create_task(ticker())
    try:
        informers.start()
        await informers.wait_synced()
        assert len(pods.items) == 1200
        assert cluster.lists == 3  # pages of 500
        assert any(0 < n < 1200 for n in seen)  # the loop ran while the cache filled
    finally:
        tick.cancel()
        await informers.stop()


def job(parallelism: int) -> Obj:
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "batch", "namespace": NS, "uid": "uid-batch"},
            "spec": {"parallelism": parallelism, "completions": parallelism * 2,
                     "template": {"spec": {"restartPolicy": "Never",
                                           "containers": [{"name": "c", "image": "i"}]}}}}


@pytest.mark.asyncio
@pytest.mark.parametrize(("parallelism", "ambiguous"), [
    pytest.param(3, (2,), id="second-create-times-out"),
    pytest.param(4, (1, 4), id="first-and-last-time-out"),
])
async def test_a_job_never_runs_more_than_parallelism_after_timeouts(
        parallelism: int, ambiguous: tuple[int, ...]) -> None:
    cluster = HeldCluster()
    await cluster.create("jobs", job(parallelism), namespace=NS)
    cluster.held.clear()
    informers = Informers(cluster)  # type: ignore[arg-type]
    ctl = JobController.factory()(cluster, informers)  # type: ignore[arg-type]
    informers.start()
    await informers.wait_synced()
    cluster.fail_after_commit = timeout_on(*ambiguous)
    try:
        for _ in range(2 * parallelism):
            try:
                await ctl.sync(f"{NS}/batch")
            except e.APIError:
                pass
            slow = [ev for ev in cluster.held
                    if ev[1]["object"]["metadata"]["name"] in cluster.timed_out]
            cluster.held = [ev for ev in cluster.held if ev not in slow]
            cluster.release()
            await settle()
            try:
                await ctl.sync(f"{NS}/batch")
            except e.APIError:
                pass
            assert len(cluster.pods()) <= parallelism
            cluster.held.extend(slow)
            cluster.release()
            await settle()
        assert len(cluster.pods()) == parallelism
    finally:
        await informers.stop()


@pytest.mark.asyncio
@pytest.mark.parametrize("failing_gets", [pytest.param(1, id="lookup-fails-once"),
                                          pytest.param(3, id="lookup-fails-three-times")])
async def test_a_lost_create_whose_lookup_fails_does_not_stall_the_replica_set(
        failing_gets: int) -> None:
    """The create timed out without committing and looking the pod up failed too: the
    controller looks again soon (not after the 5-minute expectations timeout)."""
    cluster = HeldCluster()
    ctl, informers = await started(cluster, ("replicasets", replica_set(5)))
    cluster.lost_creates = {3}
    cluster.failing_gets = failing_gets
    try:
        for _ in range(failing_gets + 2):
            await sync(ctl)
            cluster.release()
            await settle()
        assert len(cluster.pods()) == 5
    finally:
        await informers.stop()
