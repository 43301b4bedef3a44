"""The container's filesystem: mounts, pivot_root, masked and read-only paths.

Every path inside the rootfs is resolved by the kernel with openat2(RESOLVE_IN_ROOT), so
a symlink in the image (`/proc -> /`) is followed as if the rootfs were `/` and can never
lead a mount outside it (the runc CVE-2021-30465 class). The resolved target is then
mounted on through its /proc/self/fd/N link, so nothing can be swapped in between.

    prepare_root()                     make / private (or as rootfsPropagation says)
    mount_all()                        config mounts, in order
    pivot()                            pivot_root into the rootfs, drop the old root
    mask_paths() / readonly_paths()    after pivot
"""

from __future__ import annotations

import os
import stat

from .errors import ConfigError, SetupError, Unsupported
from .linux import (
    MNT_DETACH,
    MS_BIND,
    MS_DIRSYNC,
    MS_LAZYTIME,
    MS_MANDLOCK,
    MS_NOATIME,
    MS_NODEV,
    MS_NODIRATIME,
    MS_NOEXEC,
    MS_NOSUID,
    MS_NOSYMFOLLOW,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_RELATIME,
    MS_REMOUNT,
    MS_SHARED,
    MS_SILENT,
    MS_SLAVE,
    MS_STRICTATIME,
    MS_SYNCHRONOUS,
    MS_UNBINDABLE,
    RESOLVE_IN_ROOT,
    RESOLVE_NO_MAGICLINKS,
    SYS,
    Syscalls,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# option -> (set?, flag)
FLAGS: dict[str, tuple[bool, int]] = {
    "async": (False, MS_SYNCHRONOUS), "atime": (False, MS_NOATIME), "bind": (True, MS_BIND),
    "defaults": (False, 0), "dev": (False, MS_NODEV), "diratime": (False, MS_NODIRATIME),
    "dirsync": (True, MS_DIRSYNC), "exec": (False, MS_NOEXEC), "lazytime": (True, MS_LAZYTIME),
    "nolazytime": (False, MS_LAZYTIME), "loud": (False, MS_SILENT), "mand": (True, MS_MANDLOCK),
    "nomand": (False, MS_MANDLOCK), "noatime": (True, MS_NOATIME), "nodev": (True, MS_NODEV),
    "nodiratime": (True, MS_NODIRATIME), "noexec": (True, MS_NOEXEC),
    "norelatime": (False, MS_RELATIME), "nostrictatime": (False, MS_STRICTATIME),
    "nosuid": (True, MS_NOSUID), "nosymfollow": (True, MS_NOSYMFOLLOW),
    "rbind": (True, MS_BIND | MS_REC), "relatime": (True, MS_RELATIME),
    "ro": (True, MS_RDONLY), "rw": (False, MS_RDONLY), "silent": (True, MS_SILENT),
    "strictatime": (True, MS_STRICTATIME), "suid": (False, MS_NOSUID),
    "symfollow": (False, MS_NOSYMFOLLOW), "sync": (True, MS_SYNCHRONOUS),
}
PROPAGATION = {
    "private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC, "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC, "slave": MS_SLAVE, "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE, "runbindable": MS_UNBINDABLE | MS_REC,
}
# Options the spec knows that we do not implement (yet): an error naming them.
UNSUPPORTED_OPTIONS = {
    "idmap": "id-mapped mounts", "ridmap": "id-mapped mounts",
    **{f"r{o}": "recursive mount attributes (mount_setattr)" for o in (
        "ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec", "nodiratime",
        "diratime", "relatime", "norelatime", "noatime", "atime", "strictatime",
        "nostrictatime", "nosymfollow", "symfollow")},
}
# Mount options that are ours to act on, not the filesystem's.
EXTENSIONS = ("tmpcopyup", "notmpcopyup", "copy-symlink", "remount")

RESOLVE = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS


class MountSpec:
    """One entry of config.mounts, parsed."""

    __slots__ = ("data", "dest", "field", "flags", "fstype", "is_bind", "propagation",
                 "source", "tmpcopyup")

    def __init__(self, m: dict[str, Any], field: str) -> None:
        self.field = field
        self.dest = m["destination"]
        self.source = m.get("source") or ""
        self.fstype = m.get("type") or ""
        self.flags = 0
        self.propagation: list[int] = []
        self.tmpcopyup = False
        data: list[str] = []
        for i, opt in enumerate(m.get("options") or []):
            if opt in FLAGS:
                on, flag = FLAGS[opt]
                self.flags = (self.flags | flag) if on else (self.flags & ~flag)
            elif opt in PROPAGATION:
                self.propagation.append(PROPAGATION[opt])
            elif opt in UNSUPPORTED_OPTIONS:
                raise Unsupported(f"{field}.options[{i}]",
                                  f"{opt!r}: {UNSUPPORTED_OPTIONS[opt]} are not supported")
            elif opt == "tmpcopyup":
                self.tmpcopyup = True
            elif opt in EXTENSIONS:
                pass
            else:
                data.append(opt)
        self.is_bind = bool(self.flags & MS_BIND) or self.fstype == "bind"
        if self.is_bind:
            self.flags |= MS_BIND
            if not self.source:
                raise ConfigError(f"{field}.source", "a bind mount needs a source")
        elif not self.fstype:
            raise ConfigError(f"{field}.type", "required for a mount that is not a bind mount")
        self.data = ",".join(data)


def parse(mounts: list[dict[str, Any]]) -> list[MountSpec]:
    return [MountSpec(m, f"mounts[{i}]") for i, m in enumerate(mounts)]


def fdpath(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


class Rootfs:
    """The rootfs being assembled, held by an O_PATH fd."""

    def __init__(self, path: str, *, sys: Syscalls = SYS, cgroup: Any = None,
                 cgroupns: bool = False, joined_unified: bool = False) -> None:
        self.path = path
        self.sys = sys
        # What a `cgroup` mount needs to know (see cgroupfs.py).
        self.cgroup = cgroup
        self.cgroupns = cgroupns
        self.joined_unified = joined_unified
        self.fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self) -> None:
        os.close(self.fd)

    # -- resolution inside the root --------------------------------------------------

    def open(self, path: str, flags: int = os.O_PATH) -> int:
        return self.sys.openat2(self.fd, path, flags, RESOLVE)

    def mkdir_all(self, path: str, mode: int = 0o755) -> int:
        """mkdir -p PATH inside the root; returns an O_PATH fd of the directory."""
        try:
            return self.open(path, os.O_PATH | os.O_DIRECTORY)
        except FileNotFoundError:
            pass
        parent, name = os.path.split(os.path.normpath("/" + path))
        if not name:
            return self.open("/", os.O_PATH | os.O_DIRECTORY)
        pfd = self.mkdir_all(parent, mode)
        try:
            try:
                os.mkdir(name, mode, dir_fd=pfd)
            except FileExistsError:
                pass
            return self.sys.openat2(pfd, name, os.O_PATH | os.O_DIRECTORY, RESOLVE)
        finally:
            os.close(pfd)

    def make_file(self, path: str, mode: int = 0o644) -> int:
        """Create PATH (and its parents) as an empty file if missing; O_PATH fd of it."""
        try:
            return self.open(path, os.O_PATH)
        except FileNotFoundError:
            pass
        parent, name = os.path.split(os.path.normpath("/" + path))
        pfd = self.mkdir_all(parent)
        try:
            try:
                os.close(os.open(name, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                 mode, dir_fd=pfd))
            except FileExistsError:
                pass
            return self.sys.openat2(pfd, name, os.O_PATH, RESOLVE)
        finally:
            os.close(pfd)

    # -- mounting ---------------------------------------------------------------------

    def mount(self, m: MountSpec) -> None:
        if m.fstype in ("cgroup", "cgroup2"):
            if self.cgroup is None:
                raise SetupError(f"{m.field}: a cgroup mount needs the container's cgroup")
            from .cgroupfs import mount_cgroups
            try:
                mount_cgroups(self, m, cgroup=self.cgroup, cgroupns=self.cgroupns,
                              joined_unified=self.joined_unified)
            except OSError as e:
                raise SetupError(f"{m.field}: mounting cgroups on {m.dest}: "
                                 f"{e.strerror}") from None
            return
        try:
            src_fd = -1
            if m.is_bind:
                try:
                    src_fd = os.open(m.source, os.O_PATH | os.O_CLOEXEC)
                except OSError as e:
                    raise ConfigError(f"{m.field}.source",
                                      f"bind source {m.source}: {e.strerror}") from None
                is_dir = stat.S_ISDIR(os.fstat(src_fd).st_mode)
                dst_fd = self.mkdir_all(m.dest) if is_dir else self.make_file(m.dest)
            else:
                dst_fd = self.mkdir_all(m.dest)
            try:
                self._mount_at(m, src_fd, dst_fd)
            finally:
                os.close(dst_fd)
                if src_fd >= 0:
                    os.close(src_fd)
        except OSError as e:
            raise SetupError(f"{m.field}: mounting {m.source or m.fstype} on {m.dest}: "
                             f"{e.strerror}") from None

    def _mount_at(self, m: MountSpec, src_fd: int, dst_fd: int) -> None:
        target = fdpath(dst_fd)
        if m.is_bind:
            self.sys.mount(fdpath(src_fd), target, None, m.flags & (MS_BIND | MS_REC), None)
        elif m.tmpcopyup and m.fstype == "tmpfs":
            self._tmpcopyup(m, dst_fd)
        else:
            self.sys.mount(m.source or m.fstype, target, m.fstype, m.flags & ~MS_REC,
                           m.data or None)
        extra = m.flags & ~(MS_BIND | MS_REC)
        if not (m.propagation or (m.is_bind and extra)):
            return
        # DST_FD still names the directory *under* the new mount: reopen to reach it.
        top = self.open(m.dest)
        try:
            if m.is_bind and extra:
                self.remount_bind(fdpath(top), extra)
            for p in m.propagation:
                self.sys.mount(None, fdpath(top), None, p, None)
        finally:
            os.close(top)

    def remount_bind(self, target: str, flags: int) -> None:
        try:
            self.sys.mount(None, target, None, MS_BIND | MS_REMOUNT | flags, None)
        except PermissionError:
            # Flags locked on the source (nosuid, nodev, noexec in a user namespace) must be
            # kept when remounting: add what the mount has now and try again.
            st = os.statvfs(target)
            keep = 0
            for bit, flag in ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV),
                              (os.ST_NOEXEC, MS_NOEXEC), (os.ST_RDONLY, MS_RDONLY)):
                if st.f_flag & bit:
                    keep |= flag
            self.sys.mount(None, target, None, MS_BIND | MS_REMOUNT | flags | keep, None)

    def _tmpcopyup(self, m: MountSpec, dst_fd: int) -> None:
        # Mount the tmpfs elsewhere, copy what the image had at the destination, move it.
        import shutil
        import tempfile
        under = fdpath(dst_fd)
        with tempfile.TemporaryDirectory(prefix="corral-tmpcopyup-") as tmp:
            self.sys.mount(m.source or "tmpfs", tmp, "tmpfs", m.flags, m.data or None)
            try:
                for name in os.listdir(under):
                    s = os.path.join(under, name)
                    d = os.path.join(tmp, name)
                    if os.path.isdir(s) and not os.path.islink(s):
                        shutil.copytree(s, d, symlinks=True)
                    else:
                        shutil.copy2(s, d, follow_symlinks=False)
                from .linux import MS_MOVE
                self.sys.mount(tmp, under, None, MS_MOVE, None)
            except BaseException:
                self.sys.umount2(tmp, MNT_DETACH)
                raise


