"""The storage error taxonomy: every failure a Store reports is one of these.

::

    StorageError
    ├── NotFound          the key does not exist (get, update, delete)
    ├── AlreadyExists     create of a key that exists
    ├── Conflict          compare-and-swap lost: carries the key's current revision
    ├── TooLarge          value over etcd's request limit, refused before sending
    ├── TxnFailed         a commit's conditions failed: ``failures`` names each key's error
    ├── Fenced            a fenced write after its leader key changed: not the leader any more
    ├── Gone              the revision asked for was compacted ("too old resource version")
    ├── InvalidArgument   a malformed continue token, prefix or revision
    └── Unavailable       etcd did not answer in time; the caller may retry

The API server maps these to gRPC status codes in one place (NOT_FOUND, ALREADY_EXISTS,
ABORTED, INVALID_ARGUMENT/RESOURCE_EXHAUSTED, OUT_OF_RANGE, INVALID_ARGUMENT, UNAVAILABLE);
nothing below it raises gRPC errors, so the in-memory and etcd stores fail the same way.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base of every storage failure."""


class NotFound(StorageError):
    def __init__(self, key: str) -> None:
        super().__init__(f"{key}: not found")
        self.key = key


class AlreadyExists(StorageError):
    def __init__(self, key: str) -> None:
        super().__init__(f"{key}: already exists")
        self.key = key


class Conflict(StorageError):
    """The key changed since the caller read it: re-read at ``current_revision`` and retry."""

    def __init__(self, key: str, *, expected_revision: int, current_revision: int) -> None:
        super().__init__(
            f"{key}: the object has been modified: expected resourceVersion "
            f"{expected_revision}, current resourceVersion is {current_revision}")
        self.key = key
        self.expected_revision = expected_revision
        self.current_revision = current_revision


class TooLarge(StorageError):
    def __init__(self, key: str, *, size: int, limit: int) -> None:
        super().__init__(
            f"{key}: object is {size} bytes; etcd accepts at most {limit} bytes per object "
            f"(its request limit is 1.5 MiB)")
        self.key = key
        self.size = size
        self.limit = limit


class Gone(StorageError):
    """The requested revision is older than the last compaction: list again from scratch."""

    def __init__(self, requested_revision: int, compacted_revision: int | None = None) -> None:
        # Kubernetes' wording, so clients that parse it (and people who know it) recognise it.
        detail = f" ({compacted_revision})" if compacted_revision is not None else ""
        super().__init__(f"too old resource version: {requested_revision}{detail}")
        self.requested_revision = requested_revision
        self.compacted_revision = compacted_revision


class InvalidArgument(StorageError):
    pass


class Unavailable(StorageError):
    def __init__(self, detail: str) -> None:
        super().__init__(f"etcd unavailable: {detail}; retry in a few seconds")
        self.detail = detail


class TxnFailed(StorageError):
    """A commit wrote nothing because these keys failed their conditions."""

    def __init__(self, failures: dict[str, StorageError]) -> None:
        shown = "; ".join(str(err) for err in list(failures.values())[:3])
        more = f" (and {len(failures) - 3} more)" if len(failures) > 3 else ""
        super().__init__(f"transaction of {len(failures)} failing write(s) not applied: "
                         f"{shown}{more}")
        self.failures = failures


class Fenced(StorageError):
    """The leader key this write was fenced on is gone or belongs to another leader."""

    def __init__(self, key: str, *, expected_revision: int, current_revision: int) -> None:
        now = (f"was re-created at revision {current_revision}" if current_revision
               else "no longer exists")
        super().__init__(
            f"{key}: fenced write refused: this process led from revision "
            f"{expected_revision}, but the leader key {now}: it is no longer the leader")
        self.key = key
        self.expected_revision = expected_revision
        self.current_revision = current_revision
