"""The API server's Prometheus metrics, named as kube-apiserver names them.

    apiserver_request_total{verb,resource,code}
    apiserver_request_duration_seconds{verb,resource}          (histogram)
    etcd_request_duration_seconds{operation,type}              (histogram, MeasuredStore)
    apiserver_registered_watchers{resource}

With --workers, every process writes its samples under PROMETHEUS_MULTIPROC_DIR (set
before prometheus_client is imported) and exposed() adds them up for /metrics.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from controlplane.storage.interface import Event, Fence, ListResult, Store, Write

REGISTRY = CollectorRegistry(auto_describe=True)

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

REQUESTS = Counter("apiserver_request_total", "API requests by verb, resource and code.",
                   ["verb", "resource", "code"], registry=REGISTRY)
LATENCY = Histogram("apiserver_request_duration_seconds", "API request latency.",
                    ["verb", "resource"], buckets=_BUCKETS, registry=REGISTRY)
ETCD = Histogram("etcd_request_duration_seconds", "Storage call latency.",
                 ["operation", "type"], buckets=_BUCKETS, registry=REGISTRY)
LEADER = Gauge("corral_leader", "1 while this process leads (runs the scheduler and "
               "controllers).", registry=REGISTRY, multiprocess_mode="max")
WATCHERS = Gauge("apiserver_registered_watchers", "Open watches by resource.",
                 ["resource"], registry=REGISTRY, multiprocess_mode="livesum")


def exposed() -> CollectorRegistry:
    """What /metrics shows: this process's registry, or, with --workers (prometheus
    multiprocess mode, PROMETHEUS_MULTIPROC_DIR set), the sum over every process."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return REGISTRY
    from prometheus_client import multiprocess
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return registry


# labels() takes a lock and builds a key on every call; the label sets are few (verbs x
# resources x codes), so each child is looked up once and kept
_children: dict[tuple[Any, ...], Any] = {}


def _child(metric: Any, *values: str) -> Any:
    key = (id(metric), *values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*values)
    return child


def observe_request(*, verb: str, resource: str, code: str, seconds: float) -> None:
    _child(REQUESTS, verb, resource, code).inc()
    if verb != "watch":  # a watch lasts as long as the client wants: not a latency
        _child(LATENCY, verb, resource).observe(seconds)


def _type(key: str) -> str:
    parts = key.split("/")
    return parts[2] if len(parts) > 2 else key


class MeasuredStore:
    """A Store that times every call into etcd_request_duration_seconds."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner

    async def _timed(self, op: str, key: str, coro: Any) -> Any:
        start = time.perf_counter()
        try:
            return await coro
        finally:
            _child(ETCD, op, _type(key)).observe(time.perf_counter() - start)

    async def create(self, key: str, value: bytes) -> int:
        return int(await self._timed("create", key, self.inner.create(key, value)))

    async def get(self, key: str) -> tuple[bytes, int]:
        out: tuple[bytes, int] = await self._timed("get", key, self.inner.get(key))
        return out

    async def update(self, key: str, value: bytes, expected_revision: int) -> int:
        return int(await self._timed("update", key,
                                     self.inner.update(key, value, expected_revision)))

    async def delete(self, key: str, expected_revision: int | None = None) -> int:
        return int(await self._timed("delete", key,
                                     self.inner.delete(key, expected_revision)))

    async def list(self, prefix: str, *, limit: int = 0, continue_token: str | None = None,
                   revision: int | None = None) -> ListResult:
        out: ListResult = await self._timed("list", prefix, self.inner.list(
            prefix, limit=limit, continue_token=continue_token, revision=revision))
        return out

    def watch(self, prefix: str, *, from_revision: int,
              bookmark_interval: float | None = None) -> AsyncIterator[Event]:
        return self.inner.watch(prefix, from_revision=from_revision,
                                bookmark_interval=bookmark_interval)

    async def commit(self, writes: Sequence[Write], *, fence: Fence | None = None) -> int:
        key = writes[0].key if writes else ""
        return int(await self._timed("txn", key, self.inner.commit(writes, fence=fence)))

    async def grant_lease(self, ttl: int) -> int:
        return int(await self._timed("grant_lease", "", self.inner.grant_lease(ttl)))

    async def keep_alive(self, lease: int) -> int:
        return int(await self._timed("keep_alive", "", self.inner.keep_alive(lease)))

    async def revoke_lease(self, lease: int) -> None:
        await self._timed("revoke_lease", "", self.inner.revoke_lease(lease))

    async def compact(self, revision: int) -> None:
        await self.inner.compact(revision)

    async def current_revision(self) -> int:
        return int(await self._timed("current_revision", "", self.inner.current_revision()))

    async def close(self) -> None:
        await self.inner.close()
