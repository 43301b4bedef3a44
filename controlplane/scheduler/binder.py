"""Batched binds: many pods per etcd transaction, each one a compare-and-swap.

    bind([Binding(pod, node), ...])
      └─ chunks of BATCH ─► Store.commit([Write(pod key, bound pod, pod's mod revision)],
                                        fence=leader fence)
           ok            ─► every pod of the chunk bound at one revision
           TxnFailed     ─► the pods it names fail alone (Conflict: changed or bound by
                            someone else; NotFound: deleted); the rest is committed again
           Fenced / other ─► the whole chunk fails (not the leader any more; etcd down)

The bound pod is what the pods/binding subresource writes (objects.ObjectService.bind):
spec.nodeName and a PodScheduled=True condition, encoded as the API server encodes
objects (JSON, resourceVersion left out); EXPECT (informer.PodFeed) is told those bytes
before the commit, so the pod watch can know the write again without decoding it. Because each write compares the pod's mod
revision, two schedulers can never bind one pod twice: the second one's compare fails.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from controlplane.apiserver.objects import encode, rfc3339
from controlplane.storage import Fence, StorageError, Store, TxnFailed, Write, keys

BATCH = 100  # pods per transaction (etcd allows 128 compares, the fence included)


@dataclass(frozen=True)
class Binding:
    pod: Mapping[str, Any]  # as read: metadata.resourceVersion is its mod revision
    node: str
    key: str = field(init=False)  # the pod's storage key

    def __post_init__(self) -> None:
        meta = self.pod["metadata"]
        object.__setattr__(self, "key", keys.object_key("pods", meta["name"],
                                                        meta.get("namespace") or "default"))


def bound_pod(pod: Mapping[str, Any], node: str, now: str) -> dict[str, Any]:
    """POD bound to NODE, as pods/binding would write it; POD itself is not changed."""
    out = dict(pod)
    out["spec"] = {**(pod.get("spec") or {}), "nodeName": node}
    status = dict(pod.get("status") or {})
    conditions = [c for c in status.get("conditions") or () if c.get("type") != "PodScheduled"]
    conditions.append({"type": "PodScheduled", "status": "True", "lastTransitionTime": now})
    status["conditions"] = conditions
    out["status"] = status
    return out


class Expect(Protocol):
    """Told what is about to be written (informer.PodFeed: to know its own binds again)."""

    def expect(self, key: str, value: bytes, obj: Mapping[str, Any]) -> None: ...

    def forget(self, key: str) -> None: ...


class Binder:
    """Writes bindings through STORE, fenced on FENCE when one is given; tells EXPECT
    what each write will store before committing it, and which writes failed."""

    def __init__(self, store: Store, *, fence: Fence | None = None, batch: int = BATCH,
                 clock: Callable[[], float] = time.time, expect: Expect | None = None) -> None:
        self.store = store
        self.fence = fence
        self.batch = batch
        self.clock = clock
        self.expect = expect
        self.transactions = 0  # commits attempted (for benchmarks and tests)

    async def bind(self, bindings: Sequence[Binding]) -> dict[str, StorageError | None]:
        """Bind every pod; returns pod key -> None (bound) or the error that stopped it."""
        results: dict[str, StorageError | None] = {}
        for i in range(0, len(bindings), self.batch):
            await self._commit(list(bindings[i:i + self.batch]), results)
        return results

    async def _commit(self, pending: list[Binding],
                      results: dict[str, StorageError | None]) -> None:
        now = rfc3339(self.clock())
        values: dict[str, bytes] = {}
        for b in pending:
            bound = bound_pod(b.pod, b.node, now)
            values[b.key] = value = encode(bound)
            if self.expect is not None:
                self.expect.expect(b.key, value, bound)
        try:
            await self._commit_values(pending, values, results)
        finally:
            if self.expect is not None:
                for b in pending:
                    if results.get(b.key, True) is not None:  # failed, or never answered
                        self.expect.forget(b.key)

    async def _commit_values(self, pending: list[Binding], values: Mapping[str, bytes],
                             results: dict[str, StorageError | None]) -> None:
        while pending:
            writes = [Write(b.key, values[b.key], _revision(b.pod)) for b in pending]
            self.transactions += 1
            try:
                await self.store.commit(writes, fence=self.fence)
            except TxnFailed as err:
                results.update(err.failures)
                pending = [b for b in pending if b.key not in err.failures]
                continue
            except StorageError as err:  # Fenced, Unavailable, ...: nothing was written
                results.update(dict.fromkeys((b.key for b in pending), err))
                return
            results.update(dict.fromkeys(b.key for b in pending))
            return


def _revision(pod: Mapping[str, Any]) -> int:
    rv = (pod.get("metadata") or {}).get("resourceVersion")
    if not rv:
        raise ValueError(f"pod {json.dumps(pod.get('metadata', {}).get('name'))}: "
                         "metadata.resourceVersion: needed to bind with a compare-and-swap")
    return int(rv)
