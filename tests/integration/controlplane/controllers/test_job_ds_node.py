"""The Job, DaemonSet, node lifecycle and Endpoints controllers against a real etcd.

Each test runs the controllers in its own loop over EtcdStore + ObjectService +
LocalClient; the test plays the node agent (pod status, leases) and the administrator
(nodes, taints)."""

from __future__ import annotations

import asyncio
import copy
import datetime
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, cast

import pytest
import pytest_asyncio

from api import errors as e
from controlplane.apiserver.objects import ObjectService
from controlplane.controllers.controller import ControllerFactory, ControllerManager
from controlplane.controllers.daemonset import DaemonSetController
from controlplane.controllers.endpoints import EndpointsController
from controlplane.controllers.job import JobController
from controlplane.controllers.nodelifecycle import NodeLifecycleController
from controlplane.controllers.nodelifecycle_plan import LEASE_NAMESPACE, UNREACHABLE
from controlplane.local import Cluster, LocalClient
from controlplane.storage import EtcdStore

pytestmark = pytest.mark.asyncio
Obj = dict[str, Any]
CONTAINERS = [{"name": "c", "image": "busybox:1"}]


@pytest_asyncio.fixture
async def client(etcd_endpoint: str) -> AsyncIterator[LocalClient]:
    store = EtcdStore([etcd_endpoint])
    objects = ObjectService(store)
    c = LocalClient(objects)  # (a field manager loses generateName names: see report)
    for ns in ("default", LEASE_NAMESPACE):
        await c.create("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                      "metadata": {"name": ns}})
    try:
        yield c
    finally:
        await objects.close()
        await store.close()


async def running(c: LocalClient, factories: Sequence[ControllerFactory]) -> ControllerManager:
    # LocalClient's explicit keywords do not match the Protocol's **kw for mypy
    manager = ControllerManager(cast(Cluster, c), factories)
    await manager.start()
    return manager


async def eventually(check: Callable[[], Awaitable[Any]], *, timeout: float = 5.0,
                     what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = await check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.05)


async def pods(c: LocalClient, selector: str = "") -> list[Obj]:
    items: list[Obj] = (await c.list("pods", namespace="default",
                                     label_selector=selector))["items"]
    return items


async def set_pod_status(c: LocalClient, pod: Obj, **status: Any) -> None:
    for _ in range(10):
        fresh = copy.deepcopy(await c.get("pods", pod["metadata"]["name"],
                                          namespace="default"))
        fresh["status"] = {**(fresh.get("status") or {}), **status}
        try:
            await c.update("pods", fresh, namespace="default", subresource="status")
            return
        except e.APIError as err:
            if err.reason is not e.Reason.CONFLICT:
                raise


def now_rfc3339(micro: bool = False) -> str:
    t = datetime.datetime.now(datetime.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def is_active(p: Obj) -> bool:
    return (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed") and \
        not p["metadata"].get("deletionTimestamp")


def job_manifest(name: str, **spec: Any) -> Obj:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {**spec, "template": {"spec": {"restartPolicy": "Never",
                                                   "containers": CONTAINERS}}}}


def condition(obj: Obj, kind: str) -> Obj | None:
    for cond in (obj.get("status") or {}).get("conditions") or ():
        if cond.get("type") == kind and cond.get("status") == "True":
            return dict(cond)
    return None


# ---- Job -----------------------------------------------------------------------------


async def test_job_of_three_completions_two_at_a_time_finishes(client: LocalClient) -> None:
    manager = await running(client, [JobController])
    try:
        job = await client.create("jobs", job_manifest("pi", completions=3, parallelism=2),
                                  namespace="default")
        selector = f"controller-uid={job['metadata']['uid']}"
        most_active = 0
        done: Obj | None = None
        deadline = time.monotonic() + 8
        while done is None and time.monotonic() < deadline:
            active = [p for p in await pods(client, selector) if is_active(p)]
            most_active = max(most_active, len(active))
            for p in active:  # the "node agent": each pod runs and succeeds
                await set_pod_status(client, p, phase="Succeeded")
            got = await client.get("jobs", "pi", namespace="default")
            done = got if condition(got, "Complete") else None
            await asyncio.sleep(0.05)
        assert done is not None, "the job did not complete"
        assert done["status"]["succeeded"] == 3
        assert done["status"]["completionTime"]
        assert most_active <= 2
        made = await pods(client, selector)
        assert len(made) == 3
        for p in made:
            assert p["metadata"]["labels"]["job-name"] == "pi"
            assert p["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]
    finally:
        await manager.stop()


async def test_failing_job_stops_at_its_backoff_limit(client: LocalClient) -> None:
    manager = await running(client, [JobController.factory(backoff_base=0.2)])
    try:
        job = await client.create("jobs", job_manifest("flaky", backoffLimit=2),
                                  namespace="default")
        selector = f"controller-uid={job['metadata']['uid']}"
        failed_at: list[float] = []

        async def fail_the_running_pod() -> Obj | None:
            for p in await pods(client, selector):
                if is_active(p):
                    finished = now_rfc3339(micro=True)
                    await set_pod_status(client, p, phase="Failed", containerStatuses=[{
                        "name": "c", "state": {"terminated": {"exitCode": 1,
                                                              "finishedAt": finished}}}])
                    failed_at.append(time.monotonic())
            got = await client.get("jobs", "flaky", namespace="default")
            return got if condition(got, "Failed") else None

        got = await eventually(fail_the_running_pod, timeout=8, what="the job to fail")
        cond = condition(got, "Failed")
        assert cond is not None and cond["reason"] == "BackoffLimitExceeded"
        assert got["status"]["failed"] == 3  # backoffLimit 2: the third failure ends it
        assert len(failed_at) == 3
        # each re-creation waited out the backoff: 0.2 s, then 0.4 s
        assert failed_at[1] - failed_at[0] >= 0.15
        assert failed_at[2] - failed_at[1] >= 0.35
        await asyncio.sleep(0.5)
        assert len(await pods(client, selector)) == 3, "no pod after the job failed"
        events = (await client.list("events", namespace="default"))["items"]
        assert [ev["reason"] for ev in events] == ["BackoffLimitExceeded"]
        assert events[0]["involvedObject"]["uid"] == job["metadata"]["uid"]
    finally:
        await manager.stop()


# ---- DaemonSet ----------------------------------------------------------------------


def node_manifest(name: str, **labels: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels},
            "status": {"conditions": [{"type": "Ready", "status": "True",
                                       "reason": "KubeletReady"}]}}


async def by_node(c: LocalClient) -> dict[str, list[Obj]]:
    out: dict[str, list[Obj]] = {}
    for p in await pods(c, "app=agent"):
        out.setdefault(p["spec"].get("nodeName") or "", []).append(p)
    return out


async def test_daemonset_covers_nodes_and_follows_changes(client: LocalClient) -> None:
    for n in ("n1", "n2", "n3"):
        await client.create("nodes", node_manifest(n))
    manager = await running(client, [DaemonSetController])
    try:
        await client.create("daemonsets", {
            "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "template": {"metadata": {"labels": {"app": "agent"}},
                                  "spec": {"containers": CONTAINERS}}}},
            namespace="default")

        async def covered(names: set[str]) -> bool:
            placed = await by_node(client)
            live = {n for n, ps in placed.items() if any(is_active(p) for p in ps)}
            return live == names and all(len(placed[n]) == 1 for n in names)

        await eventually(lambda: covered({"n1", "n2", "n3"}), what="a pod on n1..n3")
        await client.create("nodes", node_manifest("n4"))
        await eventually(lambda: covered({"n1", "n2", "n3", "n4"}), what="a pod on n4")

        node = copy.deepcopy(await client.get("nodes", "n2"))
        node["spec"] = {"taints": [{"key": "dedicated", "value": "db",
                                    "effect": "NoExecute"}]}
        await client.update("nodes", node)

        async def n2_pod_deleted() -> bool:
            placed = await by_node(client)
            return all(p["metadata"].get("deletionTimestamp") for p in placed.get("n2", []))

        await eventually(n2_pod_deleted, what="the daemon pod on tainted n2 to go")
        for p in (await by_node(client)).get("n2", []):  # the agent stops it
            await client.delete("pods", p["metadata"]["name"], namespace="default",
                                grace_period=0)
        for p in await pods(client, "app=agent"):
            await set_pod_status(client, p, phase="Running", conditions=[
                {"type": "Ready", "status": "True", "lastTransitionTime": now_rfc3339()}])

        async def status() -> Obj | None:
            ds = await client.get("daemonsets", "agent", namespace="default")
            st = ds.get("status") or {}
            want = {"desiredNumberScheduled": 3, "currentNumberScheduled": 3,
                    "numberReady": 3, "numberAvailable": 3, "updatedNumberScheduled": 3,
                    "numberMisscheduled": 0}
            return ds if all(st.get(k) == v for k, v in want.items()) else None

        ds = await eventually(status, what="the daemonset status")
        assert ds["status"]["observedGeneration"] == ds["metadata"]["generation"]
        assert await covered({"n1", "n3", "n4"})
        for p in await pods(client, "app=agent"):
            assert p["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet"
            assert p["spec"]["nodeName"] in ("n1", "n3", "n4")
    finally:
        await manager.stop()


async def test_daemonset_rolling_update_one_node_at_a_time(client: LocalClient) -> None:
    for n in ("n1", "n2", "n3"):
        await client.create("nodes", node_manifest(n))
    manager = await running(client, [DaemonSetController])
    worst = 0

    async def agent() -> None:  # stops deleted pods, makes new ones ready
        nonlocal worst
        while True:
            placed = await by_node(client)
            down = sum(1 for n in ("n1", "n2", "n3") if not any(
                is_active(p) and condition(p, "Ready") for p in placed.get(n, [])))
            worst = max(worst, down)
            for p in await pods(client, "app=agent"):
                if p["metadata"].get("deletionTimestamp"):
                    await client.delete("pods", p["metadata"]["name"], namespace="default",
                                        grace_period=0)
                elif p["spec"].get("nodeName") and not condition(p, "Ready"):
                    await set_pod_status(client, p, phase="Running", conditions=[
                        {"type": "Ready", "status": "True"}])
            await asyncio.sleep(0.05)

    task = asyncio.create_task(agent())
    try:
        await client.create("daemonsets", {
            "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "template": {"metadata": {"labels": {"app": "agent"}},
                                  "spec": {"containers": CONTAINERS}}}},
            namespace="default")

        async def rolled(image: str) -> bool:
            ds = await client.get("daemonsets", "agent", namespace="default")
            live = [p for p in await pods(client, "app=agent") if is_active(p)]
            return (len(live) == 3 and all(p["spec"]["containers"][0]["image"] == image
                                           and condition(p, "Ready") for p in live)
                    and (ds.get("status") or {}).get("updatedNumberScheduled") == 3
                    and ds["status"].get("numberAvailable") == 3)

        await eventually(lambda: rolled("busybox:1"), what="the first rollout")
        worst = 0
        ds = copy.deepcopy(await client.get("daemonsets", "agent", namespace="default"))
        ds["spec"]["template"]["spec"]["containers"][0]["image"] = "busybox:2"
        await client.update("daemonsets", ds, namespace="default")
        await eventually(lambda: rolled("busybox:2"), what="the rolling update")
        assert worst <= 1, f"{worst} nodes were without a ready daemon pod at once"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await manager.stop()


