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
objects (JSON, resourceVersion left out). Because each write compares the pod's mod
revision, two schedulers can never bind one pod twice: the second one's compare fails.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controlplane.apiserver.objects import encode, rfc3339
from controlplane.storage import Fence, StorageError, Store, TxnFailed, Write, keys

BATCH = 100  # pods per transaction (etcd allows 128 compares, the fence included)


@dataclass(frozen=True)
class Binding:
    pod: Mapping[str, Any]  # as read: metadata.resourceVersion is its mod revision
    node: str

    @property
    def key(self) -> str:
        meta = self.pod["metadata"]
        return keys.object_key("pods", meta["name"], meta.get("namespace") or "default")


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


class Binder:
    """Writes bindings through STORE, fenced on FENCE when one is given."""

    def __init__(self, store: Store, *, fence: Fence | None = None, batch: int = BATCH,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.fence = fence
        self.batch = batch
        self.clock = clock
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
        values = {b.key: encode(bound_pod(b.pod, b.node, now)) for b in pending}
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
