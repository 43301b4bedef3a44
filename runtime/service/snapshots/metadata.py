"""Snapshot metadata in one sqlite3 file, and the part every directory snapshotter shares.

    root/metadata.db    key -> id, kind, parent, labels, created/updated  (WAL; one
                        BEGIN IMMEDIATE transaction per operation, so several processes
                        can share it: writers queue on sqlite's lock, readers never block)
    root/snapshots/<id> one directory per snapshot, named by its id (which never changes:
                        committing renames the *key*, not the directory)

Creating a snapshot: its directory is filled under snapshots/new-XXXX first, then renamed to
its id inside the transaction that inserts the row; removing renames it to rm-<id> inside
the transaction that deletes the row and deletes it after the commit. A crash leaves at
worst a stray new-*/rm-* directory, never a row without its directory.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from runtime.service.snapshots.interface import (
    AlreadyExists,
    FailedPrecondition,
    Info,
    InvalidArgument,
    Kind,
    Mount,
    NotFound,
    Op,
    Usage,
    check_key,
    check_transition,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    key       TEXT NOT NULL UNIQUE,
    kind      TEXT NOT NULL,
    parent_id INTEGER REFERENCES snapshots(id),
    labels    TEXT NOT NULL,
    created   REAL NOT NULL,
    updated   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent_id);
"""
_SELECT = (
    "SELECT s.id, s.key, s.kind, p.key, s.labels, s.created, s.updated"
    " FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent_id"
)


@dataclass(frozen=True)
class Record:
    id: int
    key: str
    kind: Kind
    parent: str | None
    labels: dict[str, str]
    created: float
    updated: float

    def info(self) -> Info:
        return Info(
            self.key, self.kind, self.parent, dict(self.labels), self.created, self.updated
        )


def _record(row: tuple[int, str, str, str | None, str, float, float]) -> Record:
    return Record(row[0], row[1], Kind(row[2]), row[3], json.loads(row[4]), row[5], row[6])


def _check_labels(key: str, labels: Mapping[str, str | None]) -> None:
    for k, v in labels.items():
        if not isinstance(k, str) or not k or not (v is None or isinstance(v, str)):
            raise InvalidArgument(f"snapshot {key!r}: labels[{k!r}]: want a string", key=key)


