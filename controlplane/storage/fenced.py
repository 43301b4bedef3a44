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

from controlplane.storage.errors import InvalidArgument
from controlplane.storage.forwarding import CommitWrites
from controlplane.storage.interface import Fence, Store, Write


class FencedStore(CommitWrites):
    def __init__(self, inner: Store, fence: Fence) -> None:
        super().__init__(inner)
        self.fence = fence

    async def commit(self, writes: Sequence[Write], *, fence: Fence | None = None) -> int:
        if fence is not None and fence != self.fence:
            raise InvalidArgument(f"commit: fenced on {fence.key}@{fence.revision}, but this "
                                  f"store is fenced on {self.fence.key}@{self.fence.revision}")
        return await self.inner.commit(writes, fence=self.fence)
