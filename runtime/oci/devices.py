"""/dev inside the container: the default device nodes, linux.devices, the symlinks,
and the device cgroup rules that go with them."""

from __future__ import annotations

import os
import stat

from .errors import SetupError
from .linux import MS_BIND, SYS, Syscalls
from .mounts import Rootfs, fdpath

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Created in every container whose /dev the runtime owns (runc's defaults).
DEFAULT_DEVICES: list[dict[str, Any]] = [
    {"path": "/dev/null", "type": "c", "major": 1, "minor": 3},
    {"path": "/dev/zero", "type": "c", "major": 1, "minor": 5},
    {"path": "/dev/full", "type": "c", "major": 1, "minor": 7},
    {"path": "/dev/random", "type": "c", "major": 1, "minor": 8},
    {"path": "/dev/urandom", "type": "c", "major": 1, "minor": 9},
    {"path": "/dev/tty", "type": "c", "major": 5, "minor": 0},
]

# Device cgroup rules always appended (the default devices, ptys, tun), after the
# config's own rules, as runc does.
DEFAULT_RULES: list[dict[str, Any]] = [
    {"allow": True, "type": "c", "major": -1, "minor": -1, "access": "m"},
    {"allow": True, "type": "b", "major": -1, "minor": -1, "access": "m"},
    *({"allow": True, "type": d["type"], "major": d["major"], "minor": d["minor"],
       "access": "rwm"} for d in DEFAULT_DEVICES),
    {"allow": True, "type": "c", "major": 136, "minor": -1, "access": "rwm"},  # /dev/pts/*
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},    # /dev/ptmx
    {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"},  # /dev/net/tun
]

SYMLINKS = (
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
)


def cgroup_rules(config: dict[str, Any]) -> list[dict[str, Any]]:
    linux = config.get("linux") or {}
    rules = list((linux.get("resources") or {}).get("devices") or [])
    for d in linux.get("devices") or []:
        if d["type"] in ("c", "b"):
            rules.append({"allow": True, "type": d["type"], "major": d["major"],
                          "minor": d["minor"], "access": "rwm"})
    if rules:  # a config with no device rules at all keeps the cgroup's defaults
        rules.extend(DEFAULT_RULES)
    return rules


def _dev_type(t: str) -> int:
    return {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[t]


def create_devices(root: Rootfs, config: dict[str, Any], *, bind: bool,
                   sys: Syscalls = SYS) -> None:
    """Make the default devices and linux.devices inside ROOT's /dev.

    BIND: in a user namespace mknod is not allowed; bind-mount the host's nodes instead.
    """
    linux = config.get("linux") or {}
    wanted = {d["path"]: d for d in DEFAULT_DEVICES}
    for d in linux.get("devices") or []:
        wanted[d["path"]] = d
    for path, d in wanted.items():
        try:
            _create(root, path, d, bind=bind, sys=sys)
        except OSError as e:
            raise SetupError(f"linux.devices: creating {path}: {e.strerror}") from None
    dev = root.mkdir_all("/dev")
    try:
        for target, name in SYMLINKS:
            try:
                os.symlink(target, os.path.basename(name), dir_fd=dev)
            except FileExistsError:
                pass
        if os.path.exists("/proc/kcore"):
            try:
                os.symlink("/proc/kcore", "core", dir_fd=dev)
            except FileExistsError:
                pass
    finally:
        os.close(dev)


def _create(root: Rootfs, path: str, d: dict[str, Any], *, bind: bool, sys: Syscalls) -> None:
    parent, name = os.path.split(path)
    pfd = root.mkdir_all(parent)
    try:
        try:
            os.unlink(name, dir_fd=pfd)
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            raise SetupError(f"linux.devices: {path} is a directory in the rootfs") from None
        mode = d.get("fileMode", 0o666) & 0o7777
        if bind:
            os.close(os.open(name, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                             0o644, dir_fd=pfd))
            fd = sys.openat2(pfd, name, os.O_PATH, 0)
            try:
                sys.mount(path, fdpath(fd), None, MS_BIND, None)
            finally:
                os.close(fd)
            return
        rdev = os.makedev(d.get("major", 0), d.get("minor", 0))
        os.mknod(name, mode | _dev_type(d["type"]), rdev, dir_fd=pfd)
        os.chmod(name, mode, dir_fd=pfd)  # mknod's mode is filtered by the umask
        os.chown(name, d.get("uid", 0), d.get("gid", 0), dir_fd=pfd, follow_symlinks=False)
    finally:
        os.close(pfd)
