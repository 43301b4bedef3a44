"""The image store: image name -> target descriptor, per namespace (containerd's ``images``).

    root/images.db   (sqlite3, WAL; one BEGIN IMMEDIATE transaction per operation)
        images(namespace, name, media_type, digest, size, labels, created, updated)
               └────── primary key ──────┘

An image record only *points* at content (its target: an index or a manifest); the blobs
and the snapshots it was unpacked into are shared by every namespace and are kept alive by
the garbage collector as long as some namespace's image reaches them (gc.py).

Errors (ImageError subclasses) name the namespace and the image:
``image default/127.0.0.1:5000/busybox:1: not found``.
"""

from __future__ import annotations

import builtins
import json
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from runtime.service.content import Digest, InvalidDigest
from runtime.service.images.errors import ImageError

DEFAULT_NAMESPACE = "default"
_NAMESPACE = re.compile(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    namespace  TEXT NOT NULL,
    name       TEXT NOT NULL,
    media_type TEXT NOT NULL,
    digest     TEXT NOT NULL,
    size       INTEGER NOT NULL,
    labels     TEXT NOT NULL,
    created    REAL NOT NULL,
    updated    REAL NOT NULL,
    PRIMARY KEY (namespace, name)
)
"""
_COLUMNS = "namespace, name, media_type, digest, size, labels, created, updated"


class ImageStoreError(ImageError):
    """Base of the image store's errors."""


class ImageNotFound(ImageStoreError):
    pass


class ImageAlreadyExists(ImageStoreError):
    pass


class InvalidImage(ImageStoreError, ValueError):
    pass


@dataclass(frozen=True)
class Target:
    """What an image name points at: an index or a manifest in the content store."""

    media_type: str
    digest: Digest
    size: int


@dataclass(frozen=True)
class Image:
    namespace: str
    name: str
    target: Target
    labels: Mapping[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0


def check_namespace(namespace: str) -> str:
    if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace) or len(
        namespace
    ) > 76:
        raise InvalidImage(f"namespace {namespace!r}: must be letters and digits separated by"
                           " single '.', '_' or '-' (at most 76 characters)")
    return namespace


def _check(image: Image) -> None:
    check_namespace(image.namespace)
    what = f"image {image.namespace}/{image.name}"
    if not isinstance(image.name, str) or not image.name or "\x00" in image.name:
        raise InvalidImage(f"image {image.namespace}/{image.name!r}: name: must be a non-empty"
                           " string")
    t = image.target
    try:
        Digest(t.digest)
    except InvalidDigest as e:
        raise InvalidImage(f"{what}: target.digest: {e}") from None
    if not t.media_type:
        raise InvalidImage(f"{what}: target.media_type: must not be empty")
    if not isinstance(t.size, int) or t.size < 0:
        raise InvalidImage(f"{what}: target.size: must be >= 0, got {t.size!r}")
    _check_labels(what, image.labels)


def _check_labels(what: str, labels: Mapping[str, str | None]) -> None:
    for k, v in labels.items():
        if not isinstance(k, str) or not k or not (v is None or isinstance(v, str)):
            raise InvalidImage(f"{what}: labels[{k!r}]: want a non-empty key and a string")


def _image(row: tuple[str, str, str, str, int, str, float, float]) -> Image:
    return Image(row[0], row[1], Target(row[2], Digest(row[3]), row[4]), json.loads(row[5]),
                 row[6], row[7])


