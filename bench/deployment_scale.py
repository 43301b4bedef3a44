"""A Deployment scaled 0 -> N replicas (10000 by default) on 100 nodes, end to end.

    etcd + corral-controlplane (leader: scheduler and controllers), started here
    100 Node objects with big allocatable, their Leases renewed by this script
    Deployment "scale" at replicas 0 ──(timed from here)── scale to N
        Deployment controller ─► ReplicaSet ─► N pods created ─► scheduler binds them
    an etcd watch (from the revision before the scale) sees every pod created and bound:
        the clock stops when N pods exist and all N are bound in etcd

Pods are never run (no agents): the figure is the control plane's, not the nodes'.

Usage: bench/deployment_scale.py [--replicas N] [--nodes M] [--timeout S]
The last line is JSON: {"bench", "ours", "peer", "ratio", "unit"} (seconds to all bound;
the issue names no peer figure for this shape, so peer is null).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import datetime
import json
import os
import sys
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from api import errors as e
from api.client import Client
from controlplane.storage import EtcdStore, EventType
from tests.support.controlplane import ControlPlane
from tests.support.etcd import EtcdServer

Obj = dict[str, Any]
PREFIX = "/registry/pods/default/"


def node(name: str) -> Obj:
    alloc = {"cpu": "1000", "memory": "4Ti", "pods": "500"}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"capacity": alloc, "allocatable": alloc,
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def deployment(replicas: int) -> Obj:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "scale", "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "scale"}},
                     "template": {"metadata": {"labels": {"app": "scale"}},
                                  "spec": {"containers": [{
                                      "name": "c", "image": "registry.k8s.io/pause:3.9",
                                      "resources": {"requests": {"cpu": "10m",
                                                                 "memory": "16Mi"}}}]}}}}


def renew_leases(client: Client, nodes: list[str], stop: threading.Event) -> None:
    """What each node's agent does: renew its Lease every 10 s, each node on its own (25 at
    a time here), so a busy API server does not starve the nodes into Ready=Unknown."""
    def renew(name: str) -> None:
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                 "metadata": {"name": name, "namespace": "corral-node-lease"},
                 "spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
                          "renewTime": now}}
        try:
            client.apply("leases", lease, namespace="corral-node-lease",
                         field_manager="bench", force=True)
        except (e.APIError, ValueError) as err:  # ValueError: the client closed at the end
            print(f"lease {name}: {err}", file=sys.stderr)

    with concurrent.futures.ThreadPoolExecutor(max_workers=25) as pool:
        while not stop.is_set():
            list(pool.map(renew, nodes))
            stop.wait(10)


class Unfinished(Exception):
    """The timeout passed before every pod was bound."""

    def __init__(self, live: int, bound: int) -> None:
        super().__init__(f"{live} pods exist, {bound} bound")
        self.live, self.bound = live, bound


async def watch_until_bound(endpoint: str, *, from_revision: int, replicas: int,
                            started: float, timeout: float) -> tuple[float, float, int]:
    """Seconds (since STARTED) until REPLICAS pods existed and until all were bound, and
    the most pods that existed at once (more than REPLICAS: the ReplicaSet overshot)."""
    store = EtcdStore([endpoint], timeout=30)
    live: set[str] = set()
    bound: set[str] = set()
    all_created = 0.0
    most = 0
    try:
        stream = store.watch(PREFIX, from_revision=from_revision)
        try:
            async with asyncio.timeout(timeout):
                async for ev in stream:
                    if ev.type is EventType.BOOKMARK:
                        continue
                    if ev.type is EventType.DELETED:
                        live.discard(ev.key)
                        bound.discard(ev.key)
                        continue
                    live.add(ev.key)
                    most = max(most, len(live))
                    if b'"nodeName"' in ev.value and (json.loads(ev.value).get(
                            "spec") or {}).get("nodeName"):
                        bound.add(ev.key)
                    if not all_created and len(live) >= replicas:
                        all_created = time.perf_counter() - started
                    if len(bound) >= replicas:
                        return all_created, time.perf_counter() - started, most
        except TimeoutError:
            raise Unfinished(len(live), len(bound)) from None
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
    finally:
        await store.close()
    raise AssertionError("unreachable: the watch ended")


def diagnose(client: Client, cp: ControlPlane) -> Obj:
    """Why pods are still unbound: their PodScheduled conditions and the log's warnings."""
    pods = client.list("pods", namespace="default", label_selector="app=scale")["items"]
    pending = [p for p in pods if not p["spec"].get("nodeName")]
    reasons: dict[str, int] = {}
    for p in pending:
        conds = [c for c in (p.get("status") or {}).get("conditions") or []
                 if c.get("type") == "PodScheduled"]
        text = f"{conds[0].get('reason')}: {conds[0].get('message')}" if conds else "none"
        reasons[text] = reasons.get(text, 0) + 1
    log = [line for line in cp.log_tail().splitlines() if " WARNING " in line or
           " ERROR " in line]
    return {"unbound": len(pending), "pod_scheduled": reasons, "log": log[-10:]}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time PID has used: on a shared machine a steadier figure of
    the control plane's work than the wall clock."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(*, replicas: int, nodes: int, timeout: float) -> dict[str, Any]:
    names = [f"node-{i}" for i in range(nodes)]
    stop = threading.Event()
    with EtcdServer() as etcd, ControlPlane(etcd.endpoint, leader=True) as cp, \
            cp.client() as client:
        deadline = time.monotonic() + 30
        while "\ncorral_leader 1.0" not in cp.http("/metrics")[1]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the controlplane did not lead: {cp.log_tail()}")
            time.sleep(0.1)
        for name in names:
            client.create("nodes", node(name))
        renewer = threading.Thread(target=renew_leases, args=(client, names, stop),
                                   daemon=True)
        renewer.start()
        try:
            client.create("deployments", deployment(0), namespace="default")
            deadline = time.monotonic() + 30
            while not client.list("replicasets", namespace="default")["items"]:
                if time.monotonic() > deadline:
                    raise RuntimeError("no ReplicaSet for the Deployment at 0 replicas")
                time.sleep(0.1)
            time.sleep(1)  # let the controllers settle at 0
            d = client.get("deployments", "scale", namespace="default")
            start_rev = int(d["metadata"]["resourceVersion"])
            d["spec"]["replicas"] = replicas
            assert cp.proc is not None
            cpu_before = cpu_seconds(cp.proc.pid)
            started = time.perf_counter()
            client.update("deployments", d, namespace="default")
            try:
                created, bound, most = asyncio.run(watch_until_bound(
                    etcd.endpoint, from_revision=start_rev, replicas=replicas,
                    started=started, timeout=timeout))
                cpu = cpu_seconds(cp.proc.pid) - cpu_before
            except Unfinished as err:
                print(json.dumps({"unfinished_after_s": timeout, "pods": err.live,
                                  "bound": err.bound, **diagnose(client, cp)}), flush=True)
                raise
        finally:
            stop.set()
            renewer.join(60)
        # Were the ReplicaSet to overshoot, give it a minute to delete the surplus, and
        # report what it left (max_live_pods shows the overshoot itself).
        deadline = time.monotonic() + 60
        while True:
            pods = client.list("pods", namespace="default",
                               label_selector="app=scale")["items"]
            live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
            if len(live) == replicas or time.monotonic() > deadline:
                break
            time.sleep(1)
        pods = live
        assert all(p["spec"].get("nodeName") for p in pods)
        per_node: dict[str, int] = {}
        for p in pods:
            per_node[p["spec"]["nodeName"]] = per_node.get(p["spec"]["nodeName"], 0) + 1
    return {"replicas": replicas, "nodes": nodes, "all_created_s": round(created, 2),
            "all_bound_s": round(bound, 2), "pods_per_s": round(replicas / bound, 1),
            "controlplane_cpu_s": round(cpu, 1), "load_avg_1m": os.getloadavg()[0],
            "pods_per_node_min_max": [min(per_node.values()), max(per_node.values())],
            "max_live_pods": most, "live_pods_at_end": len(pods)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=10000)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=900,
                        help="give up after this many seconds")
    args = parser.parse_args()
    if args.replicas < 1 or args.nodes < 1:
        parser.error("--replicas and --nodes must be >= 1")
    result = run(replicas=args.replicas, nodes=args.nodes, timeout=args.timeout)
    print(json.dumps(result), flush=True)
    name = f"{args.replicas}replicas/{args.nodes}nodes"
    print(json.dumps({"bench": "deployment_scale", "ours": {name: result["all_bound_s"]},
                      "peer": None, "ratio": None, "unit": "s",
                      "peer_source": "issue 5 names no peer figure for this shape"}))


if __name__ == "__main__":
    main()