# ---- node lifecycle -----------------------------------------------------------------


async def renew(c: LocalClient, node: str) -> None:
    lease: Obj = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
             "metadata": {"name": node, "namespace": LEASE_NAMESPACE},
             "spec": {"holderIdentity": node, "leaseDurationSeconds": 1,
                      "renewTime": now_rfc3339(micro=True)}}
    try:
        cur = await c.get("leases", node, namespace=LEASE_NAMESPACE)
    except e.APIError:
        await c.create("leases", lease, namespace=LEASE_NAMESPACE)
        return
    cur = copy.deepcopy(cur)
    cur["spec"]["renewTime"] = lease["spec"]["renewTime"]
    await c.update("leases", cur, namespace=LEASE_NAMESPACE)


async def bound_pod(c: LocalClient, name: str, node: str, **spec: Any) -> None:
    await c.create("pods", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                            "spec": {"containers": CONTAINERS, **spec}},
                   namespace="default")
    await c.create("pods", {"apiVersion": "v1", "kind": "Binding",
                            "metadata": {"name": name}, "target": {"name": node}},
                   namespace="default", subresource="binding")


async def test_node_without_lease_is_tainted_and_its_pods_evicted(client: LocalClient) -> None:
    alive = {"n1": True, "n2": True}

    async def heartbeats() -> None:
        while True:
            for n, on in alive.items():
                if on:
                    await renew(client, n)
            await asyncio.sleep(0.2)

    for n in alive:
        await client.create("nodes", node_manifest(n))
        await renew(client, n)
    # the API server gives every pod 300 s (DefaultTolerationSeconds); this one asks for 2
    await bound_pod(client, "plain", "n1", tolerations=[
        {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 2}])
    await bound_pod(client, "stays", "n1", tolerations=[
        {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}])
    await bound_pod(client, "other", "n2")
    beats = asyncio.create_task(heartbeats())
    manager = await running(client, [NodeLifecycleController.factory(
        grace=1.0, default_toleration_seconds=2, eviction_rate=10.0)])
    try:
        await asyncio.sleep(1.5)  # past the grace period with fresh leases: no change
        assert not (await client.get("nodes", "n1")).get("spec", {}).get("taints")
        alive["n1"] = False
        stopped = time.monotonic()

        async def tainted() -> Obj | None:
            node = await client.get("nodes", "n1")
            keys = {(t["key"], t["effect"]) for t in (node.get("spec") or {}).get("taints")
                    or ()}
            return node if {(UNREACHABLE, "NoExecute"), (UNREACHABLE, "NoSchedule")} <= keys \
                else None

        node = await eventually(tainted, what="n1 to be tainted unreachable")
        assert time.monotonic() - stopped >= 0.5
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert (ready["status"], ready["reason"]) == ("Unknown", "NodeStatusUnknown")
        tainted_at = time.monotonic()

        async def evicted() -> bool:
            p = await client.get("pods", "plain", namespace="default")
            return bool(p["metadata"].get("deletionTimestamp"))

        await eventually(evicted, what="the pod on n1 to be evicted")
        # timeAdded has whole seconds: the 2 s toleration lasts more than 1 s after tainting
        assert time.monotonic() - tainted_at >= 0.8
        assert not (await client.get("pods", "stays", namespace="default"))[
            "metadata"].get("deletionTimestamp")
        assert not (await client.get("pods", "other", namespace="default"))[
            "metadata"].get("deletionTimestamp")
        assert not (await client.get("nodes", "n2")).get("spec", {}).get("taints")

        alive["n1"] = True

        async def recovered() -> bool:
            node = await client.get("nodes", "n1")
            ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
            return not (node.get("spec") or {}).get("taints") and ready["status"] == "True"

        await eventually(recovered, what="n1's taints to be removed")
    finally:
        beats.cancel()
        await asyncio.gather(beats, return_exceptions=True)
        await manager.stop()


