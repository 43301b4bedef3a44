"""The snapshotter interface (containerd's ``snapshots.Snapshotter``), its kinds, mounts and
errors. Every implementation passes the conformance suite in tests/.../snapshots/.

Life of a snapshot (TRANSITIONS is the table; ``check_transition`` its guard)::

    (none) ──prepare(key, parent)──► ACTIVE ──commit(name, key)──► COMMITTED (named `name`)
    (none) ──view(key, parent)─────► VIEW                          │
    any ─────remove(key)───────────► (none)   unless it has children (FailedPrecondition)

Only a COMMITTED snapshot can be a parent; only ACTIVE and VIEW snapshots have mounts.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from runtime.oci.linux import MNT_DETACH, MS_BIND, MS_RDONLY, MS_REC, MS_REMOUNT, SYS


class SnapshotError(Exception):
    """Base of every snapshotter error; ``key`` is the snapshot it concerns."""

    def __init__(self, message: str, *, key: str = "") -> None:
        super().__init__(message)
        self.key = key


class NotFound(SnapshotError):
    pass


class AlreadyExists(SnapshotError):
    pass


class FailedPrecondition(SnapshotError):
    pass


class InvalidArgument(SnapshotError, ValueError):
    pass


class Kind(enum.Enum):
    VIEW = "view"
    ACTIVE = "active"
    COMMITTED = "committed"


class Op(enum.Enum):
    PREPARE = "prepare"
    VIEW = "view"
    COMMIT = "commit"
    REMOVE = "remove"


# (the key's current kind, or None if there is no such key, operation) -> the kind after it
TRANSITIONS: Mapping[tuple[Kind | None, Op], Kind | None] = {
    (None, Op.PREPARE): Kind.ACTIVE,
    (None, Op.VIEW): Kind.VIEW,
    (Kind.ACTIVE, Op.COMMIT): Kind.COMMITTED,
    (Kind.ACTIVE, Op.REMOVE): None,
    (Kind.VIEW, Op.REMOVE): None,
    (Kind.COMMITTED, Op.REMOVE): None,
}


def check_transition(key: str, current: Kind | None, op: Op) -> Kind | None:
    """The kind KEY has after OP, or the error that OP on a CURRENT-kind snapshot is."""
    if (current, op) in TRANSITIONS:
        return TRANSITIONS[(current, op)]
    if current is None:
        raise NotFound(f"snapshot {key!r}: not found", key=key)
    if op in (Op.PREPARE, Op.VIEW):
        raise AlreadyExists(f"snapshot {key!r}: already exists ({current.value})", key=key)
    raise FailedPrecondition(
        f"snapshot {key!r}: cannot {op.value} a {current.value} snapshot", key=key
    )


def check_key(key: str, what: str = "key") -> str:
    if not key or "\x00" in key:
        raise InvalidArgument(f"snapshot {what} {key!r}: must be a non-empty string", key=key)
    return key


@dataclass(frozen=True)
class Info:
    name: str
    kind: Kind
    parent: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    created_at: float = 0.0  # seconds since the epoch
    updated_at: float = 0.0


@dataclass(frozen=True)
class Usage:
    size: int  # bytes on disk (st_blocks * 512), each inode counted once
    inodes: int


@dataclass(frozen=True)
class Mount:
    """One mount(2) to make (containerd's ``mount.Mount``): ``bind`` or ``overlay``."""

    type: str
    source: str
    options: Sequence[str] = ()

    def _is_bind(self) -> bool:
        return self.type == "bind" or "bind" in self.options or "rbind" in self.options

    def mount(self, target: str) -> None:
        """Mount this at TARGET (an existing directory)."""
        readonly = "ro" in self.options
        if self._is_bind():
            flags = MS_BIND | (MS_REC if "rbind" in self.options else 0)
            SYS.mount(self.source, target, None, flags)
            if readonly:  # a bind mount takes MS_RDONLY only on a remount
                try:
                    SYS.mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
                except OSError:
                    SYS.umount2(target, MNT_DETACH)
                    raise
            return
        data = [o for o in self.options if o not in ("ro", "rw")]
        SYS.mount(self.source, target, self.type, MS_RDONLY if readonly else 0, ",".join(data))

    def command(self, target: str) -> list[str]:
        """The mount(8) command line that makes the same mount."""
        opts = ",".join(self.options)
        if self._is_bind():
            return ["mount", "-o", opts or "bind", self.source, target]
        return ["mount", "-t", self.type, *(["-o", opts] if opts else []), self.source, target]


def unmount(target: str, *, detach: bool = False) -> None:
    SYS.umount2(target, MNT_DETACH if detach else 0)


def mount_all(mounts: Sequence[Mount], target: str) -> None:
    """Mount MOUNTS at TARGET in order (undone all together by ``unmount_all``)."""
    done = 0
    try:
        for m in mounts:
            m.mount(target)
            done += 1
    except BaseException:
        for _ in range(done):
            unmount(target, detach=True)
        raise


_OCTAL = re.compile(rb"\\([0-7]{3})")


def is_mountpoint(target: str) -> bool:
    """Whether something is mounted at TARGET (mountinfo, so bind mounts of a directory on
    the same filesystem count too)."""
    want = os.path.realpath(target)
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            raw = line.split(b" ", 5)[4]  # spaces and the like as octal escapes: \040
            if os.fsdecode(_OCTAL.sub(lambda m: bytes([int(m[1], 8)]), raw)) == want:
                return True
    return False


def unmount_all(target: str) -> None:
    """Unmount everything stacked on TARGET."""
    while is_mountpoint(target):
        unmount(target)


class Snapshotter(Protocol):
    def stat(self, key: str) -> Info: ...

    def update(self, key: str, labels: Mapping[str, str | None]) -> Info: ...

    def usage(self, key: str) -> Usage: ...

    def mounts(self, key: str) -> list[Mount]: ...

    def prepare(
        self, key: str, parent: str | None = None, *, labels: Mapping[str, str] | None = None
    ) -> list[Mount]: ...

    def view(
        self, key: str, parent: str | None = None, *, labels: Mapping[str, str] | None = None
    ) -> list[Mount]: ...

    def commit(
        self, name: str, key: str, *, labels: Mapping[str, str] | None = None
    ) -> None: ...

    def remove(self, key: str) -> None: ...

    def walk(self) -> Iterator[Info]: ...

    def close(self) -> None: ...


def layer_target(mounts: Sequence[Mount]) -> tuple[str, str]:
    """Where to apply a layer onto an active snapshot, and in which whiteout format:
    an overlay's upperdir ("overlay"), or a bind mount's source, a full tree ("native")."""
    if len(mounts) != 1:
        raise InvalidArgument(f"mounts: want one mount to apply a layer to, got {len(mounts)}")
    m = mounts[0]
    if m.type == "overlay":
        for opt in m.options:
            if opt.startswith("upperdir="):
                return opt[len("upperdir=") :], "overlay"
        raise InvalidArgument("mounts[0].options: an overlay without upperdir is read-only")
    if "ro" in m.options:
        raise InvalidArgument("mounts[0].options: a read-only mount cannot take a layer")
    return m.source, "native"
