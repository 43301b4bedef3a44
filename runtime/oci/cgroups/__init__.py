"""cgroups for corral-runc: one Manager per container, over v1, hybrid or v2 hosts.

    validate(resources)                       value checks before anything exists (checks.py)
    open_manager(container_id, cgroups_path)  /proc/self/mountinfo (read once) -> host.py
        -> Manager(mode, dirs = {hierarchy: directory})
    Manager.create()        mkdir in every hierarchy; v1 cpuset cpus/mems from the parent,
                            v2 controllers enabled in the ancestors' cgroup.subtree_control
    Manager.apply(res)      one Controller per cgroup controller writes its section:
                            v1.py (v1 and hybrid), v2.py, devices.py (v1 lines / v2 eBPF,
                            loaded by bpf.py); all file I/O goes through fs.py
    Manager.add_pid(pid)    cgroup.procs of every hierarchy
    freeze / thaw / kill_all / pids / stats (stats.py) / oom_kill_count / destroy
    to_state() / from_state()  across the separate corral-runc invocations

On hybrid hosts (v1 controllers + cgroup2 at /sys/fs/cgroup/unified) the container also
joins the unified hierarchy, and hugetlb is set there when only cgroup2 offers it. The
systemd cgroup driver is not implemented (see open_manager).
"""

from __future__ import annotations

import errno
import os

from ..errors import SetupError, Unsupported
from .checks import validate
from .fs import FILES, CgroupFiles, Controller, requested
from .host import UNIFIED, cgroup_dirs, read_host

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Manager", "features", "open_manager", "validate"]

SIGKILL = 9
SYSTEMD_RUNNING = "/run/systemd/system"  # sd_booted(3)
DESTROY_TIMEOUT = 1.0  # seconds to wait for exiting processes to leave the cgroup
# Where to list a v1 container's processes: any hierarchy holds them all.
_PIDS_FROM = ("pids", "freezer", "memory", "devices", "cpu", "cpuacct", "name=systemd")


def features() -> dict[str, bool]:
    """The "cgroup" object of the OCI features document: what this runtime implements."""
    return {"v1": True, "v2": True, "systemd": False, "systemdUser": False, "rdma": True}


def open_manager(*, container_id: str, cgroups_path: str | None, systemd: bool = False,
                 root: str = "/sys/fs/cgroup") -> Manager:
    """The Manager of a container's cgroup; reads only mount information (cached).

    cgroups_path "/a/b" is below each hierarchy's root, "a/b" below this process's own
    cgroup (as runc), None or "" is "/<container_id>"."""
    if systemd:
        if not os.path.isdir(SYSTEMD_RUNNING):
            raise Unsupported("--systemd-cgroup", "systemd is not running (no "
                                                  "/run/systemd/system); use the cgroupfs driver")
        raise Unsupported("--systemd-cgroup", "the systemd cgroup driver is not implemented; "
                                              "use the cgroupfs driver")
    host = read_host(root)
    dirs = cgroup_dirs(host, container_id=container_id, cgroups_path=cgroups_path)
    return Manager(mode=host.mode, dirs=dirs,
                   mounts={h.key: h.mountpoint for h in host.hierarchies})


def _first_request(section: Any, keys: tuple[str, ...]) -> str | None:
    """The first setting of `section` that asks for something ("" for a whole list)."""
    if isinstance(section, dict):
        for k in keys or tuple(section):
            if requested(section.get(k)):
                return k
        return None
    return "" if requested(section) else None


