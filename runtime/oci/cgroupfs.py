"""The `cgroup` mount inside a container: /sys/fs/cgroup as the container should see it.

With a cgroup namespace the hierarchies are mounted afresh (the kernel shows the
namespace's root); without one, the container's own cgroup directories are bind-mounted.
Layout follows the host: cgroup2 alone on a unified host; a tmpfs with one directory per
v1 hierarchy (plus `unified` for the v2 mount of a hybrid host) otherwise."""

from __future__ import annotations

import os

from .linux import MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC, MS_REMOUNT
from .mounts import MountSpec, Rootfs, fdpath

TYPE_CHECKING = False
if TYPE_CHECKING:
    pass


def host_hierarchies() -> list[tuple[str, str, str, str]]:
    """(mount point, fstype, super options, root) of every cgroup mount on the host."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            fstype, _source, superopts = right.split()[:3]
            if fstype in ("cgroup", "cgroup2"):
                out.append((fields[4], fstype, superopts, fields[3]))
    return out


def own_cgroups() -> dict[str, str]:
    """controller list (as in /proc/self/cgroup, '' for v2) -> our cgroup path."""
    paths = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            paths[ctrls] = path
    return paths


def _v1_key(superopts: str) -> str:
    """The /proc/self/cgroup name of a v1 hierarchy from its mount options."""
    names = []
    for opt in superopts.split(","):
        if opt.startswith("name=") or opt not in ("rw", "ro", "nosuid", "nodev", "noexec", "relatime", "noatime",
                         "xattr", "clone_children", "nsdelegate", "memory_recursiveprot",
                         "cpuset_v2_mode", "noprefix", "favordynmods", "memory_localevents"):
            names.append(opt)
    return ",".join(names)


def mount_cgroups(root: Rootfs, m: MountSpec) -> None:
    new_ns = _in_new_cgroupns()
    flags = (m.flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC)) | MS_NOSUID | MS_NODEV | MS_NOEXEC
    ro = bool(m.flags & MS_RDONLY)
    hier = host_hierarchies()
    own = own_cgroups()
    sys = root.sys
    if len(hier) == 1 and hier[0][1] == "cgroup2":
        _mount_one(root, m.dest, "cgroup2", "", own.get("", "/"), hier[0], new_ns,
                   flags | (MS_RDONLY if ro else 0))
        return
    top = root.mkdir_all(m.dest)
    try:
        sys.mount("tmpfs", fdpath(top), "tmpfs", flags, "mode=755")
    finally:
        os.close(top)
    for h in hier:
        mountpoint, fstype, superopts, _ = h
        name = os.path.basename(mountpoint)
        key = "" if fstype == "cgroup2" else _v1_key(superopts)
        path = own.get(key)
        if path is None:
            continue
        data = key if fstype == "cgroup" else ""
        _mount_one(root, f"{m.dest}/{name}", fstype, data, path, h, new_ns,
                   flags | (MS_RDONLY if ro else 0))
    if ro:
        top = root.open(m.dest)
        try:
            sys.mount(None, fdpath(top), None, MS_REMOUNT | MS_RDONLY | flags, "mode=755")
        finally:
            os.close(top)


def _mount_one(root: Rootfs, dest: str, fstype: str, data: str, path: str,
               h: tuple[str, str, str, str], new_ns: bool, flags: int) -> None:
    sys = root.sys
    fd = root.mkdir_all(dest)
    try:
        if new_ns:
            sys.mount("cgroup", fdpath(fd), fstype, flags, data or None)
            return
        mountpoint, _, _, mroot = h
        rel = os.path.relpath(path, mroot) if mroot != "/" else path.lstrip("/")
        src = os.path.join(mountpoint, rel) if rel not in (".", "") else mountpoint
        sys.mount(src, fdpath(fd), None, MS_BIND | MS_REC, None)
    finally:
        os.close(fd)
    if flags & MS_RDONLY:
        top = root.open(dest)
        try:
            sys.mount(None, fdpath(top), None, MS_BIND | MS_REMOUNT | flags, None)
        finally:
            os.close(top)


def _in_new_cgroupns() -> bool:
    try:
        return os.readlink("/proc/self/ns/cgroup") != os.readlink("/proc/1/ns/cgroup")
    except OSError:
        return False
