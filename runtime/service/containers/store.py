"""Container metadata in sqlite3: one table, keyed by (namespace, id).

Rows decode (labels and spec are JSON) once per version: a decoded Container is kept by
(namespace, id) with the updated_at it was read at, so listing n containers (CRI's
ListContainers, every relist of the agent) decodes only the rows that changed since. The
Containers handed out are shared: callers never mutate their labels or spec (they build
new dicts and call update()).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS containers (
    namespace  TEXT NOT NULL,
    id         TEXT NOT NULL,
    image      TEXT NOT NULL,
    runtime    TEXT NOT NULL,
    snapshot   TEXT NOT NULL,
    labels     TEXT NOT NULL,
    spec       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, id)
)
"""


class ContainerError(Exception):
    pass


class NotFound(ContainerError):
    pass


class AlreadyExists(ContainerError):
    pass


@dataclass(frozen=True)
class Container:
    namespace: str
    id: str
    image: str = ""
    runtime: str = "corral-runc"
    snapshot: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)
    created_at_ns: int = 0
    updated_at_ns: int = 0


def _check_name(kind: str, value: str) -> None:
    if not value or len(value) > 253 or "/" in value or value.strip() != value:
        raise ValueError(f"Container {value!r}: {kind}: must be 1-253 characters without "
                         f"'/' or surrounding spaces")


class ContainerStore:
    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        # (namespace, id) -> (created_at, updated_at, decoded row)
        self._decoded: dict[tuple[str, str], tuple[int, int, Container]] = {}
        with self._db() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30)
            # WAL + NORMAL: a commit survives a crash of the daemon without an fsync (one
            # less per container create, update and remove); only a crash of the machine
            # may lose the last commits, and it ends every container they describe.
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    def _row(self, row: tuple[Any, ...]) -> Container:
        ns, cid, image, runtime, snapshot, labels, spec, created, updated = row
        known = self._decoded.get((ns, cid))
        if known is not None and known[0] == created and known[1] == updated:
            return known[2]
        c = Container(namespace=ns, id=cid, image=image, runtime=runtime, snapshot=snapshot,
                      labels=json.loads(labels), spec=json.loads(spec),
                      created_at_ns=created, updated_at_ns=updated)
        self._decoded[(ns, cid)] = (created, updated, c)
        return c

    def create(self, c: Container) -> Container:
        _check_name("namespace", c.namespace)
        _check_name("id", c.id)
        now = time.time_ns()
        c = replace(c, created_at_ns=now, updated_at_ns=now)
        try:
            with self._db() as db:
                db.execute("INSERT INTO containers VALUES (?,?,?,?,?,?,?,?,?)",
                           (c.namespace, c.id, c.image, c.runtime, c.snapshot,
                            json.dumps(c.labels, sort_keys=True), json.dumps(c.spec),
                            now, now))
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"Container {c.namespace}/{c.id}: already exists") from None
        return c

    def get(self, namespace: str, cid: str) -> Container:
        row = self._db().execute(
            "SELECT * FROM containers WHERE namespace=? AND id=?", (namespace, cid)).fetchone()
        if row is None:
            raise NotFound(f"Container {namespace}/{cid}: not found")
        return self._row(row)

    def list(self, namespace: str, *, labels: dict[str, str] | None = None) -> list[Container]:
        rows = self._db().execute(
            "SELECT * FROM containers WHERE namespace=? ORDER BY created_at, id",
            (namespace,)).fetchall()
        out = [self._row(r) for r in rows]
        if labels:
            out = [c for c in out if all(c.labels.get(k) == v for k, v in labels.items())]
        return out

    def update(self, namespace: str, cid: str, *, labels: dict[str, str] | None = None,
               spec: dict[str, Any] | None = None, image: str | None = None) -> Container:
        with self._db() as db:
            old = self.get(namespace, cid)
            new = replace(old, labels=old.labels if labels is None else labels,
                          spec=old.spec if spec is None else spec,
                          image=old.image if image is None else image,
                          updated_at_ns=max(time.time_ns(), old.updated_at_ns + 1))
            db.execute("UPDATE containers SET image=?, labels=?, spec=?, updated_at=? "
                       "WHERE namespace=? AND id=?",
                       (new.image, json.dumps(new.labels, sort_keys=True),
                        json.dumps(new.spec), new.updated_at_ns, namespace, cid))
        return new

    def delete(self, namespace: str, cid: str) -> None:
        with self._db() as db:
            cur = db.execute("DELETE FROM containers WHERE namespace=? AND id=?",
                             (namespace, cid))
        self._decoded.pop((namespace, cid), None)
        if cur.rowcount == 0:
            raise NotFound(f"Container {namespace}/{cid}: not found")
