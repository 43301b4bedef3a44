"""FencedStore: a Store whose every write is fenced on a leader key.

    FencedStore(store, Fence("/corral/leader/scheduler", create_revision))
        create / update / delete ──► commit([Write], fence)   (one etcd txn with the
        commit(writes)           ──► commit(writes, fence)     leader key's compare added)
        get / list / watch / leases ──► store, unchanged

Give the leader's scheduler and controllers this store (or an ObjectService over it): once
another process leads (the key is gone or re-created), each of their writes fails with
Fenced instead of landing late.
"""

from __future__ import annotations

from collections.abc import Sequence

from controlplane.storage.errors import InvalidArgument, TxnFailed
from controlplane.storage.forwarding import ForwardingStore
from controlplane.storage.interface import Fence, Store, Write


class FencedStore(ForwardingStore):
    def __init__(self, inner: Store, fence: Fence) -> None:
        super().__init__(inner)
        self.fence = fence

    async def _one(self, write: Write) -> int:
        try:
            return await self.inner.commit([write], fence=self.fence)
        except TxnFailed as err:  # one write: its own error, as the unfenced verb raises
            raise err.failures[write.key] from None

    async def create(self, key: str, value: bytes) -> int:
        return await self._one(Write(key, value, 0))

    async def update(self, key: str, value: bytes, expected_revision: int) -> int:
        return await self._one(Write(key, value, expected_revision))

    async def delete(self, key: str, expected_revision: int | None = None) -> int:
        return await self._one(Write(key, None, expected_revision))

    async def commit(self, writes: Sequence[Write], *, fence: Fence | None = None) -> int:
        if fence is not None and fence != self.fence:
            raise InvalidArgument(f"commit: fenced on {fence.key}@{fence.revision}, but this "
                                  f"store is fenced on {self.fence.key}@{self.fence.revision}")
        return await self.inner.commit(writes, fence=self.fence)
