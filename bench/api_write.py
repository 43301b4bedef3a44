"""API server writes vs raw etcd puts: create then update ~1 KiB ConfigMaps at 1, 10 and
100 concurrent clients.

    ours: AsyncClient (TLS, admin.conf) ─► corral-controlplane ─► etcd   (create, update)
    peer: grpc.aio + pyetcd's KV stub ──────────────────────────► etcd   (Put, Put)

Both sides are coroutines in this one process (ours over CONNECTIONS TLS connections, so
the kernel spreads them over the controlplane's --workers processes; the peer over one
grpc.aio channel), measured alike in the same run. The client's own CPU per call is
printed for each side: ours costs about twice the peer's (TLS, JSON both ways, a reply
that carries the whole object), and on a 2-core machine that CPU is the server's too.
Coroutines rather than threads: 100 threads around the blocking Client would fight over
the GIL, and the client, not the server, would set the latency (every switch waits up to
5 ms).

Each round runs both sides at each concurrency, ours first in even rounds and the peer
first in odd ones; the ratio per level is the median over rounds of ours/peer throughput
(>= 0.5 is the target), and the p50/p99 are of every mutating call of every round (p99 <=
50 ms at 100 clients is the target). CPU milliseconds per call, the figures a loaded
machine disturbs least, for every process on the path: ours_cpu_ms_per_op is the
controlplane's (all its processes), *_etcd_cpu_ms_per_op etcd's and *_client_cpu_ms_per_op
this process's, on each side; ours_writes_per_txn (from etcd's /metrics) shows how well
the server's group commit batches. One JSON line per level; the last (100 clients) is the
headline.

    .venv/bin/python bench/api_write.py [--rounds N] [--ops N] [--quick] [--profile FILE]
                                        [--workers N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from _support import CONNECTIONS, ROOT, Cluster, cpu_seconds, etcd_txns, percentile
from grpc import aio  # type: ignore[import-untyped]
from pyetcd import etcdrpc as rpc  # type: ignore[import-untyped]

from api.client import AsyncClient

LEVELS = (1, 10, 100)
VALUE = "x" * 900  # with the envelope, the stored ConfigMap is ~1 KiB


def configmap(name: str, value: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default", "labels": {"bench": "w"}},
            "data": {"payload": value}}


def body(name: str, value: str) -> bytes:
    return json.dumps(configmap(name, value), separators=(",", ":")).encode()


class Result:
    def __init__(self) -> None:
        self.create: list[float] = []  # ms per call
        self.update: list[float] = []
        self.seconds = 0.0
        self.cpu = 0.0  # the controlplane's CPU seconds (every process) during the level
        self.etcd_cpu = 0.0  # etcd's
        self.client_cpu = 0.0  # this process's (the benchmark client, every thread)
        self.txns = 0.0  # etcd Txn calls during the level

    @property
    def ops(self) -> int:
        return len(self.create) + len(self.update)

    @property
    def throughput(self) -> float:
        return self.ops / self.seconds


async def timed(out: list[float], call: Awaitable[Any]) -> Any:
    t0 = time.perf_counter()
    reply = await call
    out.append((time.perf_counter() - t0) * 1000)
    return reply


async def run_level(clients: int, per_client: int,
                    worker: Callable[[int, int, Result], Awaitable[None]],
                    cluster: Cluster | None = None) -> Result:
    """CLIENTS coroutines doing PER_CLIENT creates then updates each; with CLUSTER, the
    CPU seconds the controlplane, etcd and this client spent meanwhile."""
    result = Result()
    pids = (cluster.cp_pid, cluster.etcd_pid) if cluster is not None else ()
    cpu0 = [cpu_seconds(p) for p in pids]
    txn0 = etcd_txns(cluster.etcd.endpoint) if cluster is not None else 0.0
    own0 = time.process_time()
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w, per_client, result) for w in range(clients)))
    result.seconds = time.perf_counter() - t0
    result.client_cpu = time.process_time() - own0
    if cluster is not None:
        result.txns = etcd_txns(cluster.etcd.endpoint) - txn0
    if pids:
        result.cpu, result.etcd_cpu = (cpu_seconds(p) - c for p, c in zip(pids, cpu0,
                                                                          strict=True))
    return result


def per_op(results: list[Result], what: str) -> float:
    """Median over rounds of WHAT's CPU milliseconds per call."""
    return round(statistics.median(1000 * getattr(r, what) / r.ops for r in results), 3)


def ours_worker(client: AsyncClient, tag: str) -> Callable[[int, int, Result], Awaitable[None]]:
    async def work(w: int, n: int, r: Result) -> None:
        made = []
        for i in range(n):
            made.append(await timed(r.create, client.create(
                "configmaps", configmap(f"{tag}-{w}-{i}", VALUE), namespace="default")))
        for obj in made:  # a compare-and-swap at the resourceVersion create returned
            obj["data"]["payload"] = VALUE.replace("x", "y")
            await timed(r.update, client.update("configmaps", obj, namespace="default"))
    return work


def peer_worker(kv: Any, tag: str) -> Callable[[int, int, Result], Awaitable[None]]:
    async def work(w: int, n: int, r: Result) -> None:
        keys = [f"/bench/configmaps/default/{tag}-{w}-{i}".encode() for i in range(n)]
        for i, k in enumerate(keys):
            await timed(r.create, kv.Put(rpc.PutRequest(key=k, value=body(
                f"{tag}-{w}-{i}", VALUE)), timeout=30))
        for i, k in enumerate(keys):
            await timed(r.update, kv.Put(rpc.PutRequest(key=k, value=body(
                f"{tag}-{w}-{i}", VALUE.replace("x", "y"))), timeout=30))
    return work


