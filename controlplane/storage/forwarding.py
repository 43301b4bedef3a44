"""ForwardingStore: a Store that passes every call to an inner one, for wrappers that change
only some calls (FencedStore fences writes, EncryptingStore seals values, the leader's
TermStore holds writes between terms): they override what they change and inherit the rest.
CommitWrites: one whose single writes (create, update, delete) go through its own commit(),
as one-write transactions, so a wrapper that changes commit changes them all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from controlplane.storage.errors import TxnFailed
from controlplane.storage.interface import Event, Fence, ListResult, Store, Write


class ForwardingStore:
    def __init__(self, inner: Store) -> None:
        self.inner = inner

    async def create(self, key: str, value: bytes) -> int:
        return await self.inner.create(key, value)

    async def update(self, key: str, value: bytes, expected_revision: int) -> int:
        return await self.inner.update(key, value, expected_revision)

    async def delete(self, key: str, expected_revision: int | None = None) -> int:
        return await self.inner.delete(key, expected_revision)

    async def commit(self, writes: Sequence[Write], *, fence: Fence | None = None) -> int:
        return await self.inner.commit(writes, fence=fence)

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


class CommitWrites(ForwardingStore):
    async def _one(self, write: Write) -> int:
        try:
            return await self.commit([write])
        except TxnFailed as err:  # one write: its own error, as the unfenced verb raises
            raise err.failures[write.key] from None

    async def create(self, key: str, value: bytes) -> int:
        return await self._one(Write(key, value, 0))

    async def update(self, key: str, value: bytes, expected_revision: int) -> int:
        return await self._one(Write(key, value, expected_revision))

    async def delete(self, key: str, expected_revision: int | None = None) -> int:
        return await self._one(Write(key, None, expected_revision))
