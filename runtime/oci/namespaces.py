"""linux.namespaces: which to create, which to join by path, and in what order.

Joining comes first (the user namespace before all others, since it decides what the rest
may do), then one unshare(2) creates the new ones. A new pid namespace only applies to
children, so the caller forks once more after `enter()` when `needs_fork()` says so.
"""

from __future__ import annotations

import os

from .errors import ConfigError
from .linux import (
    CLONE_NEWCGROUP,
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUSER,
    CLONE_NEWUTS,
    PR_SET_DUMPABLE,
    SYS,
    Syscalls,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FLAGS = {
    "user": CLONE_NEWUSER, "ipc": CLONE_NEWIPC, "uts": CLONE_NEWUTS, "network": CLONE_NEWNET,
    "pid": CLONE_NEWPID, "mount": CLONE_NEWNS, "cgroup": CLONE_NEWCGROUP,
}
PROC_NAME = {"user": "user", "ipc": "ipc", "uts": "uts", "network": "net", "pid": "pid",
             "mount": "mnt", "cgroup": "cgroup"}
# setns order: user first; mount last, so the other /proc paths still resolve.
JOIN_ORDER = ("user", "ipc", "uts", "network", "pid", "cgroup", "mount")


class Plan:
    def __init__(self, namespaces: list[dict[str, Any]]) -> None:
        self.new: set[str] = set()
        self.join: dict[str, str] = {}
        for ns in namespaces:
            if ns.get("path"):
                self.join[ns["type"]] = ns["path"]
            else:
                self.new.add(ns["type"])

    def has(self, kind: str) -> bool:
        return kind in self.new or kind in self.join

    def needs_fork(self) -> bool:
        return "pid" in self.new or "pid" in self.join

    def open_joins(self) -> dict[str, int]:
        """Open every namespace to join before entering any (paths are host paths)."""
        fds: dict[str, int] = {}
        try:
            for kind in JOIN_ORDER:
                path = self.join.get(kind)
                if path is None:
                    continue
                try:
                    fds[kind] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except OSError as e:
                    field = f"linux.namespaces[type={kind}].path"
                    raise ConfigError(field, f"cannot open {path}: {e.strerror}") from None
        except BaseException:
            for fd in fds.values():
                os.close(fd)
            raise
        return fds

    def join_all(self, fds: dict[str, int], *, skip_user: bool = True,
                 sys: Syscalls = SYS) -> None:
        for kind in JOIN_ORDER:
            if kind in fds and not (skip_user and kind == "user"):
                try:
                    sys.setns(fds[kind], FLAGS[kind])
                except OSError as e:
                    field = f"linux.namespaces[type={kind}].path"
                    raise ConfigError(field, f"setns {self.join[kind]}: {e.strerror}") from None
                os.close(fds.pop(kind))

    def unshare_flags(self) -> int:
        flags = 0
        for kind in self.new:
            if kind != "user":
                flags |= FLAGS[kind]
        return flags


def fork_into_pid_namespace(join_fd: int | None, *, sys: Syscalls = SYS) -> int:
    """fork() with the child in a new pid namespace (JOIN_FD None) or in the one JOIN_FD
    names, so that the child is in it from its first instruction (PID 1 of a new one) and
    needs no second fork. Our own later children stay in our namespace.

    Only for containers without a new user namespace: a pid namespace must be created
    after the user namespace that owns it, which only the child can do."""
    # Non-dumpable before the fork: the child is in the (maybe shared) pid namespace from
    # its first instruction, before its own prctl, and is still the host's Python.
    sys.prctl(PR_SET_DUMPABLE, 0)
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    pid = -1
    try:
        if join_fd is None:
            sys.unshare(CLONE_NEWPID)
        else:
            sys.setns(join_fd, CLONE_NEWPID)
        pid = os.fork()
        return pid
    finally:
        if pid != 0:  # the parent (or a failed fork): back to our own pid namespace
            sys.setns(own, CLONE_NEWPID)
        os.close(own)


def write_id_maps(pid: int, linux: dict[str, Any]) -> None:
    """Write uid_map/gid_map of PID's new user namespace (from the parent, as root)."""
    def fmt(maps: list[dict[str, int]]) -> str:
        return "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in maps)

    for name, key in (("uid_map", "uidMappings"), ("gid_map", "gidMappings")):
        try:
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(fmt(linux[key]))
        except OSError as e:
            raise ConfigError(f"linux.{key}", f"writing {name}: {e.strerror}") from None
