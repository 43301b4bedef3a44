"""Scheduler throughput end to end on a real etcd (Kubernetes' scheduler_perf shapes).

    etcd (started here) ◄── nodes and pods written in transactions (not timed)
    timed: SchedulerService.run() lists nodes and pods, schedules, binds in batches,
           until every pod is bound in etcd (each bind is a committed compare-and-swap)

Usage: bench/scheduler_throughput.py [--quick] [--shape NODES:PODS ...] [--profile OUT]
(--profile: py-spy samples the timed part only, collapsed stacks in OUT.NODES-PODS.txt.)
Each shape's line also gives the CPU seconds of the timed part (the scheduler's process,
etcd) and pods per scheduler CPU second: on a loaded machine the wall clock says little.
The last line is JSON: {"bench", "ours", "peer", "ratio", "unit"}; the peer is
kube-scheduler's CI floor the issue names for these shapes (680 and 810 pods/s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
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


def _profiler(out: str) -> subprocess.Popen[bytes]:
    """py-spy sampling this process (raw collapsed stacks into OUT) until interrupted."""
    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    proc = subprocess.Popen([spy, "record", "--pid", str(os.getpid()), "--rate", "250", "--nonblocking",
                             "--format", "raw", "--output", out],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached before the timed part starts
    return proc


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process PID so far (its /proc stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_shape(endpoint: str, nodes: int, pods: int, *, etcd_pid: int = 0,
                    profile: str = "") -> tuple[float, dict[str, float]]:
    """Pods bound per second, and what else the run counted (CPU seconds of the timed
    part: the scheduler's process, etcd's; on a loaded machine, pods per scheduler CPU
    second says more than the wall clock)."""
    store = EtcdStore([endpoint], timeout=30)
    spy = None
    try:
        await _load(store, nodes, pods)
        service = SchedulerService(LocalClient(ObjectService(store, watch_cache=False)), store)
        spy = _profiler(profile) if profile else None
        start, cpu = time.perf_counter(), time.process_time()
        etcd_cpu = _cpu_seconds(etcd_pid) if etcd_pid else 0.0
        task = asyncio.create_task(service.run())
        while service.bound < pods:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        took, cpu = time.perf_counter() - start, time.process_time() - cpu
        etcd_cpu = _cpu_seconds(etcd_pid) - etcd_cpu if etcd_pid else 0.0
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait()
            spy = None
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        listed = await store.list("/registry/pods/default/")
        assert sum(b'"nodeName"' in i.value for i in listed.items) == pods
        fast = {"fast_path_cycles": service.fast.hits,
                "full_path_cycles": service.fast.fallbacks,
                "watch_events_decoded": service.feed.decoded,
                "own_binds_recognised": service.feed.recognised,
                "bind_transactions": service.binder.transactions,
                "scheduler_cpu_s": round(cpu, 2), "etcd_cpu_s": round(etcd_cpu, 2),
                "pods_per_scheduler_cpu_s": round(pods / cpu, 1)}
        return pods / took, fast
    finally:
        if spy is not None:
            spy.kill()
            spy.wait()
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 nodes / 1000 pods")
    parser.add_argument("--shape", action="append", default=[], help="NODES:PODS")
    parser.add_argument("--profile", default="", metavar="OUT",
                        help="py-spy the timed part of each shape into OUT.NODES-PODS.txt")
    args = parser.parse_args()
    shapes = [tuple(int(x) for x in s.split(":")) for s in args.shape] or (
        [(500, 1000)] if args.quick else [(5000, 10000), (5000, 50000)])
    ours: dict[str, float] = {}
    peer: dict[str, float | None] = {}
    for nodes, pods in shapes:
        with EtcdServer() as etcd:  # a fresh etcd per shape
            out = f"{args.profile}.{nodes}-{pods}.txt" if args.profile else ""
            pid = etcd.proc.pid if etcd.proc is not None else 0
            rate, fast = asyncio.run(run_shape(etcd.endpoint, nodes, pods, etcd_pid=pid,
                                               profile=out))
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