class MetaStore:
    """The metadata table; every method is one transaction."""

    def __init__(self, path: str, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()  # one connection, shared by this process's threads
        self._db = sqlite3.connect(path, timeout=60, isolation_level=None,
                                   check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        with self.transaction() as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @staticmethod
    def _find(db: sqlite3.Connection, key: str) -> Record | None:
        row = db.execute(_SELECT + " WHERE s.key = ?", (key,)).fetchone()
        return None if row is None else _record(row)

    def _get(self, db: sqlite3.Connection, key: str) -> Record:
        rec = self._find(db, key)
        if rec is None:
            raise NotFound(f"snapshot {key!r}: not found", key=key)
        return rec

    def _chain(self, db: sqlite3.Connection, key: str) -> list[Record]:
        """KEY's record, then its parent's, up to the root."""
        chain = [self._get(db, key)]
        while chain[-1].parent is not None:
            chain.append(self._get(db, chain[-1].parent))
        return chain

    def get(self, key: str) -> Record:
        with self.transaction() as db:
            return self._get(db, key)

    def chain(self, key: str) -> list[Record]:
        with self.transaction() as db:
            return self._chain(db, key)

    def walk(self) -> list[Record]:
        with self.transaction() as db:
            return [_record(r) for r in db.execute(_SELECT + " ORDER BY s.key")]

    def create(
        self,
        key: str,
        *,
        parent: str | None,
        kind: Kind,
        labels: Mapping[str, str],
        then: Callable[[Record, list[Record]], None],
    ) -> tuple[Record, list[Record]]:
        """Insert KEY; THEN(record, parent chain) runs inside the transaction (an error in it
        rolls the insert back)."""
        op = Op.PREPARE if kind is Kind.ACTIVE else Op.VIEW
        _check_labels(key, labels)
        with self.transaction() as db:
            existing = self._find(db, key)
            check_transition(key, existing.kind if existing else None, op)
            parents: list[Record] = []
            if parent is not None:
                try:
                    parents = self._chain(db, parent)
                except NotFound:
                    raise NotFound(f"snapshot {key!r}: parent {parent!r} not found",
                                   key=key) from None
                if parents[0].kind is not Kind.COMMITTED:
                    raise FailedPrecondition(
                        f"snapshot {key!r}: parent {parent!r} is {parents[0].kind.value},"
                        " not committed", key=key)
            now = self._clock()
            cur = db.execute(
                "INSERT INTO snapshots (key, kind, parent_id, labels, created, updated)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (key, kind.value, parents[0].id if parents else None,
                 json.dumps(dict(labels), sort_keys=True), now, now),
            )
            assert cur.lastrowid is not None
            rec = Record(cur.lastrowid, key, kind, parent, dict(labels), now, now)
            then(rec, parents)
            return rec, parents

    def commit(self, key: str, name: str, labels: Mapping[str, str]) -> Record:
        _check_labels(name, labels)
        with self.transaction() as db:
            rec = self._find(db, key)
            check_transition(key, rec.kind if rec else None, Op.COMMIT)
            assert rec is not None
            if self._find(db, name) is not None:
                raise AlreadyExists(f"snapshot {name!r}: already exists (committing {key!r})",
                                    key=name)
            now = self._clock()
            db.execute(
                "UPDATE snapshots SET key = ?, kind = ?, labels = ?, updated = ? WHERE id = ?",
                (name, Kind.COMMITTED.value, json.dumps(dict(labels), sort_keys=True), now,
                 rec.id),
            )
            return Record(rec.id, name, Kind.COMMITTED, rec.parent, dict(labels), rec.created,
                          now)

    def update(self, key: str, labels: Mapping[str, str | None]) -> Record:
        """Merge LABELS into KEY's (a None value deletes that label)."""
        _check_labels(key, labels)
        with self.transaction() as db:
            rec = self._get(db, key)
            merged = dict(rec.labels)
            for k, v in labels.items():
                if v is None:
                    merged.pop(k, None)
                else:
                    merged[k] = v
            now = self._clock()
            db.execute("UPDATE snapshots SET labels = ?, updated = ? WHERE id = ?",
                       (json.dumps(merged, sort_keys=True), now, rec.id))
            return Record(rec.id, rec.key, rec.kind, rec.parent, merged, rec.created, now)

    def remove(self, key: str, *, then: Callable[[Record], None]) -> Record:
        """Delete KEY (FailedPrecondition while it has children); THEN runs inside."""
        with self.transaction() as db:
            rec = self._find(db, key)
            check_transition(key, rec.kind if rec else None, Op.REMOVE)
            assert rec is not None
            children = [r[0] for r in db.execute(
                "SELECT key FROM snapshots WHERE parent_id = ? ORDER BY key", (rec.id,))]
            if children:
                raise FailedPrecondition(
                    f"snapshot {key!r}: cannot remove, it is the parent of "
                    + ", ".join(repr(c) for c in children), key=key)
            db.execute("DELETE FROM snapshots WHERE id = ?", (rec.id,))
            then(rec)
            return rec


def disk_usage(path: str) -> Usage:
    """Blocks and inodes under PATH (itself included), each inode counted once."""
    seen: set[tuple[int, int]] = set()
    size = 0
    stack = [path]
    while stack:
        p = stack.pop()
        st = os.lstat(p)
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            size += st.st_blocks * 512
        if os.path.isdir(p) and not os.path.islink(p):
            stack.extend(os.path.join(p, n) for n in os.listdir(p))
    return Usage(size, len(seen))


class MetaSnapshotter:
    """A snapshotter made of MetaStore plus one directory per snapshot; subclasses say how
    a new directory is filled (``_populate``) and how a snapshot is mounted (``_mounts``)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self._snapshots = os.path.join(self.root, "snapshots")
        os.makedirs(self._snapshots, mode=0o700, exist_ok=True)
        self._meta = MetaStore(os.path.join(self.root, "metadata.db"))

    def _dir(self, snapshot_id: int) -> str:
        return os.path.join(self._snapshots, str(snapshot_id))

    def fs_dir(self, snapshot_id: int) -> str:
        return os.path.join(self._dir(snapshot_id), "fs")

    # ---- what subclasses provide -----------------------------------------------------------

    def _populate(self, new_dir: str, kind: Kind, parents: list[Record]) -> None:
        raise NotImplementedError

    def _mounts(self, rec: Record, parents: list[Record]) -> list[Mount]:
        raise NotImplementedError

    # ---- the Snapshotter interface ---------------------------------------------------------

    def stat(self, key: str) -> Info:
        return self._meta.get(key).info()

    def update(self, key: str, labels: Mapping[str, str | None]) -> Info:
        return self._meta.update(key, labels).info()

    def usage(self, key: str) -> Usage:
        return disk_usage(self.fs_dir(self._meta.get(key).id))

    def mounts(self, key: str) -> list[Mount]:
        chain = self._meta.chain(key)
        if chain[0].kind is Kind.COMMITTED:
            raise FailedPrecondition(
                f"snapshot {key!r}: committed snapshots have no mounts (view or prepare one)",
                key=key)
        return self._mounts(chain[0], chain[1:])

    def prepare(
        self, key: str, parent: str | None = None, *, labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        return self._create(Kind.ACTIVE, key, parent, labels or {})

    def view(
        self, key: str, parent: str | None = None, *, labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        return self._create(Kind.VIEW, key, parent, labels or {})

    def _create(
        self, kind: Kind, key: str, parent: str | None, labels: Mapping[str, str]
    ) -> list[Mount]:
        check_key(key)
        if parent is not None:
            check_key(parent, "parent")
        tmp = tempfile.mkdtemp(prefix="new-", dir=self._snapshots)

        def install(rec: Record, parents: list[Record]) -> None:
            self._populate(tmp, kind, parents)
            os.chmod(tmp, 0o755)
            os.rename(tmp, self._dir(rec.id))

        try:
            rec, parents = self._meta.create(
                key, parent=parent, kind=kind, labels=labels, then=install
            )
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return self._mounts(rec, parents)

    def commit(self, name: str, key: str, *, labels: Mapping[str, str] | None = None) -> None:
        check_key(name, "name")
        self._meta.commit(key, name, labels or {})

    def remove(self, key: str) -> None:
        doomed: list[str] = []

        def take_away(rec: Record) -> None:
            path = self._dir(rec.id)
            if os.path.exists(path):
                gone = os.path.join(self._snapshots, f"rm-{rec.id}")
                os.rename(path, gone)
                doomed.append(gone)

        self._meta.remove(key, then=take_away)
        for path in doomed:
            shutil.rmtree(path, ignore_errors=True)

    def walk(self) -> Iterator[Info]:
        for rec in self._meta.walk():
            yield rec.info()

    def close(self) -> None:
        self._meta.close()
