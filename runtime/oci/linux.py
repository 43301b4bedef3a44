"""Every Linux system call the runtime makes that `os` does not offer, in one place.

`Syscalls` is the real kernel (libc, through libc.py); `RecordingSyscalls` records the
calls instead of making them, so setup sequences (mounts, namespaces, capabilities) can be
unit-tested without root. Failures raise OSError with errno, like `os` functions do.
"""

from __future__ import annotations

import errno
import os

from . import libc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# clone(2)/unshare(2)/setns(2) namespace flags
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080

# mount(2) flags
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25
MNT_DETACH = 2

# prctl(2)
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

# openat2(2) resolve flags
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

# statfs magic numbers
PROC_SUPER_MAGIC = 0x9FA0
CGROUP2_SUPER_MAGIC = 0x63677270
TMPFS_MAGIC = 0x01021994

_MACHINE = os.uname().machine
# System call numbers glibc has no wrapper for (generic table on arm64/riscv64).
_NR = {
    "x86_64": {"pivot_root": 155, "keyctl": 250, "openat2": 437, "seccomp": 317},
    "aarch64": {"pivot_root": 41, "keyctl": 219, "openat2": 437, "seccomp": 277},
    "riscv64": {"pivot_root": 41, "keyctl": 219, "openat2": 437, "seccomp": 277},
    "ppc64le": {"pivot_root": 203, "keyctl": 288, "openat2": 437, "seccomp": 358},
    "s390x": {"pivot_root": 217, "keyctl": 280, "openat2": 437, "seccomp": 348},
}.get(_MACHINE, {})


def has_syscall(name: str) -> bool:
    """Whether Syscalls knows NAME's number on this machine (for those glibc lacks)."""
    return name in _NR


KEYCTL_JOIN_SESSION_KEYRING = 1
SECCOMP_SET_MODE_FILTER = 1
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _OpenHow(libc.Structure):
    _fields_ = [("flags", libc.c_uint64), ("mode", libc.c_uint64), ("resolve", libc.c_uint64)]


class _CapHeader(libc.Structure):
    _fields_ = [("version", libc.c_uint32), ("pid", libc.c_int)]


class _CapData(libc.Structure):
    _fields_ = [
        ("effective", libc.c_uint32),
        ("permitted", libc.c_uint32),
        ("inheritable", libc.c_uint32),
    ]


_CAP_DATA_PAIR = libc.array(_CapData, 2)  # _LINUX_CAPABILITY_U32S_3


class _SockFprog(libc.Structure):  # struct sock_fprog
    _fields_ = [("len", libc.c_ushort), ("filter", libc.c_void_p)]


class _Libc:
    """libc's functions by attribute, looked up once each (syscall() returns a long)."""

    def __getattr__(self, name: str) -> Any:
        fn = libc.function(name, returns_long=name == "syscall")
        setattr(self, name, fn)
        return fn


_LIBC = _Libc()


def _check(ret: int, what: str, detail: str = "") -> int:
    if ret < 0:
        err = libc.get_errno()
        msg = f"{what}: {os.strerror(err)}"
        raise OSError(err, msg + (f" ({detail})" if detail else ""))
    return ret


def _b(s: str | None) -> bytes | None:
    return None if s is None else os.fsencode(s)


class Syscalls:
    """The real kernel."""

    def mount(self, source: str | None, target: str, fstype: str | None, flags: int,
              data: str | None = None) -> None:
        ret = _LIBC.mount(_b(source), _b(target), _b(fstype), libc.c_ulong(flags), _b(data))
        _check(ret, "mount", f"{source} on {target} type {fstype} flags {flags:#x} data {data!r}")

    def umount2(self, target: str, flags: int = 0) -> None:
        _check(_LIBC.umount2(_b(target), flags), "umount2", target)

    def pivot_root(self, new_root: str, put_old: str) -> None:
        ret = _LIBC.syscall(_NR["pivot_root"], _b(new_root), _b(put_old))
        _check(ret, "pivot_root", new_root)

    def unshare(self, flags: int) -> None:
        _check(_LIBC.unshare(flags), "unshare", f"{flags:#x}")

    def setns(self, fd: int, nstype: int) -> None:
        _check(_LIBC.setns(fd, nstype), "setns", f"type {nstype:#x}")

    def prctl(self, option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
        c = libc.c_ulong
        return _check(_LIBC.prctl(option, c(arg2), c(arg3), c(arg4), c(arg5)), "prctl",
                      f"option {option}")

    def sethostname(self, name: str) -> None:
        b = name.encode()
        _check(_LIBC.sethostname(b, len(b)), "sethostname", name)

    def setdomainname(self, name: str) -> None:
        b = name.encode()
        _check(_LIBC.setdomainname(b, len(b)), "setdomainname", name)

    def openat2(self, dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
        how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
        ret = _LIBC.syscall(_NR["openat2"], dirfd, _b(path), libc.byref(how),
                             libc.sizeof(how))
        return _check(ret, "openat2", path)

    def capset(self, effective: int, permitted: int, inheritable: int) -> None:
        hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
        data = _CAP_DATA_PAIR()
        for i in range(2):
            data[i].effective = (effective >> (32 * i)) & 0xFFFFFFFF
            data[i].permitted = (permitted >> (32 * i)) & 0xFFFFFFFF
            data[i].inheritable = (inheritable >> (32 * i)) & 0xFFFFFFFF
        _check(_LIBC.capset(libc.byref(hdr), data), "capset")

    def personality(self, persona: int) -> None:
        _check(_LIBC.personality(libc.c_ulong(persona)), "personality", f"{persona:#x}")

    def join_session_keyring(self, name: str | None) -> None:
        ret = _LIBC.syscall(_NR["keyctl"], KEYCTL_JOIN_SESSION_KEYRING, _b(name))
        _check(ret, "keyctl(JOIN_SESSION_KEYRING)")


    def seccomp_filter(self, flags: int, code: bytes) -> int:
        """seccomp(SECCOMP_SET_MODE_FILTER, FLAGS, CODE: a struct sock_filter array), or
        prctl(PR_SET_SECCOMP) on a kernel without seccomp(2) when there are no flags."""
        buf = libc.array(libc.c_char, len(code)).from_buffer_copy(code)
        prog = _SockFprog(len(code) // 8, libc.addressof(buf))
        ret = _LIBC.syscall(_NR["seccomp"], SECCOMP_SET_MODE_FILTER, libc.c_ulong(flags),
                            libc.byref(prog))
        if ret < 0 and libc.get_errno() == errno.ENOSYS and not flags:
            ret = _LIBC.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, libc.byref(prog), 0, 0)
        return _check(ret, "seccomp(SECCOMP_SET_MODE_FILTER)", f"flags {flags:#x}")


class RecordingSyscalls(Syscalls):
    """Records every call as a tuple (name, *args) and succeeds; for unit tests."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("_") or name == "calls" or not hasattr(Syscalls, name):
            return object.__getattribute__(self, name)
        calls = object.__getattribute__(self, "calls")

        def record(*args: Any) -> Any:
            calls.append((name, *args))
            return 3 if name == "openat2" else 0

        return record


SYS = Syscalls()


_STATFS_BUF = libc.array(libc.c_char, 256)  # struct statfs is 120 bytes on 64-bit


def fs_type(fd: int) -> int:
    """statfs(2) f_type of the filesystem FD is on (os.statvfs does not report it)."""
    buf = _STATFS_BUF()
    _check(_LIBC.fstatfs(fd, buf), "fstatfs")
    return int.from_bytes(buf.raw[:8], "little", signed=False) & 0xFFFFFFFF
