"""Persistent network namespaces: files under a directory we own, each a bind mount of a
namespace, as ``ip netns add`` makes them (default root ``/run/corral/netns``).

    create(name)  open ROOT/NAME (O_EXCL) ── a fresh thread: unshare(CLONE_NEWNET) (only that
                  thread moves), bring ``lo`` up (loopback_up=True), bind-mount
                  /proc/thread-self/ns/net onto the file, setns back
                  ── the namespace lives on as long as the mount does
    remove(name)  umount2(MNT_DETACH) + unlink; idempotent
    is_netns(p)   statfs(P) is nsfs: the file still pins a namespace (a file left behind
                  after its mount went is not one, and CNI DEL must not be given it)

A thread rather than a forked helper: unshare(CLONE_NEWNET) applies to the calling thread
only, and forking a threaded daemon is unsafe. Nothing here needs more than the syscalls.

``lo`` comes up here, as podman's netavark and Docker bring it up themselves: one ioctl on
a socket made inside the namespace, where the CNI ``loopback`` plugin costs an exec of a
Go binary per pod (~6 CPU-ms). A conflist that still chains ``loopback`` works as before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import re
import socket
import struct
import threading
from collections.abc import Callable

from runtime.service.cni.errors import NetnsError

DEFAULT_ROOT = "/run/corral/netns"
CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MNT_DETACH = 0x2
NSFS_MAGIC = 0x6E736673
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]{0,252}$")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_void_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.statfs.argtypes = [ctypes.c_char_p, ctypes.c_void_p]


class _Statfs(ctypes.Structure):
    # f_type leads struct statfs on every Linux ABI; the rest is room for the other fields
    _fields_ = [("f_type", ctypes.c_long), ("_rest", ctypes.c_byte * 256)]


def _check(rc: int, what: str) -> None:
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def path_for(name: str, *, root: str = DEFAULT_ROOT) -> str:
    if not _NAME.match(name):
        raise NetnsError(f"network namespace {name!r}: name must be letters, digits, '_', '.' "
                         "or '-', starting with a letter or digit")
    return os.path.join(root, name)


def loopback_up() -> None:
    """Set ``lo`` up in the calling thread's network namespace (SIOCSIFFLAGS)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        got = fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sH", b"lo", 0))
        flags = struct.unpack_from("16sH", got)[1]
        if not flags & IFF_UP:
            fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | IFF_UP))


def _mount_new_netns(target: str, *, lo_up: bool) -> None:
    """In the calling thread: a new netns (``lo`` up when LO_UP), bind-mounted onto TARGET,
    then back to ours."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        try:
            if lo_up:
                loopback_up()
            _check(_libc.mount(b"/proc/thread-self/ns/net", target.encode(), b"none", MS_BIND,
                               None), f"bind mount onto {target}")
        finally:
            _check(_libc.setns(own, CLONE_NEWNET), "setns back to our network namespace")
    finally:
        os.close(own)


def create(name: str, *, root: str = DEFAULT_ROOT, lo_up: bool = True) -> str:
    """A new network namespace pinned at ROOT/NAME, its ``lo`` up unless LO_UP is false
    (as ``ip netns add`` leaves it); returns the path (CNI_NETNS)."""
    path = path_for(name, root=root)
    os.makedirs(root, mode=0o755, exist_ok=True)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0)
    except FileExistsError:
        raise NetnsError(f"network namespace {name}: {path} already exists") from None
    os.close(fd)
    try:
        in_fresh_thread(lambda: _mount_new_netns(path, lo_up=lo_up), name=f"netns-{name}")
    except Exception as e:
        try:
            os.unlink(path)
        except OSError:
            pass
        raise NetnsError(f"network namespace {name}: {e}") from e
    return path


def in_fresh_thread(work: Callable[[], None], *, name: str) -> None:
    """Run WORK in a new thread and re-raise its exception here. unshare(2) of a
    namespace moves only the calling thread, so a thread made for it, ending with it,
    leaves every other thread (and forking the threaded daemon) out of it."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as e:
            failure.append(e)

    t = threading.Thread(target=run, name=name)
    t.start()
    t.join()
    if failure:
        raise failure[0]


def is_mounted(path: str) -> bool:
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == real for line in f)


def is_netns(path: str) -> bool:
    """PATH names a live network namespace (a bind-mounted file or /proc/<pid>/ns/net)."""
    buf = _Statfs()
    if _libc.statfs(path.encode(), ctypes.byref(buf)) != 0:
        return False  # gone (ENOENT), or not ours to look at: either way not usable
    return (int(buf.f_type) & 0xFFFFFFFF) == NSFS_MAGIC


def remove(path: str) -> None:
    """Unmount and delete a namespace file made by create(); a missing one is fine."""
    while True:  # a path mounted more than once (it should not be) comes off layer by layer
        if _libc.umount2(path.encode(), MNT_DETACH) != 0:
            e = ctypes.get_errno()
            if e in (errno.EINVAL, errno.ENOENT):
                break
            raise NetnsError(f"network namespace {path}: umount: {os.strerror(e)}")
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise NetnsError(f"network namespace {path}: unlink: {e.strerror}") from None


def list_names(*, root: str = DEFAULT_ROOT) -> list[str]:
    try:
        return sorted(n for n in os.listdir(root) if _NAME.match(n))
    except FileNotFoundError:
        return []
