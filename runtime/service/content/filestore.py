"""FileContentStore: containerd's local content store layout, on one filesystem::

    root/blobs/<alg>/<hex>            committed blobs, read-only (0444), never rewritten
    root/labels/<alg>/<hex>.json      the blob's labels (GC references), replaced atomically
    root/ingest/<sha256(ref)>/        one in-progress write, flock()ed by its writer
        ref  startedat  data

A write streams into ingest/.../data while being hashed (the blob is never re-read);
commit = fsync, verify size and digest, chmod 0444, link into blobs/ (first commit wins, a
later one of the same digest is a no-op), fsync the directory, remove the ingest.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from typing import BinaryIO

from runtime.service.content.digest import HEX_LENGTHS, Digest, new_hash
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

_CHUNK = 1 << 20


def _write_fd(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


_write_all = _write_fd  # the one place blob bytes reach the disk (tests swap it for ENOSPC)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file_atomic(path: str, data: bytes, mode: int = 0o644) -> None:
    tmp = f"{path}.{os.getpid()}.{time.monotonic_ns()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        _write_fd(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)


def _remove_dir(path: str) -> None:
    """Remove a flat directory (an ingest holds only files)."""
    for name in os.listdir(path):
        os.unlink(os.path.join(path, name))
    os.rmdir(path)


class FileContentStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.fspath(root)
        for sub in ("blobs", "labels", "ingest"):
            os.makedirs(os.path.join(self.root, sub), exist_ok=True)

    # ---- paths ----------------------------------------------------------------------------

    def _blob_path(self, d: Digest) -> str:
        return os.path.join(self.root, "blobs", d.algorithm, d.hex)

    def _labels_path(self, d: Digest) -> str:
        return os.path.join(self.root, "labels", d.algorithm, d.hex + ".json")

    def _ingest_path(self, ref: str) -> str:
        return os.path.join(self.root, "ingest", hashlib.sha256(ref.encode()).hexdigest())

    # ---- reading --------------------------------------------------------------------------

    def _labels(self, d: Digest) -> dict[str, str]:
        try:
            with open(self._labels_path(d), "rb") as f:
                labels: dict[str, str] = json.load(f)
        except FileNotFoundError:
            return {}
        return labels

    def info(self, digest: str) -> Info:
        d = Digest(digest)
        try:
            st = os.stat(self._blob_path(d))
        except FileNotFoundError:
            raise NotFound(f"content {d}: not found") from None
        return Info(d, st.st_size, st.st_mtime, self._labels(d))

    def exists(self, digest: str) -> bool:
        return os.path.exists(self._blob_path(Digest(digest)))

    def open(self, digest: str) -> BinaryIO:
        d = Digest(digest)
        try:
            return open(self._blob_path(d), "rb")
        except FileNotFoundError:
            raise NotFound(f"content {d}: not found") from None

    def read(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def walk(self) -> Iterator[Info]:
        for algorithm, length in HEX_LENGTHS.items():
            try:
                names = sorted(os.listdir(os.path.join(self.root, "blobs", algorithm)))
            except FileNotFoundError:
                continue
            for name in names:
                if len(name) != length:
                    continue
                try:
                    yield self.info(f"{algorithm}:{name}")
                except (NotFound, ContentError):  # deleted meanwhile, or a stray file
                    continue

    # ---- changing -------------------------------------------------------------------------

    def delete(self, digest: str) -> None:
        d = Digest(digest)
        try:
            os.unlink(self._blob_path(d))
        except FileNotFoundError:
            raise NotFound(f"content {d}: not found") from None
        try:
            os.unlink(self._labels_path(d))
        except FileNotFoundError:
            pass

    def update_labels(self, digest: str, labels: Mapping[str, str | None]) -> Info:
        d = Digest(digest)
        lock_fd = os.open(
            os.path.join(self.root, "labels", ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
        )
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)  # read-modify-write across processes
            if not self.exists(d):
                raise NotFound(f"content {d}: not found")
            merged = merge_labels(self._labels(d), labels)
            path = self._labels_path(d)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            _write_file_atomic(path, json.dumps(merged, sort_keys=True).encode())
        finally:
            os.close(lock_fd)
        return self.info(d)

    def ingests(self) -> list[IngestStatus]:
        base = os.path.join(self.root, "ingest")
        out = []
        for name in sorted(os.listdir(base)):
            path = os.path.join(base, name)
            try:
                with open(os.path.join(path, "ref"), encoding="utf-8") as f:
                    ref = f.read()
                with open(os.path.join(path, "startedat"), encoding="utf-8") as f:
                    started = float(f.read())
                st = os.stat(os.path.join(path, "data"))
            except (FileNotFoundError, ValueError):  # being created or removed right now
                continue
            out.append(IngestStatus(ref, st.st_size, started, st.st_mtime))
        return sorted(out, key=lambda s: s.ref)

    def abort(self, ref: str) -> None:
        path = self._ingest_path(check_ref(ref))
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(f"ingest {ref!r}: not found") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise Locked(f"ingest {ref!r}: locked by another writer") from None
            _remove_dir(path)
        finally:
            os.close(fd)

    def _lock_ingest(self, ref: str) -> tuple[str, int]:
        """Create (or find) the ref's ingest dir and flock it; Locked if someone holds it."""
        path = self._ingest_path(ref)
        for _ in range(10):
            os.makedirs(path, exist_ok=True)
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise Locked(f"ingest {ref!r}: locked by another writer") from None
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return path, fd
            os.close(fd)  # removed by a committing/aborting writer in between: try again
        raise ContentError(f"ingest {ref!r}: could not lock {path}")

    def writer(
        self, ref: str, *, expected_digest: str | None = None, expected_size: int | None = None
    ) -> FileWriter:
        check_ref(ref)
        expected = Digest(expected_digest) if expected_digest is not None else None
        check_expected_size(ref, expected_size)
        path, lock_fd = self._lock_ingest(ref)
        try:
            ref_path = os.path.join(path, "ref")
            if os.path.exists(ref_path):
                with open(ref_path, encoding="utf-8") as f:
                    if f.read() != ref:
                        raise ContentError(f"ingest {ref!r}: {path} belongs to another ref")
            else:
                _write_file_atomic(os.path.join(path, "startedat"), repr(time.time()).encode())
                _write_file_atomic(ref_path, ref.encode())
            data_fd = os.open(
                os.path.join(path, "data"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644
            )
        except BaseException:
            os.close(lock_fd)
            raise
        return FileWriter(
            self,
            ref,
            path=path,
            lock_fd=lock_fd,
            data_fd=data_fd,
            expected=expected,
            expected_size=expected_size,
        )

    def _install(self, data_path: str, d: Digest) -> None:
        """Put a verified ingest file in place; if the digest is already there, do nothing."""
        target = self._blob_path(d)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        try:
            os.link(data_path, target)  # atomic and never overwrites: first commit wins
        except FileExistsError:
            return
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            if os.path.exists(target):
                return
            os.rename(data_path, target)  # filesystems without hard links
        _fsync_dir(os.path.dirname(target))


class FileWriter(WriterContext):
    def __init__(
        self,
        store: FileContentStore,
        ref: str,
        *,
        path: str,
        lock_fd: int,
        data_fd: int,
        expected: Digest | None,
        expected_size: int | None,
    ) -> None:
        self.ref = ref
        self._store = store
        self._path = path
        self._lock_fd: int | None = lock_fd
        self._fd: int | None = data_fd
        self._expected = expected
        self._expected_size = expected_size
        self._failed = False
        # resuming: re-hash what an earlier (maybe crashed) writer left, then append
        self._hash = new_hash(expected.algorithm if expected else "sha256")
        self._offset = 0
        while chunk := os.read(data_fd, _CHUNK):
            self._hash.update(chunk)
            self._offset += len(chunk)

    @property
    def offset(self) -> int:
        return self._offset

    def _open_fd(self) -> int:
        if self._fd is None:
            raise ContentError(f"ingest {self.ref!r}: writer already committed, closed or aborted")
        if self._failed:
            raise ContentError(f"ingest {self.ref!r}: an earlier write failed; abort or close")
        return self._fd

    def write(self, data: bytes) -> int:
        fd = self._open_fd()
        try:
            _write_all(fd, data)
        except OSError:
            self._failed = True  # bytes on disk may now run ahead of the hash
            raise
        self._hash.update(data)
        self._offset += len(data)
        return len(data)

    def commit(self, *, labels: Mapping[str, str] | None = None) -> Digest:
        fd = self._open_fd()
        actual = Digest.from_hash(self._hash)
        try:
            verify(
                self.ref,
                actual=actual,
                size=self._offset,
                expected=self._expected,
                expected_size=self._expected_size,
            )
            os.fsync(fd)
            os.fchmod(fd, 0o444)
            self._store._install(os.path.join(self._path, "data"), actual)
        except BaseException:
            self.abort()
            raise
        self._release(discard=True)
        if labels:
            self._store.update_labels(actual, labels)
        return actual

    def _release(self, *, discard: bool) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            try:
                if discard:
                    _remove_dir(self._path)  # still holding the lock
            finally:
                os.close(self._lock_fd)
                self._lock_fd = None

    def abort(self) -> None:
        self._release(discard=True)

    def close(self) -> None:
        self._release(discard=False)

