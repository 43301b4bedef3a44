"""Scheduler throughput end to end on a real etcd (Kubernetes' scheduler_perf shapes).

    etcd (started here) ◄── nodes and pods written in transactions (not timed)
    timed: SchedulerService.run() lists nodes and pods, schedules, binds in batches,
           until every pod is bound in etcd (each bind is a committed compare-and-swap)

Usage: bench/scheduler_throughput.py [--quick] [--shape NODES:PODS ...]
(profile: .venv/bin/py-spy record -o /tmp/s.svg -- .venv/bin/python
bench/scheduler_throughput.py --quick)
The last line is JSON: {"bench", "ours", "peer", "ratio", "unit"}; the peer is
kube-scheduler's CI floor the issue names for these shapes (680 and 810 pods/s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from api import kinds
from controlplane.apiserver.objects import ObjectService, encode, rfc3339
from controlplane.local import LocalClient
from controlplane.scheduler.service import SchedulerService
from controlplane.storage import EtcdStore, Write, object_key
from tests.support.etcd import EtcdServer

PEER = {(5000, 10000): 680.0, (5000, 50000): 810.0}


def _obj(kind: str, name: str, body: dict[str, object], namespace: str | None) -> bytes:
    meta: dict[str, object] = {"name": name, "uid": str(uuid.uuid4()),
                               "creationTimestamp": rfc3339(time.time()), "generation": 1}
    if namespace:
        meta["namespace"] = namespace
    obj = kinds.defaults({"apiVersion": "v1", "kind": kind, "metadata": meta, **body})
    return encode(obj)


async def _load(store: EtcdStore, nodes: int, pods: int) -> None:
    writes = [Write(object_key("namespaces", "default"),
                    _obj("Namespace", "default", {}, None))]
    alloc = {"cpu": "32", "memory": "128Gi", "pods": "110"}
    writes += [Write(object_key("nodes", f"node-{i}"), _obj("Node", f"node-{i}", {
        "status": {"capacity": alloc, "allocatable": alloc}}, None)) for i in range(nodes)]
    container = {"name": "c", "image": "registry.k8s.io/pause:3.9",
                 "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}}}
    writes += [Write(object_key("pods", f"pod-{i}", "default"), _obj(
        "Pod", f"pod-{i}", {"spec": {"containers": [container]}}, "default"))
        for i in range(pods)]
    for i in range(0, len(writes), 100):
        await store.commit(writes[i:i + 100])


async def run_shape(endpoint: str, nodes: int, pods: int) -> tuple[float, dict[str, int]]:
    store = EtcdStore([endpoint], timeout=30)
    try:
        await _load(store, nodes, pods)
        service = SchedulerService(LocalClient(ObjectService(store, watch_cache=False)), store)
        start = time.perf_counter()
        task = asyncio.create_task(service.run())
        while service.bound < pods:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        took = time.perf_counter() - start
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        listed = await store.list("/registry/pods/default/")
        assert sum(b'"nodeName"' in i.value for i in listed.items) == pods
        fast = {"fast_path_cycles": service.fast.hits,
                "full_path_cycles": service.fast.fallbacks}
        return pods / took, fast
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 nodes / 1000 pods")
    parser.add_argument("--shape", action="append", default=[], help="NODES:PODS")
    args = parser.parse_args()
    shapes = [tuple(int(x) for x in s.split(":")) for s in args.shape] or (
        [(500, 1000)] if args.quick else [(5000, 10000), (5000, 50000)])
    ours: dict[str, float] = {}
    peer: dict[str, float | None] = {}
    for nodes, pods in shapes:
        with EtcdServer() as etcd:  # a fresh etcd per shape
            rate, fast = asyncio.run(run_shape(etcd.endpoint, nodes, pods))
        name = f"{nodes}nodes/{pods}pods"
        ours[name] = round(rate, 1)
        peer[name] = PEER.get((nodes, pods))
        print(json.dumps({"shape": name, "pods_per_s": ours[name], **fast}), flush=True)
    ratio = {k: (round(v / p, 2) if (p := peer[k]) else None) for k, v in ours.items()}
    print(json.dumps({"bench": "scheduler_throughput", "ours": ours, "peer": peer,
                      "ratio": ratio, "unit": "pods/s",
                      "peer_source": "kube-scheduler CI floor named in issue 5"}))


if __name__ == "__main__":
    main()