class Manager:
    """A container's cgroup: `dirs` maps hierarchy keys ("memory", "cpu,cpuacct",
    "name=systemd", "unified") to its directory in each; `mounts` to their mount points."""

    def __init__(self, *, mode: str, dirs: dict[str, str], mounts: dict[str, str],
                 files: CgroupFiles = FILES) -> None:
        self.mode = mode
        self.dirs = dirs
        self.mounts = mounts
        self.files = files
        self._by_controller = {c: d for key, d in dirs.items() for c in key.split(",")}
        self._unified_controllers: list[str] | None = None

    def __repr__(self) -> str:
        return f"Manager(mode={self.mode!r}, dirs={self.dirs!r})"

    # --- lifecycle ---------------------------------------------------------------------

    def create(self) -> None:
        for d in self.dirs.values():
            try:
                self.files.mkdir(d)
            except OSError as e:
                raise SetupError(f"creating cgroup {d}: {e.strerror}") from None
        if self.mode == "v2":
            from .v2 import enable_controllers
            enable_controllers(self.files, self.mounts[UNIFIED], self.dirs[UNIFIED])
            return
        key = self._key_of("cpuset")
        if key is not None:
            from .v1 import init_cpuset
            try:
                init_cpuset(self.files, self.mounts[key], self.dirs[key])
            except OSError as e:
                raise SetupError(f"initialising cpuset.cpus / cpuset.mems of {self.dirs[key]}: "
                                 f"{e.strerror}") from None

    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self.dirs.values())

    def destroy(self) -> None:
        """rmdir the cgroup (and any child cgroups, deepest first) in every hierarchy,
        retrying for about a second while exiting processes leave it."""
        import time

        pending, delay, deadline = list(self.dirs.values()), 0.002, 0.0
        while True:
            pending = [d for d in pending if not self._remove(d)]
            if not pending:
                return
            now = time.monotonic()
            deadline = deadline or now + DESTROY_TIMEOUT
            if now > deadline:
                left = self._procs(pending[0])
                raise SetupError(f"cannot remove cgroup {pending[0]}: still in use"
                                 + (f" by processes {left}" if left else ""))
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def _remove(self, top: str) -> bool:
        """Remove `top` and its child cgroups; False while the kernel says busy."""
        if self._rmdir(top):
            return True
        return all(self._rmdir(d) for d in self.files.subdirs(top)) and self._rmdir(top)

    def _rmdir(self, d: str) -> bool:
        try:
            self.files.rmdir(d)
        except FileNotFoundError:
            pass
        except OSError as e:
            if e.errno in (errno.EBUSY, errno.ENOTEMPTY):
                return False
            raise SetupError(f"removing cgroup {d}: {e.strerror}") from None
        return True

    # --- resources -----------------------------------------------------------------------

    def apply(self, resources: dict[str, Any], *, field: str = "linux.resources") -> None:
        """Write linux.resources; only the settings present are written (for update)."""
        for cls, path in self._controllers(resources):
            if path is None:
                key = _first_request(resources.get(cls.section), cls.keys)
                if key is not None:
                    raise Unsupported(f"{field}.{cls.section}" + (f".{key}" if key else ""),
                                      cls.absent.format(name=cls.name))
                continue
            cls(self.files, field).apply(resources, path)

    def _controllers(self, resources: dict[str, Any]
                     ) -> list[tuple[type[Controller], str | None]]:
        if self.mode == "v2":
            from . import v2
            d = self.dirs[UNIFIED]
            return [(c, None if c.name in v2.V1_ONLY else d) for c in v2.CONTROLLERS]
        from . import v1
        out: list[tuple[type[Controller], str | None]] = [
            (c, self._by_controller.get(c.name)) for c in v1.CONTROLLERS]
        if resources.get("hugepageLimits") and "hugetlb" not in self._by_controller \
                and self._unified_has("hugetlb"):
            from . import v2
            v2.enable_controllers(self.files, self.mounts[UNIFIED], self.dirs[UNIFIED],
                                  frozenset({"hugetlb"}))
            out = [(v2.HugetlbV2, self.dirs[UNIFIED]) if c is v1.HugetlbV1 else (c, p)
                   for c, p in out]
        if resources.get("unified"):
            from .v2 import Unified
            out.append((Unified, None))
        return out

    def _unified_has(self, controller: str) -> bool:
        if self._unified_controllers is None:
            self._unified_controllers = []
            if UNIFIED in self.mounts:
                try:
                    text = self.files.read(self.mounts[UNIFIED] + "/cgroup.controllers")
                    self._unified_controllers = text.split()
                except OSError:
                    pass
        return controller in self._unified_controllers

    # --- processes -----------------------------------------------------------------------

    def join_self(self, *, hugetlb: bool = False) -> None:
        """Move the calling process, which must be single-threaded, into the cgroup.

        The container's init (and exec's child) call this themselves rather than have the
        parent write their pid to cgroup.procs: on v1 a thread that writes "0" to `tasks`
        moves itself without the kernel's global threadgroup lock, whose synchronize_rcu
        costs ~10 ms per container start. A cgroup2 migration always takes that lock, so
        on hybrid hosts the v2 hierarchy is joined only when it carries a controller we
        use (HUGETLB: hugetlb limits are set); on v2 hosts it is always joined."""
        for key, d in self.dirs.items():
            if key == UNIFIED:
                if self.mode == "hybrid" and not hugetlb:
                    continue
                name = "cgroup.procs"
            else:
                name = "tasks"
            try:
                self.files.write(f"{d}/{name}", "0")
            except OSError as e:
                raise SetupError(f"joining cgroup {d}: {e.strerror}") from None

    def add_pid(self, pid: int) -> None:
        for d in self.dirs.values():
            try:
                self.files.write(d + "/cgroup.procs", str(pid))
            except OSError as e:
                raise SetupError(f"adding process {pid} to cgroup {d}: {e.strerror}") from None

    def pids(self) -> list[int]:
        """Every process in the cgroup and its child cgroups."""
        return self._procs(self._primary())

    def _procs(self, top: str) -> list[int]:
        out: list[int] = []
        for d in (top, *self.files.subdirs(top)):
            try:
                out += [int(p) for p in self.files.read(d + "/cgroup.procs").split()]
            except FileNotFoundError:
                pass
            except OSError as e:
                raise SetupError(f"listing the processes of cgroup {d}: {e.strerror}") from None
        return out

    def _primary(self) -> str:
        if self.mode == "v2":
            return self.dirs[UNIFIED]
        for c in _PIDS_FROM:
            if c in self._by_controller:
                return self._by_controller[c]
        return next(iter(self.dirs.values()))

    def _key_of(self, controller: str) -> str | None:
        return next((k for k in self.dirs if controller in k.split(",")), None)

    def _freezer(self) -> tuple[Any, str] | None:
        if self.mode == "v2":
            from . import v2
            return v2, self.dirs[UNIFIED]
        if "freezer" in self._by_controller:
            from . import v1
            return v1, self._by_controller["freezer"]
        return None

    def freeze(self) -> None:
        mod, path = self._need_freezer()
        try:
            mod.freeze(self.files, path)
        except OSError as e:
            raise SetupError(f"freezing cgroup {path}: {e.strerror}") from None

    def thaw(self) -> None:
        mod, path = self._need_freezer()
        try:
            mod.thaw(self.files, path)
        except OSError as e:
            raise SetupError(f"thawing cgroup {path}: {e.strerror}") from None

    def frozen(self) -> bool:
        f = self._freezer()
        if f is None:
            return False
        try:
            return bool(f[0].frozen(self.files, f[1]))
        except FileNotFoundError:
            return False
        except OSError as e:
            raise SetupError(f"reading the freezer state of {f[1]}: {e.strerror}") from None

    def _need_freezer(self) -> tuple[Any, str]:
        f = self._freezer()
        if f is None:
            raise SetupError("the freezer cgroup controller is not mounted on this host")
        return f

    def kill_all(self, sig: int) -> None:
        """Signal every process. Frozen while signalled (runc's way) so that none can fork
        out of reach; on v2, SIGKILL is one write to cgroup.kill when the kernel has it."""
        if self.mode == "v2" and sig == SIGKILL:
            try:
                self.files.write(self.dirs[UNIFIED] + "/cgroup.kill", "1")
                return
            except FileNotFoundError:
                if not self.exists():
                    return
            except OSError as e:
                raise SetupError(f"killing cgroup {self.dirs[UNIFIED]}: {e.strerror}") from None
        froze = thaw = False
        if self._freezer() is not None:
            # A paused container stays paused, but SIGKILL needs the thaw to take effect.
            thaw = sig == SIGKILL or not self.frozen()
            try:
                self.freeze()
                froze = True
            except SetupError:
                pass  # signal anyway, as runc does
        try:
            for pid in self.pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        finally:
            if froze and thaw:
                self.thaw()

    # --- observation ---------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        from . import stats

        if self.mode == "v2":
            return stats.v2(self.files, self.dirs[UNIFIED])
        hugetlb_v2 = None
        if "hugetlb" not in self._by_controller and self._unified_has("hugetlb"):
            hugetlb_v2 = self.dirs[UNIFIED]
        return stats.v1(self.files, self._by_controller, hugetlb_v2)

    def oom_kill_count(self) -> int:
        path = self.dirs.get(UNIFIED) if self.mode == "v2" else self._by_controller.get("memory")
        if path is None:
            return 0
        from . import v1, v2

        try:
            if self.mode == "v2":
                return v2.oom_kill_count(self.files, path)
            return v1.oom_kill_count(self.files, path)
        except OSError:
            return 0

    # --- persistence ---------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        return {"mode": self.mode, "dirs": dict(self.dirs), "mounts": dict(self.mounts)}

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> Manager:
        mode, dirs, mounts = d.get("mode"), d.get("dirs"), d.get("mounts")
        if (mode not in ("v1", "v2", "hybrid") or not isinstance(dirs, dict)
                or not isinstance(mounts, dict) or not dirs
                or not all(isinstance(v, str) for v in (*dirs.values(), *mounts.values()))):
            raise SetupError(f"malformed cgroup state: {d!r}")
        return cls(mode=mode, dirs=dict(dirs), mounts=dict(mounts))