class ImageStore:
    """Image records in one sqlite3 file; several processes may share it."""

    def __init__(self, path: str, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, timeout=60, isolation_level=None,
                                   check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        with self._tx() as db:
            db.execute(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @staticmethod
    def _find(db: sqlite3.Connection, namespace: str, name: str) -> Image | None:
        row = db.execute(f"SELECT {_COLUMNS} FROM images WHERE namespace = ? AND name = ?",
                         (namespace, name)).fetchone()
        return None if row is None else _image(row)

    def get(self, namespace: str, name: str) -> Image:
        check_namespace(namespace)
        with self._tx() as db:
            img = self._find(db, namespace, name)
        if img is None:
            raise ImageNotFound(f"image {namespace}/{name}: not found")
        return img

    def list(self, namespace: str, *, prefix: str = "",
             labels: Mapping[str, str | None] | None = None) -> builtins.list[Image]:
        """NAMESPACE's images whose name starts with PREFIX and that carry every label in
        LABELS (a None value: the key with any value), sorted by name."""
        check_namespace(namespace)
        with self._tx() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM images WHERE namespace = ? AND substr(name, 1, ?) = ?"
                " ORDER BY name", (namespace, len(prefix), prefix)).fetchall()
        out = [_image(r) for r in rows]
        for k, v in (labels or {}).items():
            out = [i for i in out if k in i.labels and (v is None or i.labels[k] == v)]
        return out

    def namespaces(self) -> builtins.list[str]:
        with self._tx() as db:
            return [r[0] for r in db.execute(
                "SELECT DISTINCT namespace FROM images ORDER BY namespace")]

    def targets(self) -> set[Digest]:
        """Every image's target digest in every namespace: the garbage collector's roots."""
        with self._tx() as db:
            return {Digest(r[0]) for r in db.execute("SELECT DISTINCT digest FROM images")}

    def create(self, image: Image) -> Image:
        """Add IMAGE; ImageAlreadyExists if its namespace has that name."""
        _check(image)
        with self._tx() as db:
            if self._find(db, image.namespace, image.name) is not None:
                raise ImageAlreadyExists(f"image {image.namespace}/{image.name}: already exists")
            return self._insert(db, image)

    def put(self, images: Sequence[Image]) -> builtins.list[Image]:
        """Create or replace (target and labels) every image in IMAGES in one transaction:
        all of them are written or none is."""
        for image in images:
            _check(image)
        with self._tx() as db:
            out = []
            for image in images:
                old = self._find(db, image.namespace, image.name)
                if old is None:
                    out.append(self._insert(db, image))
                else:
                    out.append(self._write(db, replace(image, created_at=old.created_at)))
            return out

    def _insert(self, db: sqlite3.Connection, image: Image) -> Image:
        now = self._clock()
        image = replace(image, created_at=now, updated_at=now)
        db.execute(f"INSERT INTO images ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   _row(image))
        return image

    def _write(self, db: sqlite3.Connection, image: Image) -> Image:
        image = replace(image, updated_at=self._clock())
        db.execute("UPDATE images SET media_type = ?, digest = ?, size = ?, labels = ?,"
                   " updated = ? WHERE namespace = ? AND name = ?",
                   (image.target.media_type, str(image.target.digest), image.target.size,
                    json.dumps(dict(image.labels), sort_keys=True), image.updated_at,
                    image.namespace, image.name))
        return image

    def update(self, namespace: str, name: str, *, target: Target | None = None,
               labels: Mapping[str, str | None] | None = None) -> Image:
        """Point NAME at TARGET and/or merge LABELS (a None value removes that label)."""
        check_namespace(namespace)
        with self._tx() as db:
            old = self._find(db, namespace, name)
            if old is None:
                raise ImageNotFound(f"image {namespace}/{name}: not found")
            merged = dict(old.labels)
            for k, v in (labels or {}).items():
                if v is None:
                    merged.pop(k, None)
                else:
                    merged[k] = v
            new = replace(old, target=target or old.target, labels=merged)
            _check(new)
            return self._write(db, new)

    def delete(self, namespace: str, name: str) -> Image:
        check_namespace(namespace)
        with self._tx() as db:
            old = self._find(db, namespace, name)
            if old is None:
                raise ImageNotFound(f"image {namespace}/{name}: not found")
            db.execute("DELETE FROM images WHERE namespace = ? AND name = ?", (namespace, name))
            return old

    def walk(self) -> Iterable[Image]:
        """Every image of every namespace."""
        with self._tx() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM images ORDER BY namespace, name")
            return [_image(r) for r in rows.fetchall()]


def _row(image: Image) -> tuple[str, str, str, str, int, str, float, float]:
    return (image.namespace, image.name, image.target.media_type, str(image.target.digest),
            image.target.size, json.dumps(dict(image.labels), sort_keys=True),
            image.created_at, image.updated_at)
