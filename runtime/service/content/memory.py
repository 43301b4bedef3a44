"""MemoryContentStore: the same semantics as FileContentStore, in a dict, for unit tests of
higher layers (images, pulls, GC). ``capacity`` (bytes) makes writes fail with ENOSPC."""

from __future__ import annotations

import errno
import io
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import BinaryIO

from runtime.service.content.digest import Digest, new_hash
from runtime.service.content.errors import ContentError, Locked, NotFound
from runtime.service.content.store import (
    Info,
    IngestStatus,
    WriterContext,
    check_expected_size,
    check_ref,
    merge_labels,
    verify,
)


@dataclass
class _Blob:
    data: bytes
    created_at: float
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class _Ingest:
    data: bytearray
    started_at: float
    updated_at: float
    busy: bool = False


class MemoryContentStore:
    def __init__(
        self, *, capacity: int | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self._blobs: dict[Digest, _Blob] = {}
        self._ingests: dict[str, _Ingest] = {}
        self._lock = threading.Lock()
        self._capacity = capacity
        self._clock = clock

    # ---- reading --------------------------------------------------------------------------

    def _blob(self, digest: str) -> tuple[Digest, _Blob]:
        d = Digest(digest)
        blob = self._blobs.get(d)
        if blob is None:
            raise NotFound(f"content {d}: not found")
        return d, blob

    def info(self, digest: str) -> Info:
        d, blob = self._blob(digest)
        return Info(d, len(blob.data), blob.created_at, dict(blob.labels))

    def exists(self, digest: str) -> bool:
        return Digest(digest) in self._blobs

    def read(self, digest: str) -> bytes:
        return self._blob(digest)[1].data

    def open(self, digest: str) -> BinaryIO:
        return io.BytesIO(self._blob(digest)[1].data)

    def walk(self) -> Iterator[Info]:
        with self._lock:
            digests = sorted(self._blobs)
        for d in digests:
            try:
                yield self.info(d)
            except NotFound:  # deleted while walking
                continue

    # ---- changing -------------------------------------------------------------------------

    def delete(self, digest: str) -> None:
        with self._lock:
            d, _ = self._blob(digest)
            del self._blobs[d]

    def update_labels(self, digest: str, labels: Mapping[str, str | None]) -> Info:
        with self._lock:
            _, blob = self._blob(digest)
            blob.labels = merge_labels(blob.labels, labels)
        return self.info(digest)

    def ingests(self) -> list[IngestStatus]:
        with self._lock:
            return [
                IngestStatus(ref, len(i.data), i.started_at, i.updated_at)
                for ref, i in sorted(self._ingests.items())
            ]

    def abort(self, ref: str) -> None:
        with self._lock:
            ingest = self._ingests.get(check_ref(ref))
            if ingest is None:
                raise NotFound(f"ingest {ref!r}: not found")
            if ingest.busy:
                raise Locked(f"ingest {ref!r}: locked by another writer")
            del self._ingests[ref]

    def writer(
        self, ref: str, *, expected_digest: str | None = None, expected_size: int | None = None
    ) -> MemoryWriter:
        check_ref(ref)
        expected = Digest(expected_digest) if expected_digest is not None else None
        check_expected_size(ref, expected_size)
        with self._lock:
            ingest = self._ingests.get(ref)
            if ingest is None:
                now = self._clock()
                ingest = self._ingests[ref] = _Ingest(bytearray(), now, now)
            elif ingest.busy:
                raise Locked(f"ingest {ref!r}: locked by another writer")
            ingest.busy = True
        return MemoryWriter(self, ref, ingest, expected=expected, expected_size=expected_size)

    # ---- for MemoryWriter -----------------------------------------------------------------

    def _reserve(self, ref: str, n: int) -> None:
        if self._capacity is None:
            return
        used = sum(len(b.data) for b in self._blobs.values())
        used += sum(len(i.data) for i in self._ingests.values())
        if used + n > self._capacity:
            raise OSError(errno.ENOSPC, f"ingest {ref!r}: {os.strerror(errno.ENOSPC)}")

    def _finish(self, ref: str, *, discard: bool) -> None:
        with self._lock:
            ingest = self._ingests.get(ref)
            if ingest is not None:
                ingest.busy = False
                if discard:
                    del self._ingests[ref]

    def _commit(self, ref: str, digest: Digest, data: bytes, labels: Mapping[str, str]) -> None:
        with self._lock:
            self._ingests.pop(ref, None)
            if digest not in self._blobs:  # first commit wins; a second is a no-op
                self._blobs[digest] = _Blob(data, self._clock(), dict(labels))


class MemoryWriter(WriterContext):
    def __init__(
        self,
        store: MemoryContentStore,
        ref: str,
        ingest: _Ingest,
        *,
        expected: Digest | None,
        expected_size: int | None,
    ) -> None:
        self.ref = ref
        self._store = store
        self._ingest = ingest
        self._expected = expected
        self._expected_size = expected_size
        # resuming: re-hash what the earlier writer left (the blob itself is never re-read)
        self._hash = new_hash(expected.algorithm if expected else "sha256", bytes(ingest.data))
        self._done = False
        self._failed = False

    @property
    def offset(self) -> int:
        return len(self._ingest.data)

    def _check_open(self) -> None:
        if self._done:
            raise ContentError(f"ingest {self.ref!r}: writer already committed, closed or aborted")
        if self._failed:
            raise ContentError(f"ingest {self.ref!r}: an earlier write failed; abort or close")

    def write(self, data: bytes) -> int:
        self._check_open()
        try:
            self._store._reserve(self.ref, len(data))
        except OSError:
            self._failed = True  # same contract as the file store
            raise
        self._ingest.data += data
        self._hash.update(data)
        self._ingest.updated_at = self._store._clock()
        return len(data)

    def commit(self, *, labels: Mapping[str, str] | None = None) -> Digest:
        self._check_open()
        self._done = True
        actual = Digest.from_hash(self._hash)
        try:
            verify(
                self.ref,
                actual=actual,
                size=self.offset,
                expected=self._expected,
                expected_size=self._expected_size,
            )
        except ContentError:
            self._store._finish(self.ref, discard=True)
            raise
        self._store._commit(self.ref, actual, bytes(self._ingest.data), labels or {})
        return actual

    def abort(self) -> None:
        if not self._done:
            self._done = True
            self._store._finish(self.ref, discard=True)

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._store._finish(self.ref, discard=False)

