"""Bad input and faults, against a real etcd and the real controlplane (issue 5):

- etcd killed (SIGKILL) and restarted in the middle of a rollout: the API answers
  UNAVAILABLE meanwhile, the controlplane recovers by itself, the rollout completes with
  every ReplicaSet's pods exactly as wanted, and etcd's history binds no pod twice;
- a pod no node can hold stays Pending with kube-scheduler's reason and Event, costs no
  writes (and next to no CPU) while nothing changes, and is bound once a big node appears;
- a Node with nonsense capacity is refused by the API server, naming the field;
- a controller whose writes keep failing retries with growing delays (its work queue's
  rate limiter), and stops retrying once the write succeeds.

The node agents are played by tests.support.fakeagents (bound pods become Ready).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from api import errors as e
from api.client import Client
from controlplane.apiserver.objects import ObjectService
from controlplane.controllers.controller import ControllerManager
from controlplane.controllers.replicaset import ReplicaSetController
from controlplane.local import LocalClient
from controlplane.storage import EtcdStore, object_key
from tests.support.controlplane import ControlPlane
from tests.support.etcd import EtcdServer
from tests.support.etcdhistory import binds_per_pod, history
from tests.support.fakeagents import FakeAgents

Obj = dict[str, Any]
REPLICAS = 200
NODES = [f"node-{i}" for i in range(4)]


def wait(what: str, check: Callable[[], Any], timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def node(name: str, cpu: str) -> Obj:
    alloc = {"cpu": cpu, "memory": "256Gi", "pods": "1000"}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"capacity": alloc, "allocatable": alloc,
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def revision(client: Client) -> int:
    return int(client.list("namespaces")["metadata"]["resourceVersion"])


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture
def leader(etcd_endpoint: str) -> Iterator[ControlPlane]:
    """One corral-controlplane that leads (scheduler and controllers), one API process."""
    with ControlPlane(etcd_endpoint, leader=True, args=("--workers", "1")) as cp:
        wait("the controlplane to lead",
             lambda: "\ncorral_leader 1.0" in cp.http("/metrics")[1], 20)
        yield cp


# ---- etcd restarts mid-rollout ------------------------------------------------------------

def deployment(image: str) -> Obj:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": REPLICAS, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{
                                      "name": "web", "image": image,
                                      "resources": {"requests": {"cpu": "1m",
                                                                 "memory": "1Mi"}}}]}}}}


def test_etcd_restart_mid_rollout_loses_no_pod_and_binds_none_twice(
        etcd_server: EtcdServer, etcd_endpoint: str, leader: ControlPlane) -> None:
    with leader.client() as client:
        start_rev = revision(client)
        for name in NODES:
            client.create("nodes", node(name, "64"))
        with FakeAgents(client, nodes=NODES):
            client.create("deployments", deployment("busybox:1"), namespace="default")

            def status() -> Obj:
                d = client.get("deployments", "web", namespace="default")
                return {**d.get("status", {}), "generation": d["metadata"]["generation"]}

            def complete() -> bool:
                try:
                    s = status()
                except e.APIError:
                    return False
                return (s.get("observedGeneration") == s["generation"] and
                        s.get("updatedReplicas") == REPLICAS == s.get("availableReplicas")
                        and s.get("replicas") == REPLICAS)

            wait(f"{REPLICAS} ready replicas", complete, 60)
            d = client.get("deployments", "web", namespace="default")
            d["spec"]["template"]["spec"]["containers"][0]["image"] = "busybox:2"
            client.update("deployments", d, namespace="default")

            def under_way() -> bool:
                s = status()
                return (s.get("observedGeneration") == s["generation"] and
                        REPLICAS // 5 <= (s.get("updatedReplicas") or 0) < REPLICAS)

            wait("the rollout to be under way", under_way, 30)

            etcd_server.kill()
            with pytest.raises(e.APIError) as outage:
                client.create("configmaps", {
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "during-outage"}}, namespace="default")
            assert outage.value.reason in (e.Reason.UNAVAILABLE, e.Reason.TIMEOUT), \
                outage.value
            time.sleep(4)
            etcd_server.start()

            wait("the rollout to complete after etcd came back", complete, 60)
            pods = client.list("pods", namespace="default", label_selector="app=web")
            replicasets = client.list("replicasets", namespace="default")["items"]
    live = [p for p in pods["items"] if not p["metadata"].get("deletionTimestamp")]
    assert len(live) == REPLICAS
    assert {p["spec"]["containers"][0]["image"] for p in live} == {"busybox:2"}
    assert all(p["spec"].get("nodeName") for p in live)
    owned: dict[str, int] = {}
    for p in live:
        for ref in p["metadata"].get("ownerReferences") or []:
            owned[ref["uid"]] = owned.get(ref["uid"], 0) + 1
    wanted = {rs["metadata"]["uid"]: rs["spec"]["replicas"] for rs in replicasets}
    assert sorted(wanted.values()) == [0, REPLICAS]  # the old ReplicaSet and the new one
    assert {uid: owned.get(uid, 0) for uid in wanted} == wanted
    assert all(rs["status"].get("replicas", 0) == rs["spec"]["replicas"]
               for rs in replicasets)

    binds = binds_per_pod(etcd_endpoint, start_rev)
    twice = {k: v for k, v in binds.items() if len(v) > 1}
    assert not twice, f"pods bound more than once: {dict(list(twice.items())[:5])}"
    assert sum(1 for v in binds.values() if v) >= 2 * REPLICAS  # both generations bound


# ---- a pod no node can hold ---------------------------------------------------------------

def big_pod(cpu: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "big"},
            "spec": {"containers": [{"name": "c", "image": "busybox:1",
                                     "resources": {"requests": {"cpu": cpu}}}]}}


def scheduled_condition(pod: Obj) -> Obj | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled":
            return dict(cond)
    return None


def test_unsatisfiable_pod_waits_with_the_reason_for_free_until_a_node_fits(
        etcd_endpoint: str, leader: ControlPlane) -> None:
    message = "0/3 nodes are available: 3 Insufficient cpu."
    assert leader.proc is not None
    with leader.client() as client:
        for name in NODES[:3]:
            client.create("nodes", node(name, "4"))
        with FakeAgents(client, nodes=NODES[:3]) as agents:
            client.create("pods", big_pod("8"), namespace="default")
            wait("PodScheduled=False", lambda: scheduled_condition(
                client.get("pods", "big", namespace="default")), 15)
            pod = client.get("pods", "big", namespace="default")
            cond = scheduled_condition(pod)
            assert cond is not None
            assert (cond["status"], cond["reason"], cond["message"]) == (
                "False", "Unschedulable", message)
            assert not pod["spec"].get("nodeName")
            assert pod["status"].get("phase", "Pending") == "Pending"
            events = [ev for ev in client.list("events", namespace="default")["items"]
                      if ev["involvedObject"].get("name") == "big"]
            assert [(ev["reason"], ev["type"], ev["message"], ev["source"]["component"])
                    for ev in events] == [
                ("FailedScheduling", "Warning", message, "default-scheduler")]

            # Nothing changes for 5 s: no write about the pod, no new Event, and the
            # scheduler (in the leader process) is not spinning on it.
            quiet_from = revision(client) + 1
            cpu_before = cpu_seconds(leader.proc.pid)
            time.sleep(5)
            cpu_used = cpu_seconds(leader.proc.pid) - cpu_before
            writes = [ev.key for ev in history(etcd_endpoint, "/registry/pods/", quiet_from)]
            writes += [ev.key for ev in history(etcd_endpoint, "/registry/events/",
                                                quiet_from)]
            assert writes == [], f"writes while nothing changed: {writes[:5]}"
            assert cpu_used < 1.0, f"the controlplane used {cpu_used:.2f} s of CPU in 5 s"

            # A node that fits appears: the pod leaves the unschedulable queue at once.
            agents.nodes.append("huge")
            client.create("nodes", node("huge", "16"))
            took = wait("the pod to be bound to the new node", lambda: client.get(
                "pods", "big", namespace="default")["spec"].get("nodeName") == "huge", 10)
            assert took < 3, f"binding took {took:.1f} s after the node appeared"
    # The same reading of etcd's history does see the writes once something happens.
    assert "/registry/pods/default/big" in {
        ev.key for ev in history(etcd_endpoint, "/registry/pods/", quiet_from)}


# ---- a node with nonsense capacity ---------------------------------------------------------

@pytest.mark.parametrize(("capacity", "field", "problem"), [
    pytest.param({"cpu": "-4", "memory": "1Gi", "pods": "10"}, "status.capacity['cpu']",
                 "must be a non-negative quantity, got '-4'", id="negative-cpu"),
    pytest.param({"cpu": "4", "memory": "a lot", "pods": "10"}, "status.capacity['memory']",
                 "must be a quantity like 500m or 1Gi, got 'a lot'", id="memory-nonsense"),
    pytest.param({"cpu": "4", "memory": "1Gi", "pods": "2.5"}, "status.capacity['pods']",
                 "must be an integer, got '2.5'", id="pods-fraction"),
])
def test_api_server_refuses_a_node_with_nonsense_capacity(
        etcd_endpoint: str, capacity: Obj, field: str, problem: str) -> None:
    with ControlPlane(etcd_endpoint, insecure=True, args=("--workers", "1")) as cp, \
            cp.client() as client:
        bad = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
               "status": {"capacity": capacity}}
        with pytest.raises(e.APIError) as created:
            client.create("nodes", bad)
        assert created.value.reason is e.Reason.INVALID
        assert f"Node n1: {field}: {problem}" in str(created.value)
        with pytest.raises(e.APIError) as read:
            client.get("nodes", "n1")
        assert read.value.reason is e.Reason.NOT_FOUND

        # The agent's path: a registered node whose status turns to nonsense.
        good = client.create("nodes", node("n1", "4"))
        good["status"]["allocatable"] = capacity
        with pytest.raises(e.APIError) as updated:
            client.update("nodes", good, subresource="status")
        assert updated.value.reason is e.Reason.INVALID
        assert f"Node n1: {field.replace('capacity', 'allocatable')}: {problem}" in str(
            updated.value)
        stored = client.get("nodes", "n1")
        assert stored["status"]["allocatable"]["cpu"] == "4"


# ---- a controller's failing writes back off ----------------------------------------------

class RecordingClient(LocalClient):
    """LocalClient that notes when each pod create was tried and how it ended."""

    def __init__(self, objects: ObjectService) -> None:
        super().__init__(objects)
        self.pod_creates: list[tuple[float, str]] = []  # (monotonic time, reason or "ok")

    async def create(self, resource: str, obj: Obj, *, namespace: str = "",
                     subresource: str = "", dry_run: bool = False,
                     field_manager: str = "") -> Obj:
        if resource != "pods":
            return await super().create(resource, obj, namespace=namespace,
                                        subresource=subresource, dry_run=dry_run,
                                        field_manager=field_manager)
        try:
            out = await super().create(resource, obj, namespace=namespace,
                                       subresource=subresource, dry_run=dry_run,
                                       field_manager=field_manager)
        except e.APIError as err:
            self.pod_creates.append((time.monotonic(), err.reason.k8s))
            raise
        self.pod_creates.append((time.monotonic(), "ok"))
        return out


@pytest.mark.asyncio
async def test_replicaset_controller_backs_off_while_pod_creates_fail(
        etcd_endpoint: str) -> None:
    """The namespace of a ReplicaSet vanishes from etcd (deleted by hand): every pod create
    answers NotFound. The controller must retry with its rate limiter's growing delays
    (5 ms doubling), not in a loop, and settle once the namespace is back."""
    store = EtcdStore([etcd_endpoint])
    setup = ObjectService(store)
    objects = ObjectService(store)  # the controllers' own: nothing about the namespace cached
    client = RecordingClient(objects)
    manager: ControllerManager | None = None
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "vanishing"}}
    try:
        admin = LocalClient(setup)
        await admin.create("namespaces", namespace)
        await admin.create("replicasets", {
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "rs"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "rs"}},
                     "template": {"metadata": {"labels": {"app": "rs"}},
                                  "spec": {"containers": [{"name": "c",
                                                           "image": "busybox:1"}]}}}},
            namespace="vanishing")
        await store.delete(object_key("namespaces", "vanishing"))

        manager = ControllerManager(client, [ReplicaSetController])
        await manager.start()
        queue = manager.get("replicaset").queue
        await asyncio.sleep(3.0)  # attempts at ~0, 5, 15, 35 ms ... 1.3 s, 2.6 s; next 5.1 s
        failed = list(client.pod_creates)
        assert failed and {reason for _, reason in failed} == {"NotFound"}
        assert 8 <= len(failed) <= 12, f"{len(failed)} attempts in 3 s"
        assert queue.retries("vanishing/rs") == len(failed)  # the rate limiter's count
        gaps = [b - a for (a, _), (b, _) in itertools.pairwise(failed)]
        for i, gap in enumerate(gaps):  # a timer never fires early: the delays are floors
            assert gap >= 0.9 * 0.005 * 2 ** i, f"retry {i + 1} came after {gap:.4f} s"
        assert gaps[-1] >= 0.5, f"delays did not grow: {[round(g, 3) for g in gaps]}"

        await admin.create("namespaces", namespace)  # the next retry (at ~5.1 s) succeeds

        async def settled() -> bool:
            pods = await admin.list("pods", namespace="vanishing")
            return len(pods["items"]) == 2 and queue.retries("vanishing/rs") == 0
        deadline = time.monotonic() + 8
        while not await settled():
            assert time.monotonic() < deadline, "pods not created after the namespace " \
                f"came back: {client.pod_creates[len(failed):]}"
            await asyncio.sleep(0.05)
        outcomes = [reason for _, reason in client.pod_creates[len(failed):]]
        assert outcomes.count("ok") == 2 and outcomes.count("NotFound") <= 1, outcomes
    finally:
        if manager is not None:
            await manager.stop()
        await objects.close()
        await setup.close()
        await store.close()
