"""Garbage collection of content and snapshots (containerd's mark-and-sweep over labels).

    roots ── every RootsProvider: image targets of every namespace (images/service.py),
    │        container snapshots (the container store adds its provider later),
    │        and live leases (what an ongoing pull / import / unpack is using)
    ▼ mark
    blob ──label containerd.io/gc.ref.content.<x>=<digest>──► blob
    blob ──label containerd.io/gc.ref.snapshot.<snapshotter>=<key>──► snapshot
    snapshot ──parent──► snapshot            (active and view snapshots are always kept)
    ▼ sweep
    unmarked blobs; unmarked committed snapshots, children before parents; ingests not
    written to for ``ingest_max_age`` seconds.  ──► GCResult (what went, bytes freed)

Namespaces: images are per namespace; blobs and snapshots are shared underneath, and one
namespace's images are roots like any other's, so a blob lives while any namespace needs it.

Leases: anything created after the oldest live lease started is kept, as is everything a
lease names, so a GC racing a pull never takes what the pull is about to reference.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from runtime.service.content import ContentStore, Digest, InvalidDigest, Locked
from runtime.service.content import NotFound as ContentNotFound
from runtime.service.snapshots import FailedPrecondition, Info, Kind, Snapshotter
from runtime.service.snapshots import NotFound as SnapshotNotFound

CONTENT_PREFIX = "containerd.io/gc.ref.content."
SNAPSHOT_PREFIX = "containerd.io/gc.ref.snapshot."


@dataclass
class Roots:
    content: set[Digest] = field(default_factory=set)
    snapshots: set[tuple[str, str]] = field(default_factory=set)  # (snapshotter, key)


RootsProvider = Callable[[], Roots]


@dataclass(frozen=True)
class GCResult:
    blobs: tuple[Digest, ...] = ()
    snapshots: tuple[tuple[str, str], ...] = ()
    ingests: tuple[str, ...] = ()
    bytes_freed: int = 0


class Lease:
    def __init__(self, started: float) -> None:
        self.started = started
        self.roots = Roots()

    def add_content(self, digest: str) -> None:
        self.roots.content.add(Digest(digest))

    def add_snapshot(self, snapshotter: str, key: str) -> None:
        self.roots.snapshots.add((snapshotter, key))


class Leases:
    """In-process leases; ``roots`` is a RootsProvider and ``protect_since`` the time from
    which new objects are kept."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._live: dict[int, Lease] = {}
        self._ids = itertools.count()

    @contextmanager
    def lease(self) -> Iterator[Lease]:
        lease = Lease(self._clock())
        with self._lock:
            n = next(self._ids)
            self._live[n] = lease
        try:
            yield lease
        finally:
            with self._lock:
                del self._live[n]

    def roots(self) -> Roots:
        out = Roots()
        with self._lock:
            for lease in self._live.values():
                out.content |= lease.roots.content
                out.snapshots |= lease.roots.snapshots
        return out

    def protect_since(self) -> float | None:
        with self._lock:
            return min((lease.started for lease in self._live.values()), default=None)


def _refs(labels: Mapping[str, str]) -> tuple[set[Digest], set[tuple[str, str]]]:
    blobs: set[Digest] = set()
    snaps: set[tuple[str, str]] = set()
    for k, v in labels.items():
        if k.startswith(CONTENT_PREFIX):
            try:
                blobs.add(Digest(v))
            except InvalidDigest:
                continue
        elif k.startswith(SNAPSHOT_PREFIX):
            snaps.add((k[len(SNAPSHOT_PREFIX):], v))
    return blobs, snaps


def collect(
    *,
    content: ContentStore,
    snapshotters: Mapping[str, Snapshotter],
    roots: Iterable[RootsProvider],
    ingest_max_age: float = 24 * 3600.0,
    protect_since: float | None = None,
    clock: Callable[[], float] = time.time,
) -> GCResult:
    """Mark from ROOTS, sweep the rest (see the module docstring). Objects created at or
    after PROTECT_SINCE are kept."""
    start = Roots()
    for provider in roots:
        r = provider()
        start.content |= r.content
        start.snapshots |= r.snapshots
    infos = {snap: {i.name: i for i in s.walk()} for snap, s in snapshotters.items()}
    for snap, by_key in infos.items():  # active and view snapshots are always in use
        start.snapshots |= {(snap, k) for k, i in by_key.items() if i.kind is not Kind.COMMITTED}

    marked_blobs: set[Digest] = set()
    marked_snaps: set[tuple[str, str]] = set()
    blob_queue = list(start.content)
    snap_queue = list(start.snapshots)
    while blob_queue or snap_queue:
        while blob_queue:
            d = blob_queue.pop()
            if d in marked_blobs:
                continue
            marked_blobs.add(d)
            try:
                labels = content.info(d).labels
            except ContentNotFound:
                continue
            more_blobs, more_snaps = _refs(labels)
            blob_queue.extend(more_blobs)
            snap_queue.extend(more_snaps)
        while snap_queue:
            ref = snap_queue.pop()
            if ref in marked_snaps:
                continue
            marked_snaps.add(ref)
            info = infos.get(ref[0], {}).get(ref[1])
            if info is None:
                continue
            if info.parent is not None:
                snap_queue.append((ref[0], info.parent))
            more_blobs, more_snaps = _refs(info.labels)
            blob_queue.extend(more_blobs)
            snap_queue.extend(more_snaps)

    freed = 0
    gone_blobs: list[Digest] = []
    for blob in list(content.walk()):
        if blob.digest in marked_blobs:
            continue
        if protect_since is not None and blob.created_at >= protect_since:
            continue
        try:
            content.delete(blob.digest)
        except ContentNotFound:
            continue
        gone_blobs.append(blob.digest)
        freed += blob.size

    gone_snaps: list[tuple[str, str]] = []
    for snap, by_key in infos.items():
        s = snapshotters[snap]
        for key in _children_first(by_key):
            info = by_key[key]
            if (snap, key) in marked_snaps or info.kind is not Kind.COMMITTED:
                continue
            if protect_since is not None and info.created_at >= protect_since:
                continue
            try:
                size = s.usage(key).size
                s.remove(key)
            except (SnapshotNotFound, FailedPrecondition):
                continue  # removed meanwhile, or someone built on it since the walk
            gone_snaps.append((snap, key))
            freed += size

    gone_ingests: list[str] = []
    cutoff = clock() - ingest_max_age
    for ingest in content.ingests():
        if ingest.updated_at >= cutoff:
            continue
        try:
            content.abort(ingest.ref)
        except (Locked, ContentNotFound):
            continue  # being written right now, or finished meanwhile
        gone_ingests.append(ingest.ref)
        freed += ingest.offset
    return GCResult(tuple(gone_blobs), tuple(gone_snaps), tuple(gone_ingests), freed)


def _children_first(infos: Mapping[str, Info]) -> list[str]:
    """Keys ordered so that every snapshot comes before its parent."""
    parents = {k: i.parent for k, i in infos.items()}

    def depth(k: str) -> int:
        n = 0
        p = parents.get(k)
        while p is not None and n < len(parents):
            n += 1
            p = parents.get(p)
        return n

    return sorted(parents, key=lambda k: (-depth(k), k))