def prepare_root(rootfs: str, propagation: str | None, *, sys: Syscalls = SYS) -> None:
    """Stop mount events leaking to the host, then make the rootfs a mount point."""
    flag = PROPAGATION.get(propagation or "", MS_SLAVE | MS_REC)
    sys.mount(None, "/", None, flag, None)
    sys.mount(rootfs, rootfs, "bind", MS_BIND | MS_REC, None)
    if propagation in ("shared", "rshared"):
        sys.mount(None, rootfs, None, MS_SHARED, None)
    elif propagation not in ("slave", "rslave", "unbindable", "runbindable"):
        # The parent of the rootfs must not be shared for pivot_root to work.
        sys.mount(None, rootfs, None, MS_PRIVATE, None)


def pivot(rootfs: str, *, sys: Syscalls = SYS) -> None:
    """pivot_root(".", ".") into ROOTFS and detach the old root stacked beneath it."""
    old = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    new = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchdir(new)
        sys.pivot_root(".", ".")
        os.fchdir(old)
        # The old root is now mounted over the new one; make sure unmounting it cannot
        # propagate to the host, then detach it.
        sys.mount(None, ".", None, MS_SLAVE | MS_REC, None)
        sys.umount2(".", MNT_DETACH)
        os.chdir("/")
    finally:
        os.close(old)
        os.close(new)


