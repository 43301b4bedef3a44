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

from collections.abc import AsyncIterator, Sequence

from controlplane.storage.errors import InvalidArgument, TxnFailed
from controlplane.storage.interface import Event, Fence, ListResult, Store, Write


class FencedStore:
    def __init__(self, inner: Store, fence: Fence) -> None:
        self.inner = inner
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

    async def get(self, key: str) -> tuple[bytes, int]:
        return await self.inner.get(key)

    async def list(self, prefix: str, *, limit: int = 0, continue_token: str | None = None,
                   revision: int | None = None) -> ListResult:
        return await self.inner.list(prefix, limit=limit, continue_token=continue_token,
                                     revision=revision)

    def watch(self, prefix: str, *, from_revision: int,
              bookmark_interval: float | None = None) -> AsyncIterator[Event]:
        return self.inner.watch(prefix, from_revision=from_revision,
                                bookmark_interval=bookmark_interval)

    async def grant_lease(self, ttl: int) -> int:
        return await self.inner.grant_lease(ttl)

    async def keep_alive(self, lease: int) -> int:
        return await self.inner.keep_alive(lease)

    async def revoke_lease(self, lease: int) -> None:
        await self.inner.revoke_lease(lease)

    async def compact(self, revision: int) -> None:
        await self.inner.compact(revision)

    async def current_revision(self) -> int:
        return await self.inner.current_revision()

    async def close(self) -> None:
        await self.inner.close()