# ---- Endpoints ----------------------------------------------------------------------


async def test_endpoints_track_pod_readiness(client: LocalClient) -> None:
    manager = await running(client, [EndpointsController])
    try:
        await client.create("services", {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}},
            namespace="default")
        for name, ip in (("web-a", "10.8.0.1"), ("web-b", "10.8.0.2")):
            await client.create("pods", {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "labels": {"app": "web"}},
                "spec": {"containers": [{**CONTAINERS[0], "ports": [
                    {"name": "http", "containerPort": 8080}]}]}}, namespace="default")
            await set_pod_status(client, {"metadata": {"name": name}}, phase="Running",
                                 podIP=ip, conditions=[{"type": "Ready", "status":
                                                        "True" if name == "web-b"
                                                        else "False"}])

        async def endpoints(ready: list[str], not_ready: list[str]) -> bool:
            try:
                ep = await client.get("endpoints", "web", namespace="default")
            except e.APIError:
                return False
            subsets = ep.get("subsets") or []
            got_ready = [a["ip"] for s in subsets for a in s.get("addresses") or ()]
            got_not = [a["ip"] for s in subsets for a in s.get("notReadyAddresses") or ()]
            ports = [p for s in subsets for p in s.get("ports") or ()]
            return got_ready == ready and got_not == not_ready and all(
                p == {"name": "http", "port": 8080, "protocol": "TCP"} for p in ports)

        await eventually(lambda: endpoints(["10.8.0.2"], ["10.8.0.1"]),
                         what="one ready, one not ready")
        await set_pod_status(client, {"metadata": {"name": "web-a"}},
                             conditions=[{"type": "Ready", "status": "True"}])
        await eventually(lambda: endpoints(["10.8.0.1", "10.8.0.2"], []),
                         what="both ready")
        await client.delete("pods", "web-b", namespace="default")
        await eventually(lambda: endpoints(["10.8.0.1"], []), what="web-b gone")
        await client.delete("services", "web", namespace="default")

        async def gone() -> bool:
            try:
                await client.get("endpoints", "web", namespace="default")
            except e.APIError as err:
                return err.reason is e.Reason.NOT_FOUND
            return False

        await eventually(gone, what="the endpoints to go with the service")
    finally:
        await manager.stop()
