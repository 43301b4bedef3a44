"""Watch fan-out: 1000 concurrent watchers on pods, the delay from a write's completion to
its delivery at every watcher; peer: the same watchers each on its own etcd watch.

    ours: writer ─create pod─► controlplane ─► etcd ─1 watch─► watch cache ─► 1000 streams
    peer: writer ─Put────────────────────────► etcd ─────────1000 watches──► 1000 streams

The watchers are coroutines in this one process (ours over CONNECTIONS connections, so a
controlplane with --workers spreads them over its processes; the peer on one grpc.aio
channel); the client's own decoding is then part of the delay, the same for both sides. Writes are paced (--interval) so each fan-out ends before the next.
Rounds alternate ours and the peer; the ratio is the median of the per-round p99 ratios.
Delays count from the write's completion (the headline, as before) and from its start:
under a fan-out the writer's own reply may arrive after the watchers' events, so the
first can go negative and flatters a server that answers the writer late.

    .venv/bin/python bench/watch_fanout.py [--watchers N] [--writes N] [--rounds N] [--quick]
                                           [--workers N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from typing import Any

from _support import CONNECTIONS, Cluster, percentile
from grpc import aio  # type: ignore[import-untyped]
from pyetcd import etcdrpc as rpc  # type: ignore[import-untyped]

from api.client import AsyncClient


def pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}


async def ours_watcher(client: AsyncClient, tag: str, n: int, seen: list[float],
                       ready: asyncio.Event) -> None:
    async for ev in client.watch("pods", namespace="default"):
        name = ev["object"]["metadata"]["name"]
        if not name.startswith(tag):
            continue
        if name.endswith("-warm"):
            ready.set()
            continue
        seen[int(name.rsplit("-", 1)[1])] = time.perf_counter()
        if int(name.rsplit("-", 1)[1]) == n - 1:
            return


async def peer_watcher(watch: Any, tag: str, n: int, seen: list[float],
                       ready: asyncio.Event) -> None:
    call = watch.Watch()
    prefix = b"/bench/pods/default/"
    await call.write(rpc.WatchRequest(create_request=rpc.WatchCreateRequest(
        key=prefix, range_end=prefix[:-1] + b"0")))
    try:
        while True:
            resp = await call.read()
            for ev in resp.events:
                name = json.loads(ev.kv.value)["metadata"]["name"]
                if not name.startswith(tag):
                    continue
                if name.endswith("-warm"):
                    ready.set()
                    continue
                i = int(name.rsplit("-", 1)[1])
                seen[i] = time.perf_counter()
                if i == n - 1:
                    return
    finally:
        call.cancel()


async def one_round(*, ours: bool, client: AsyncClient, kv: Any, watch: Any, tag: str,
                    watchers: int, writes: int, interval: float,
                    ) -> tuple[list[float], list[float]]:
    """Delays (ms) at every watcher of every write: from the write's completion, and
    from its start (a server that answers the writer late cannot look faster)."""
    seen = [[0.0] * writes for _ in range(watchers)]
    ready = [asyncio.Event() for _ in range(watchers)]
    tasks = [asyncio.create_task(
        ours_watcher(client, tag, writes, seen[i], ready[i]) if ours else
        peer_watcher(watch, tag, writes, seen[i], ready[i])) for i in range(watchers)]

    async def write(name: str) -> None:
        if ours:
            await client.create("pods", pod(name), namespace="default")
        else:
            await kv.Put(rpc.PutRequest(key=f"/bench/pods/default/{name}".encode(),
                                        value=json.dumps(pod(name)).encode()))

    # every watcher is established once it has seen a warm-up write
    for k in range(200):
        await write(f"{tag}-{k}-warm")
        await asyncio.sleep(0.2)
        if all(r.is_set() for r in ready):
            break
    started = [0.0] * writes
    done = [0.0] * writes
    for i in range(writes):
        started[i] = time.perf_counter()
        await write(f"{tag}-{i}")
        done[i] = time.perf_counter()
        await asyncio.sleep(interval)
    await asyncio.wait_for(asyncio.gather(*tasks), 120)
    return ([(s[i] - done[i]) * 1000 for s in seen for i in range(writes)],
            [(s[i] - started[i]) * 1000 for s in seen for i in range(writes)])


async def bench(cluster: Cluster, *, watchers: int, writes: int, rounds: int,
                interval: float) -> dict[str, Any]:
    client = AsyncClient(cluster.config, connections=CONNECTIONS)
    channel = aio.insecure_channel(cluster.etcd_target)
    kv, watch = rpc.KVStub(channel), rpc.WatchStub(channel)
    ours: list[float] = []
    peer: list[float] = []
    ours_start: list[float] = []
    peer_start: list[float] = []
    ratios: list[float] = []
    try:
        for r in range(rounds):
            a, a0 = await one_round(ours=True, client=client, kv=kv, watch=watch,
                                    tag=f"o{r}", watchers=watchers, writes=writes,
                                    interval=interval)
            b, b0 = await one_round(ours=False, client=client, kv=kv, watch=watch,
                                    tag=f"p{r}", watchers=watchers, writes=writes,
                                    interval=interval)
            ours += a
            peer += b
            ours_start += a0
            peer_start += b0
            ratios.append(percentile(a, 99) / percentile(b, 99))
            print(f"round {r}: ours p50 {percentile(a, 50):.1f} p99 {percentile(a, 99):.1f}"
                  f" ms (from the write's start {percentile(a0, 99):.1f}) | etcd p50 "
                  f"{percentile(b, 50):.1f} p99 {percentile(b, 99):.1f} ms (from start "
                  f"{percentile(b0, 99):.1f})", file=sys.stderr, flush=True)
    finally:
        await client.close()
        await channel.close()
    return {"bench": "watch_fanout", "ours": round(percentile(ours, 99), 2),
            "peer": round(percentile(peer, 99), 2), "ratio": round(statistics.median(ratios),
                                                                   3),
            "unit": "ms (p99 write completion to delivery)", "watchers": watchers,
            "writes": writes, "rounds": rounds, "interval_s": interval,
            "ours_p50_ms": round(percentile(ours, 50), 2),
            "peer_p50_ms": round(percentile(peer, 50), 2),
            "ours_from_start_p50_ms": round(percentile(ours_start, 50), 2),
            "ours_from_start_p99_ms": round(percentile(ours_start, 99), 2),
            "peer_from_start_p50_ms": round(percentile(peer_start, 50), 2),
            "peer_from_start_p99_ms": round(percentile(peer_start, 99), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--watchers", type=int, default=1000)
    ap.add_argument("--writes", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--interval", type=float, default=0.3)
    ap.add_argument("--quick", action="store_true", help="1 round of 10 writes")
    ap.add_argument("--workers", type=int, default=0,
                    help="corral-controlplane --workers (default: its own, one per CPU)")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.writes = 1, 10
    with Cluster(workers=args.workers) as cluster:
        line = asyncio.run(bench(cluster, watchers=args.watchers, writes=args.writes,
                                 rounds=args.rounds, interval=args.interval))
    print(json.dumps(line))


if __name__ == "__main__":
    main()
