"""InMemoryStore: etcd's semantics in a dict, for unit tests of the layers above storage.

It keeps every version of every key, so it answers the questions etcd answers: a list at
an old revision, a watch that replays history, Gone after compaction. All of it runs in
the event loop's thread without awaiting, so each operation is atomic like an etcd txn.
Leases expire on the event loop's timer (``loop.call_later``), deleting their keys.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from controlplane.storage import keys, pagination
from controlplane.storage.errors import (
    AlreadyExists,
    Conflict,
    Fenced,
    Gone,
    InvalidArgument,
    NotFound,
    StorageError,
    TxnFailed,
)
from controlplane.storage.interface import Event, EventType, Fence, Item, ListResult, Write


@dataclass(frozen=True, slots=True)
class _Version:
    mod_revision: int
    create_revision: int
    value: bytes | None  # None: deleted at mod_revision (a tombstone)


@dataclass
class _Lease:
    ttl: int
    timer: asyncio.TimerHandle
    keys: set[str] = field(default_factory=set)


class InMemoryStore:
    """A Store with no I/O. Not thread-safe: use it from one event loop."""

    def __init__(self) -> None:
        self._revision = 1  # an empty etcd reports revision 1
        self._compacted = 0
        self._versions: dict[str, list[_Version]] = {}
        self._log: list[Event] = []  # every change after the compaction point
        self._watchers: set[tuple[str, asyncio.Queue[Event]]] = set()
        self._leases: dict[int, _Lease] = {}
        self._key_lease: dict[str, int] = {}
        self._lease_ids = itertools.count(0x1000)

    # -- reads ------------------------------------------------------------------------

    def _at(self, key: str, revision: int) -> _Version | None:
        for version in reversed(self._versions.get(key, ())):
            if version.mod_revision <= revision:
                return version if version.value is not None else None
        return None

    def _check_revision(self, revision: int) -> None:
        if revision < self._compacted:
            raise Gone(revision, self._compacted)
        if revision > self._revision:
            raise InvalidArgument(
                f"revision {revision} is newer than the current revision {self._revision}")

    async def get(self, key: str) -> tuple[bytes, int]:
        version = self._at(key, self._revision)
        if version is None or version.value is None:
            raise NotFound(key)
        return version.value, version.mod_revision

    async def list(self, prefix: str, *, limit: int = 0, continue_token: str | None = None,
                   revision: int | None = None) -> ListResult:
        start, revision = pagination.start_of(prefix, continue_token=continue_token,
                                              revision=revision)
        read_at = revision or self._revision
        self._check_revision(read_at)
        items: list[Item] = []
        for key in sorted(k for k in self._versions if k.startswith(prefix) and k >= start):
            version = self._at(key, read_at)
            if version is None or version.value is None:
                continue
            if limit and len(items) == limit:
                token = pagination.encode(prefix=prefix, last_key=items[-1].key,
                                          revision=read_at)
                return ListResult(items, read_at, token)
            items.append(Item(key, version.value, version.mod_revision))
        return ListResult(items, read_at, None)

    async def current_revision(self) -> int:
        return self._revision

    # -- writes -----------------------------------------------------------------------

    def _commit(self, key: str, value: bytes | None, lease: int = 0) -> int:
        return self._commit_many([(key, value, lease)])

    def _commit_many(self, changes: Sequence[tuple[str, bytes | None, int]]) -> int:
        """Every change at one new revision, as one etcd transaction."""
        self._revision += 1
        rev = self._revision
        for key, value, lease in changes:
            previous = self._at(key, rev - 1)
            created = previous.create_revision if previous is not None else rev
            self._versions.setdefault(key, []).append(_Version(rev, created, value))
            self._attach(key, lease if value is not None else 0)
            prev_value = previous.value if previous is not None else None
            if value is None:
                assert prev_value is not None
                event = Event(EventType.DELETED, key, prev_value, rev, prev_value)
            elif previous is None:
                event = Event(EventType.ADDED, key, value, rev)
            else:
                event = Event(EventType.MODIFIED, key, value, rev, prev_value)
            self._log.append(event)
            for prefix, queue in self._watchers:
                if key.startswith(prefix):
                    queue.put_nowait(event)
        return rev

    def _attach(self, key: str, lease: int) -> None:
        """A put attaches the key to LEASE (0: to none), as etcd does; a delete detaches."""
        old = self._key_lease.pop(key, 0)
        if old and old in self._leases:
            self._leases[old].keys.discard(key)
        if lease:
            self._leases[lease].keys.add(key)
            self._key_lease[key] = lease

    def _current_or_conflict(self, key: str, expected_revision: int) -> None:
        version = self._at(key, self._revision)
        if version is None:
            raise NotFound(key)
        if version.mod_revision != expected_revision:
            raise Conflict(key, expected_revision=expected_revision,
                           current_revision=version.mod_revision)

    async def create(self, key: str, value: bytes) -> int:
        keys.check_size(key, value)
        if self._at(key, self._revision) is not None:
            raise AlreadyExists(key)
        return self._commit(key, value)

    async def update(self, key: str, value: bytes, expected_revision: int) -> int:
        keys.check_size(key, value)
        self._current_or_conflict(key, expected_revision)
        return self._commit(key, value)

    async def delete(self, key: str, expected_revision: int | None = None) -> int:
        if expected_revision is None:
            if self._at(key, self._revision) is None:
                raise NotFound(key)
        else:
            self._current_or_conflict(key, expected_revision)
        return self._commit(key, None)

    def _failure(self, w: Write) -> StorageError | None:
        version = self._at(w.key, self._revision)
        if w.expected_revision == 0:
            return AlreadyExists(w.key) if version is not None else None
        if version is None:
            return NotFound(w.key)
        if w.expected_revision is not None and version.mod_revision != w.expected_revision:
            return Conflict(w.key, expected_revision=w.expected_revision,
                            current_revision=version.mod_revision)
        return None

    async def commit(self, writes: Sequence[Write], *, fence: Fence | None = None) -> int:
        keys.check_writes(writes, fenced=fence is not None)
        for w in writes:
            if w.lease and w.lease not in self._leases:
                raise NotFound(f"lease {w.lease:x}")
        if fence is not None:
            leader = self._at(fence.key, self._revision)
            current = leader.create_revision if leader is not None else 0
            if current != fence.revision:
                raise Fenced(fence.key, expected_revision=fence.revision,
                             current_revision=current)
        failures = {w.key: err for w in writes if (err := self._failure(w)) is not None}
        if failures:
            raise TxnFailed(failures)
        return self._commit_many([(w.key, w.value, w.lease) for w in writes])

    # -- leases -----------------------------------------------------------------------

    async def grant_lease(self, ttl: int) -> int:
        if ttl < 1:
            raise InvalidArgument(f"lease ttl {ttl}: must be >= 1 second")
        lease = next(self._lease_ids)
        timer = asyncio.get_running_loop().call_later(ttl, self._expire, lease)
        self._leases[lease] = _Lease(ttl, timer)
        return lease

    async def keep_alive(self, lease: int) -> int:
        current = self._leases.get(lease)
        if current is None:
            raise NotFound(f"lease {lease:x}")
        current.timer.cancel()
        current.timer = asyncio.get_running_loop().call_later(current.ttl, self._expire, lease)
        return current.ttl

    async def revoke_lease(self, lease: int) -> None:
        self._expire(lease)

    def _expire(self, lease: int) -> None:
        current = self._leases.pop(lease, None)
        if current is None:
            return
        current.timer.cancel()
        live = sorted(k for k in current.keys if self._at(k, self._revision) is not None)
        for key in current.keys:
            self._key_lease.pop(key, None)
        if live:
            self._commit_many([(k, None, 0) for k in live])

    async def compact(self, revision: int) -> None:
        if revision <= self._compacted:
            return
        self._check_revision(revision)
        self._compacted = revision
        for key in list(self._versions):
            versions = self._versions[key]
            keep = next((i for i in range(len(versions) - 1, -1, -1)
                         if versions[i].mod_revision <= revision), 0)
            kept = versions[keep:]
            if kept and kept[0].mod_revision <= revision and kept[0].value is None:
                kept = kept[1:]
            if kept:
                self._versions[key] = kept
            else:
                del self._versions[key]
        self._log = [e for e in self._log if e.revision >= revision]

    # -- watch ------------------------------------------------------------------------

    async def watch(self, prefix: str, *, from_revision: int,
                    bookmark_interval: float | None = None) -> AsyncIterator[Event]:
        keys.check_prefix(prefix)
        after = from_revision or self._revision
        # Same rule as etcd: the first revision replayed (after + 1) must not be compacted.
        if after + 1 < self._compacted:
            raise Gone(from_revision, self._compacted)
        queue: asyncio.Queue[Event] = asyncio.Queue()
        # Snapshot the history and subscribe without awaiting in between: nothing is lost
        # or delivered twice.
        history = [e for e in self._log if e.revision > after and e.key.startswith(prefix)]
        watcher = (prefix, queue)
        self._watchers.add(watcher)
        try:
            for event in history:
                yield event
                after = event.revision
            while True:
                try:  # asyncio.timeout, not wait_for: a cancel must end this at once
                    async with asyncio.timeout(bookmark_interval):
                        event = await queue.get()
                except TimeoutError:
                    yield Event(EventType.BOOKMARK, "", b"", self._revision)
                    continue
                if event.revision > after:
                    yield event
        finally:
            self._watchers.discard(watcher)

    async def close(self) -> None:
        self._watchers.clear()
        for lease in self._leases.values():
            lease.timer.cancel()
        self._leases.clear()
