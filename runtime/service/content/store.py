"""The content store interface: every implementation passes tests/unit/.../test_conformance.py.

Life of a blob::

    w = store.writer("pull-<digest>", expected_digest=d, expected_size=n)   # ingest (locked ref)
    w.write(chunk) ...                       # hashed as it streams; resumable at w.offset
    w.commit()  ──verify size+digest──►  blob (read-only, by digest)  + labels (for GC)
        └─ mismatch: ingest discarded, DigestMismatch / SizeMismatch
    w.close()   ──► ingest kept; a later writer(same ref) resumes at its offset
    w.abort()   ──► ingest discarded
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import BinaryIO, Protocol, Self

from runtime.service.content.digest import Digest
from runtime.service.content.errors import ContentError, DigestMismatch, SizeMismatch


@dataclass(frozen=True)
class Info:
    digest: Digest
    size: int
    created_at: float  # seconds since the epoch
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class IngestStatus:
    """An in-progress (or crashed) write; ``offset`` is where a resumed writer continues."""

    ref: str
    offset: int
    started_at: float
    updated_at: float


class Writer(Protocol):
    ref: str

    @property
    def offset(self) -> int: ...

    def write(self, data: bytes) -> int: ...

    def commit(self, *, labels: Mapping[str, str] | None = None) -> Digest: ...

    def abort(self) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Writer: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class ContentStore(Protocol):
    def info(self, digest: str) -> Info: ...

    def exists(self, digest: str) -> bool: ...

    def read(self, digest: str) -> bytes: ...

    def open(self, digest: str) -> BinaryIO: ...

    def writer(
        self, ref: str, *, expected_digest: str | None = None, expected_size: int | None = None
    ) -> Writer: ...

    def delete(self, digest: str) -> None: ...

    def walk(self) -> Iterator[Info]: ...

    def update_labels(self, digest: str, labels: Mapping[str, str | None]) -> Info:
        """Merge ``labels`` into the blob's labels; a ``None`` value removes that key."""
        ...

    def ingests(self) -> list[IngestStatus]: ...

    def abort(self, ref: str) -> None:
        """Discard an ingest nobody is writing (e.g. left by a crashed pull)."""
        ...


# ---- pure helpers shared by the implementations -------------------------------------------


def check_ref(ref: object) -> str:
    if not isinstance(ref, str) or not ref or "\x00" in ref:
        raise ContentError(f"invalid ingest ref {ref!r}: must be a non-empty string")
    return ref


def check_expected_size(ref: str, size: int | None) -> int | None:
    if size is not None and (not isinstance(size, int) or size < 0):
        raise ContentError(f"ref {ref!r}: expected_size must be an int >= 0, got {size!r}")
    return size


def verify(
    ref: str, *, actual: Digest, size: int, expected: Digest | None, expected_size: int | None
) -> None:
    """Raise if what was written is not what the caller said it would be."""
    if expected_size is not None and size != expected_size:
        raise SizeMismatch(f"ref {ref!r}: expected size {expected_size}, got {size}")
    if expected is not None and actual != expected:
        raise DigestMismatch(f"ref {ref!r}: expected {expected}, got {actual}")


def merge_labels(current: Mapping[str, str], update: Mapping[str, str | None]) -> dict[str, str]:
    merged = dict(current)
    for key, value in update.items():
        if not isinstance(key, str) or not key:
            raise ContentError(f"label key {key!r}: must be a non-empty string")
        if value is None:
            merged.pop(key, None)
        elif not isinstance(value, str):
            raise ContentError(f"label {key!r}: value must be a string or None, got {value!r}")
        else:
            merged[key] = value
    return merged


class WriterContext:
    """What every Writer does as a context manager: abort on an exception, else close
    (keeping the ingest, so a later writer on the same ref can resume it)."""

    def abort(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()
