"""HA: two corral-controlplane processes over one etcd; the leader is killed with SIGKILL in
the middle of a 500-replica rollout. The standby must lead within 15 s, the rollout must
complete, and etcd's history must show every pod bound to a node exactly once.

The test plays the node agents: it marks bound pods Running and Ready, removes pods whose
graceful deletion has started, and renews the nodes' Leases.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.controlplane import ControlPlane
from tests.support.etcdhistory import binds_per_pod
from tests.support.fakeagents import FakeAgents

REPLICAS = 500
NODES = 5
Obj = dict[str, Any]


def leading(cp: ControlPlane) -> bool:
    code, text = cp.http("/metrics")
    return code == 200 and "\ncorral_leader 1.0" in text


def wait(what: str, check: Any, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def deployment(image: str) -> Obj:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": REPLICAS, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{
                                      "name": "web", "image": image,
                                      "resources": {"requests": {"cpu": "1m",
                                                                 "memory": "1Mi"}}}]}}}}


@pytest.fixture
def cluster(etcd_endpoint: str) -> Iterator[tuple[ControlPlane, ControlPlane]]:
    a = ControlPlane(etcd_endpoint, leader=True).start()
    try:
        wait("the first controlplane to lead", lambda: leading(a), 20)
        b = ControlPlane(etcd_endpoint, data_dir=a.data_dir, leader=True).start()
        try:
            yield a, b
        finally:
            b.stop()
    finally:
        a.cleanup()


def test_standby_takes_over_a_rollout_and_no_pod_is_bound_twice(
        etcd_endpoint: str, cluster: tuple[ControlPlane, ControlPlane]) -> None:
    a, b = cluster
    assert not leading(b)
    with b.client() as client:
        start_rev = int(client.list("pods")["metadata"]["resourceVersion"])
        for i in range(NODES):
            client.create("nodes", {
                "apiVersion": "v1", "kind": "Node", "metadata": {"name": f"node-{i}"},
                "status": {"capacity": {"cpu": "64", "memory": "256Gi", "pods": "1000"},
                           "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "1000"},
                           "conditions": [{"type": "Ready", "status": "True"}]}})
        with FakeAgents(client, nodes=[f"node-{i}" for i in range(NODES)]):
            client.create("deployments", deployment("busybox:1"), namespace="default")

            def status() -> Obj:
                d = client.get("deployments", "web", namespace="default")
                return {**d.get("status", {}), "generation": d["metadata"]["generation"]}

            def complete() -> bool:
                s = status()
                return (s.get("observedGeneration") == s["generation"] and
                        s.get("updatedReplicas") == REPLICAS == s.get("availableReplicas")
                        and s.get("replicas") == REPLICAS)

            wait("500 ready replicas", complete, 240)
            d = client.get("deployments", "web", namespace="default")
            d["spec"]["template"]["spec"]["containers"][0]["image"] = "busybox:2"
            client.update("deployments", d, namespace="default")
            wait("the rollout to be under way",
                 lambda: (status().get("updatedReplicas") or 0) >= REPLICAS // 5, 120)

            a.kill()  # SIGKILL: no lease revocation, the standby must wait for expiry
            took = wait("the standby to lead", lambda: leading(b), 30)
            assert took <= 15, f"the standby took {took:.1f}s to lead"

            wait("the rollout to complete", complete, 300)
            pods = client.list("pods", namespace="default", label_selector="app=web")
            live = [p for p in pods["items"] if not p["metadata"].get("deletionTimestamp")]
            assert len(live) == REPLICAS
            assert {p["spec"]["containers"][0]["image"] for p in live} == {"busybox:2"}
            assert all(p["spec"].get("nodeName") for p in live)
    binds = binds_per_pod(etcd_endpoint, start_rev)
    twice = {k: v for k, v in binds.items() if len(v) > 1}
    assert not twice, f"pods bound more than once: {dict(list(twice.items())[:5])}"
    assert sum(1 for v in binds.values() if v) >= 2 * REPLICAS