def summary(results: list[Result]) -> dict[str, float]:
    create = [x for r in results for x in r.create]
    update = [x for r in results for x in r.update]
    both = create + update
    return {"ops_per_s": statistics.median(r.throughput for r in results),
            "p50_ms": percentile(both, 50), "p99_ms": percentile(both, 99),
            "create_p99_ms": percentile(create, 99), "update_p99_ms": percentile(update, 99)}


async def bench(cluster: Cluster, *, rounds: int, ops: int, levels: tuple[int, ...],
                profile: str) -> list[dict[str, Any]]:
    client = AsyncClient(cluster.config, connections=CONNECTIONS)
    channel = aio.insecure_channel(cluster.etcd_target)
    kv = rpc.KVStub(channel)
    ours: dict[int, list[Result]] = {c: [] for c in levels}
    peer: dict[int, list[Result]] = {c: [] for c in levels}
    ratios: dict[int, list[float]] = {c: [] for c in levels}
    spy: subprocess.Popen[bytes] | None = None
    try:
        # warm-up: TLS handshake, the namespace cache, the pyc files of every code path
        await run_level(10, 5, ours_worker(client, "warm"))
        await run_level(10, 5, peer_worker(kv, "warm"))
        for rnd in range(rounds):
            for c in levels:
                n = max(ops // c, 2)  # every level does about the same number of calls
                if profile and rnd == rounds - 1 and c == max(levels):
                    spy = subprocess.Popen([f"{ROOT}/.venv/bin/py-spy", "record", "-o",
                                            profile, "-f", "raw", "--subprocesses", "-p",
                                            str(cluster.cp_pid), "-r", "200"],
                                           stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL)
                    await asyncio.sleep(1)
                if rnd % 2:  # alternate which side goes first: neither always runs warm
                    b = await run_level(c, n, peer_worker(kv, f"r{rnd}c{c}"), cluster)
                a = await run_level(c, n, ours_worker(client, f"r{rnd}c{c}"), cluster)
                if spy is not None:
                    spy.send_signal(2)  # SIGINT: py-spy writes the profile and exits
                    spy.wait(60)
                    spy = None
                if not rnd % 2:
                    b = await run_level(c, n, peer_worker(kv, f"r{rnd}c{c}"), cluster)
                ours[c].append(a)
                peer[c].append(b)
                ratios[c].append(a.throughput / b.throughput)
                print(f"round {rnd} clients {c:3}: ours {a.throughput:6.0f} ops/s "
                      f"p99 {percentile(a.create + a.update, 99):6.1f} ms cpu ms/op server "
                      f"{1000 * a.cpu / a.ops:4.2f} etcd {1000 * a.etcd_cpu / a.ops:4.2f} "
                      f"client {1000 * a.client_cpu / a.ops:4.2f} writes/Txn "
                      f"{a.ops / max(a.txns, 1):4.1f} | etcd {b.throughput:6.0f}"
                      f" ops/s p99 {percentile(b.create + b.update, 99):6.1f} ms cpu ms/op "
                      f"etcd {1000 * b.etcd_cpu / b.ops:4.2f} client "
                      f"{1000 * b.client_cpu / b.ops:4.2f}", file=sys.stderr, flush=True)
    finally:
        if spy is not None:
            spy.kill()
            spy.wait()
        await client.close()
        await channel.close()
    lines = []
    for c in levels:
        o, p = summary(ours[c]), summary(peer[c])
        lines.append({
            "bench": "api_write", "clients": c, "ours": round(o["ops_per_s"], 1),
            "peer": round(p["ops_per_s"], 1), "ratio": round(statistics.median(ratios[c]), 3),
            "unit": "ops/s", "rounds": rounds,
            "ours_p50_ms": round(o["p50_ms"], 2), "ours_p99_ms": round(o["p99_ms"], 2),
            "ours_cpu_ms_per_op": per_op(ours[c], "cpu"),
            "ours_etcd_cpu_ms_per_op": per_op(ours[c], "etcd_cpu"),
            "ours_client_cpu_ms_per_op": per_op(ours[c], "client_cpu"),
            "peer_etcd_cpu_ms_per_op": per_op(peer[c], "etcd_cpu"),
            "peer_client_cpu_ms_per_op": per_op(peer[c], "client_cpu"),
            "ours_writes_per_txn": round(statistics.median(
                r.ops / r.txns for r in ours[c] if r.txns), 1),
            "ours_create_p99_ms": round(o["create_p99_ms"], 2),
            "ours_update_p99_ms": round(o["update_p99_ms"], 2),
            "peer_p50_ms": round(p["p50_ms"], 2), "peer_p99_ms": round(p["p99_ms"], 2),
            "target_p99_ms": 50, "target_ratio": 0.5})
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--ops", type=int, default=1000,
                    help="creates per round and level (as many updates follow)")
    ap.add_argument("--quick", action="store_true", help="1 round of 200 creates per level")
    ap.add_argument("--profile", default="",
                    help="py-spy the controlplane during the last 100-client round; "
                         "write collapsed stacks (speedscope and flamegraph.pl read them) to this file")
    ap.add_argument("--workers", type=int, default=0,
                    help="corral-controlplane --workers (default: its own, one per CPU)")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.ops = 1, 200
    with Cluster(workers=args.workers) as cluster:
        lines = asyncio.run(bench(cluster, rounds=args.rounds, ops=args.ops, levels=LEVELS,
                                  profile=args.profile))
    for line in lines:
        print(json.dumps(line))


if __name__ == "__main__":
    main()
