"""InMemoryStore: etcd's semantics in a dict, for unit tests of the layers above storage.

It keeps every version of every key, so it answers the questions etcd answers: a list at
an old revision, a watch that replays history, Gone after compaction. All of it runs in
the event loop's thread without awaiting, so each operation is atomic like an etcd txn.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from controlplane.storage import keys, pagination
from controlplane.storage.errors import (
    AlreadyExists,
    Conflict,
    Gone,
    InvalidArgument,
    NotFound,
)
from controlplane.storage.interface import Event, EventType, Item, ListResult


@dataclass(frozen=True, slots=True)
class _Version:
    mod_revision: int
    create_revision: int
    value: bytes | None  # None: deleted at mod_revision (a tombstone)


class InMemoryStore:
    """A Store with no I/O. Not thread-safe: use it from one event loop."""

    def __init__(self) -> None:
        self._revision = 1  # an empty etcd reports revision 1
        self._compacted = 0
        self._versions: dict[str, list[_Version]] = {}
        self._log: list[Event] = []  # every change after the compaction point
        self._watchers: set[tuple[str, asyncio.Queue[Event]]] = set()

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

    def _commit(self, key: str, value: bytes | None) -> int:
        previous = self._at(key, self._revision)
        self._revision += 1
        rev = self._revision
        created = previous.create_revision if previous is not None else rev
        self._versions.setdefault(key, []).append(_Version(rev, created, value))
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
