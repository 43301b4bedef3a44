"""The Store protocol and the values it hands back.

A Store maps string keys to opaque bytes and stamps every write with etcd's global
revision. Callers (the API server) put that revision into ``metadata.resourceVersion``
after reading, and pass it back as ``expected_revision`` to update: that is what makes
every update a compare-and-swap.

Beyond single-key verbs, ``commit`` writes many keys in one transaction (the scheduler's
batched binds), optionally *fenced*: it lands only while a leader key still has the create
revision its leader saw, so a deposed leader's late writes fail (``Fenced``). Leases
(``grant_lease``/``keep_alive``/``revoke_lease``, and ``Write.lease``) carry leader election.

Every implementation must pass ``tests/integration/controlplane/storage/test_conformance.py``.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol


@dataclass(frozen=True, slots=True)
class Item:
    """One key as it was at a revision."""

    key: str
    value: bytes
    mod_revision: int


class ListResult(NamedTuple):
    """A page of a list: unpack it as ``items, revision, continue_token``."""

    items: list[Item]
    revision: int  # the snapshot every page of this list is read at
    continue_token: str | None  # None on the last page


class EventType(enum.Enum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"
    # No object changed: everything up to ``revision`` has been delivered, so a watcher
    # that restarts may resume from here instead of from its last real event.
    BOOKMARK = "BOOKMARK"


@dataclass(frozen=True, slots=True)
class Event:
    """A change seen by a watch.

    ``value`` is the object after the change; for DELETED it is the object as it was last
    stored (what Kubernetes sends), so a consumer always decodes ``value``. ``prev_value``
    is the state before the change (MODIFIED, DELETED) so selector-filtered watches can tell
    that an object left their selection. BOOKMARK events have an empty key and value.
    """

    type: EventType
    key: str
    value: bytes
    revision: int
    prev_value: bytes | None = None


@dataclass(frozen=True, slots=True)
class Fence:
    """Writes made as leader: they land only while KEY's create revision is still REVISION
    (the leader key this process created; re-created by another leader, it changes)."""

    key: str
    revision: int


@dataclass(frozen=True, slots=True)
class Write:
    """One key of a ``commit``.

    ``value`` None deletes the key. ``expected_revision`` 0: the key must not exist (a
    create); n > 0: it must be at mod revision n (a compare-and-swap); None: it must exist.
    ``lease`` attaches the key to a lease (it is deleted when the lease expires).
    """

    key: str
    value: bytes | None
    expected_revision: int | None = 0
    lease: int = 0


# etcd's default --max-txn-ops: compares (and ops) per transaction, a fence included.
MAX_TXN_OPS = 128


class Store(Protocol):
    """Keys, bytes and revisions over etcd's semantics. Every method may raise Unavailable."""

    async def create(self, key: str, value: bytes) -> int:
        """Store a new key; return its revision. AlreadyExists if the key exists."""
        ...

    async def get(self, key: str) -> tuple[bytes, int]:
        """Return (value, mod_revision). NotFound if the key does not exist."""
        ...

    async def update(self, key: str, value: bytes, expected_revision: int) -> int:
        """Replace the value if the key is still at expected_revision; return the new revision.

        Conflict (with the current revision) if it moved on; NotFound if it is gone.
        """
        ...

    async def delete(self, key: str, expected_revision: int | None = None) -> int:
        """Delete the key (only at expected_revision, if given); return the deletion revision."""
        ...

    async def list(self, prefix: str, *, limit: int = 0, continue_token: str | None = None,
                   revision: int | None = None) -> ListResult:
        """Keys under prefix (which must end with '/'), in key order, at one revision.

        ``limit`` > 0 pages the result; pass the returned token to get the next page, which
        is read at the first page's revision. ``revision`` reads an older snapshot. Gone if
        that revision (or a token's) was compacted.
        """
        ...

    def watch(self, prefix: str, *, from_revision: int,
              bookmark_interval: float | None = None) -> AsyncIterator[Event]:
        """Changes under prefix made after from_revision, in revision order.

        from_revision 0 means "from now", where now is the first ``anext()``: like every
        async generator, nothing runs before that. Callers that must not miss a change
        list first and watch from the list's revision.

        Replays the history after from_revision, then streams. Raises Gone if that history
        was compacted. With bookmark_interval, a BOOKMARK arrives at least that often while
        nothing changes. Close it with ``contextlib.aclosing`` (or ``aclose()``).
        """
        ...

    async def commit(self, writes: Sequence[Write], *, fence: Fence | None = None) -> int:
        """Every write at one new revision (returned), or none of them.

        TxnFailed (its ``failures`` map each key that failed its condition to NotFound,
        Conflict or AlreadyExists) if any condition fails; Fenced if FENCE no longer holds.
        At most MAX_TXN_OPS - 1 writes (InvalidArgument beyond).
        """
        ...

    async def grant_lease(self, ttl: int) -> int:
        """A new lease of TTL seconds; returns its id."""
        ...

    async def keep_alive(self, lease: int) -> int:
        """Renew the lease; returns its TTL. NotFound if it has expired or was revoked."""
        ...

    async def revoke_lease(self, lease: int) -> None:
        """End the lease now, deleting its keys; a no-op if it is already gone."""
        ...

    async def compact(self, revision: int) -> None:
        """Forget history before revision; a no-op if already compacted that far."""
        ...

    async def current_revision(self) -> int:
        ...

    async def close(self) -> None:
        ...
