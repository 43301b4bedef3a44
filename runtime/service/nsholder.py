"""A pod's IPC and UTS namespaces and its /dev/shm without a pause container: each pinned
by a mount on a file of the sandbox's directory (what CRI-O's ``pinns`` does for
``drop_infra_ctr``).

::

    pin(sid, hostname=H, kinds=("ipc", "uts"))          DIR/<sid>/
      ├ DIR/<sid>/{ipc,uts,shm} made (files, a dir)        ipc  ◄─ bind of the helper's ns
      ├ helper thread: unshare(CLONE_NEWIPC|NEWUTS),       uts  ◄─ bind (hostname H inside)
      │   sethostname(H), bind-mount                        shm  ◄─ tmpfs, mode 1777, 64 MiB
      │   /proc/thread-self/ns/{ipc,uts} onto the files
      │   ── then the thread ends: the mounts alone keep the namespaces
      └ mount tmpfs "shm" on DIR/<sid>/shm                any failure: unpin + remove
    alive(pinned)   every pinned file is still an nsfs mount (statfs), shm still mounted
    unpin(sid)      umount2(MNT_DETACH) each; the files stay (StopPodSandbox)
    remove(sid)     unpin, then delete DIR/<sid> (RemovePodSandbox); idempotent

A thread, not a forked helper: unshare(2) of these namespaces moves the calling thread
only, and forking the threaded daemon is unsafe. The thread is a fresh one and exits when
done, so nothing else ever runs in the namespaces it made; it need not setns back.
Everything is on disk, so a daemon restarted after ``kill -9`` finds the pins as they were.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
from dataclasses import dataclass

from runtime.service.cni import netns as netns_mod

CLONE_NEWIPC = 0x08000000
CLONE_NEWUTS = 0x04000000
CLONE_FLAGS = {"ipc": CLONE_NEWIPC, "uts": CLONE_NEWUTS}
KINDS = ("ipc", "uts")
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND = 0x2, 0x4, 0x8, 0x1000
MNT_DETACH = 0x2
SHM_OPTIONS = "mode=1777,size=65536k"  # containerd's per-sandbox /dev/shm
HOST_NAME_MAX = 64

_libc = netns_mod._libc
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]


class PinError(Exception):
    """A namespace that could not be made, pinned or released; names the sandbox."""


@dataclass(frozen=True)
class Pinned:
    """What pin() made for one sandbox: (kind, file) of each namespace, and the shm dir."""

    namespaces: tuple[tuple[str, str], ...]
    shm: str


def _check(rc: int, what: str) -> None:
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def check_hostname(sandbox: str, hostname: str) -> None:
    raw = hostname.encode()
    if len(raw) > HOST_NAME_MAX:
        raise PinError(f"Sandbox {sandbox}: hostname: longer than {HOST_NAME_MAX} bytes "
                       f"({len(raw)})")
    if "\0" in hostname or "/" in hostname:
        raise PinError(f"Sandbox {sandbox}: hostname: invalid {hostname!r}")


def _unshare_and_pin(files: dict[str, str], hostname: str) -> None:
    """In the calling (fresh) thread: new namespaces of FILES' kinds, pinned on FILES."""
    flags = 0
    for kind in files:
        flags |= CLONE_FLAGS[kind]
    _check(_libc.unshare(flags), "unshare")
    if hostname and "uts" in files:
        raw = hostname.encode()
        _check(_libc.sethostname(raw, len(raw)), "sethostname")
    for kind, path in files.items():
        _check(_libc.mount(f"/proc/thread-self/ns/{kind}".encode(), path.encode(), b"none",
                           MS_BIND, None), f"bind mount of the {kind} namespace onto {path}")


def _umount(path: str) -> None:
    while _libc.umount2(path.encode(), MNT_DETACH) == 0:
        pass  # mounted twice (it should not be): take every layer off
    e = ctypes.get_errno()
    if e not in (errno.EINVAL, errno.ENOENT):
        raise PinError(f"{path}: umount: {os.strerror(e)}")


def is_mounted(path: str) -> bool:
    """PATH is a mount point (its device differs from its parent's): two stats, where
    reading mountinfo would make listing n sandboxes O(n²)."""
    try:
        return os.stat(path).st_dev != os.stat(os.path.dirname(path.rstrip("/"))).st_dev
    except OSError:
        return False


class PinnedNamespaces:
    """sandboxes.NamespaceHolder on the real kernel: pins under DIR/<sandbox id>/."""

    def __init__(self, root: str) -> None:
        self.root = root

    def dir_for(self, sandbox_id: str) -> str:
        if not sandbox_id or "/" in sandbox_id or sandbox_id.startswith("."):
            raise PinError(f"Sandbox {sandbox_id!r}: not a sandbox ID")
        return os.path.join(self.root, sandbox_id)

    def pin(self, sandbox_id: str, *, hostname: str,
            kinds: tuple[str, ...] = KINDS) -> Pinned:
        """New namespaces of KINDS (hostname HOSTNAME set in a new uts; "" keeps the
        daemon's) and a shm tmpfs, each pinned under DIR/SANDBOX_ID."""
        for kind in kinds:
            if kind not in CLONE_FLAGS:
                raise PinError(f"Sandbox {sandbox_id}: namespaces: cannot pin {kind!r}; "
                               f"known: {', '.join(KINDS)}")
        check_hostname(sandbox_id, hostname)
        d = self.dir_for(sandbox_id)
        os.makedirs(d, mode=0o711, exist_ok=True)
        try:
            files = {k: os.path.join(d, k) for k in kinds}
            for path in files.values():
                os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o444))
            if files:
                self._pin_in_thread(sandbox_id, files, hostname)
            shm = os.path.join(d, "shm")
            os.makedirs(shm, mode=0o755, exist_ok=True)
            _check(_libc.mount(b"shm", shm.encode(), b"tmpfs",
                               MS_NOSUID | MS_NODEV | MS_NOEXEC, SHM_OPTIONS.encode()),
                   f"mount of the shm tmpfs on {shm}")
        except BaseException as e:
            try:
                self.remove(sandbox_id)
            except PinError:
                pass
            if isinstance(e, OSError):
                raise PinError(f"Sandbox {sandbox_id}: namespaces: {e.strerror}") from e
            raise
        return Pinned(tuple(files.items()), shm)

    @staticmethod
    def _pin_in_thread(sandbox_id: str, files: dict[str, str], hostname: str) -> None:
        netns_mod.in_fresh_thread(lambda: _unshare_and_pin(files, hostname),
                                  name=f"pin-{sandbox_id[:12]}")

    def alive(self, pinned: Pinned) -> bool:
        """Every namespace file still pins a namespace, and the shm is still mounted."""
        if not all(netns_mod.is_netns(path) for _, path in pinned.namespaces):
            return False
        return not pinned.shm or is_mounted(pinned.shm)

    def unpin(self, sandbox_id: str) -> None:
        """Release the namespaces and the shm (the files stay); a second call is a no-op."""
        d = self.dir_for(sandbox_id)
        for name in ("shm", *KINDS):
            try:
                _umount(os.path.join(d, name))
            except PinError as e:
                raise PinError(f"Sandbox {sandbox_id}: {e}") from None

    def remove(self, sandbox_id: str) -> None:
        """Unpin, then delete the sandbox's directory; a missing one is fine."""
        self.unpin(sandbox_id)
        d = self.dir_for(sandbox_id)
        try:
            shutil.rmtree(d)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise PinError(f"Sandbox {sandbox_id}: remove {d}: {e.strerror}") from None
