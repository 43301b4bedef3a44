"""The `cgroup` mount inside a container: /sys/fs/cgroup as the container should see it.

The layout follows the host's, as the container's cgroup manager knows it: cgroup2 alone
on a v2 host; on v1 and hybrid hosts a tmpfs with one directory per hierarchy (named as
on the host, with `cpu` -> `cpu,cpuacct` style links for co-mounted controllers).
With a cgroup namespace each hierarchy is mounted afresh (the kernel shows the
container's cgroup as its root); without one, the container's own cgroup directories
are bind-mounted, so no other cgroup of the host is visible either way."""

from __future__ import annotations

import os

from .linux import MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC, MS_REMOUNT
from .mounts import MountSpec, Rootfs, fdpath

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

UNIFIED = "unified"


def mount_cgroups(root: Rootfs, m: MountSpec, *, cgroup: Any, cgroupns: bool,
                  joined_unified: bool) -> None:
    """Mount the cgroup filesystems for mount M. CGROUP is the container's
    cgroups.Manager (its `mode`, `mounts` and `dirs`); CGROUPNS: the container has a
    cgroup namespace of its own; JOINED_UNIFIED: on a hybrid host, whether the init joined
    the v2 hierarchy (it is only shown then)."""
    sys = root.sys
    flags = m.flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY)
    flags |= MS_NOSUID | MS_NODEV | MS_NOEXEC
    if cgroup.mode == "v2":
        dst = root.mkdir_all(m.dest)
        try:
            _mount_hierarchy(root, dst, m.dest, UNIFIED, cgroup, cgroupns, flags)
        finally:
            os.close(dst)
        return
    top = root.mkdir_all(m.dest)
    try:
        sys.mount("tmpfs", fdpath(top), "tmpfs", flags & ~MS_RDONLY, "mode=755")
    finally:
        os.close(top)
    top = root.open(m.dest)  # the tmpfs just mounted (the old fd is the dir beneath)
    try:
        for key, mountpoint in cgroup.mounts.items():
            if key == UNIFIED and not joined_unified:
                continue
            name = os.path.basename(mountpoint)
            os.mkdir(name, 0o755, dir_fd=top)  # a fresh tmpfs: nothing to resolve
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC,
                         dir_fd=top)
            try:
                _mount_hierarchy(root, fd, f"{m.dest}/{name}", key, cgroup, cgroupns, flags)
            finally:
                os.close(fd)
            if "," in name and not name.startswith("name="):
                for part in name.split(","):
                    os.symlink(name, part, dir_fd=top)
        if flags & MS_RDONLY:
            sys.mount(None, fdpath(top), None, MS_REMOUNT | flags, "mode=755")
    finally:
        os.close(top)


def _mount_hierarchy(root: Rootfs, fd: int, dest: str, key: str, cgroup: Any,
                     cgroupns: bool, flags: int) -> None:
    sys = root.sys
    if cgroupns:
        if key == UNIFIED:
            sys.mount("cgroup2", fdpath(fd), "cgroup2", flags, None)
        else:
            data = f"none,{key}" if key.startswith("name=") else key
            sys.mount("cgroup", fdpath(fd), "cgroup", flags, data)
        return
    sys.mount(cgroup.dirs[key], fdpath(fd), None, MS_BIND | MS_REC, None)
    if flags & MS_RDONLY:
        top = root.open(dest)  # remount the bind mount itself, not the dir beneath
        try:
            sys.mount(None, fdpath(top), None, MS_BIND | MS_REMOUNT | flags, None)
        finally:
            os.close(top)