def move_root(rootfs: str, *, sys: Syscalls = SYS) -> None:
    """--no-pivot: move the rootfs onto / and chroot (for ramfs roots)."""
    from .linux import MS_MOVE
    os.chdir(rootfs)
    sys.mount(rootfs, "/", None, MS_MOVE, None)
    os.chroot(".")
    os.chdir("/")


def readonly_root(*, sys: Syscalls = SYS) -> None:
    sys.mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY, None)
    st = os.statvfs("/")
    if not st.f_flag & os.ST_RDONLY:
        raise SetupError("root.readonly: remounting / read-only did not take effect")


def mask_paths(paths: list[str], devnull_fd: int, *, sys: Syscalls = SYS) -> None:
    """Hide PATHS: /dev/null over files, an empty read-only tmpfs over directories.

    DEVNULL_FD is the container's /dev/null, opened without following links and checked
    to be the null device, so an image that replaces /dev/null with a link to something
    else cannot turn the mask into a bind mount of that (CVE-2025-31133)."""
    for p in paths:
        try:
            fd = os.open(p, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise SetupError(f"linux.maskedPaths: {p}: {e.strerror}") from None
        try:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                sys.mount("tmpfs", fdpath(fd), "tmpfs", MS_RDONLY, "size=0k,mode=0555")
            else:
                sys.mount(fdpath(devnull_fd), fdpath(fd), None, MS_BIND, None)
        finally:
            os.close(fd)


def readonly_paths(paths: list[str], *, sys: Syscalls = SYS) -> None:
    for p in paths:
        try:
            fd = os.open(p, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            sys.mount(fdpath(fd), fdpath(fd), None, MS_BIND | MS_REC, None)
        finally:
            os.close(fd)
        # Reopen: the old fd names the directory under the new bind mount.
        fd = os.open(p, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            sys.mount(None, fdpath(fd), None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC, None)
        finally:
            os.close(fd)


def open_devnull() -> int:
    """/dev/null (in the container, after pivot_root), verified to be the real character
    device 1:3 and not a link."""
    try:
        fd = os.open("/dev/null", os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise SetupError(f"linux.maskedPaths: /dev/null: {e.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISCHR(st.st_mode) or os.major(st.st_rdev) != 1 or os.minor(st.st_rdev) != 3:
        os.close(fd)
        raise SetupError("linux.maskedPaths: /dev/null in the container is not the null "
                         "device; refusing to mask paths with it")
    return fd
