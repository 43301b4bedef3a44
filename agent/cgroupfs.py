"""The cgroup filesystem, as agent.qos uses it: the hierarchies under a root, found from the
directory tree (cgroup.controllers at the root: v2; else a directory per v1 hierarchy,
plus unified/ on hybrid hosts, where pods get directories but no controller: a hybrid host
is a v1 host to the agent, as to kubelet, and nothing is enabled in unified/), and the few
operations the pod cgroups need.

    Cgroupfs(root, io=, hugepages=)     .mode "v1" | "hybrid" | "v2", .hierarchies,
                                        .page_sizes (the host's huge page sizes when a
                                        hugetlb controller can limit them)
        .ensure_tree([(path, files, who), ...])   nested paths, top down: mkdir the
                                        deepest in every hierarchy (parents too; v1 cpuset
                                        copied down), one walk enabling the v2 controllers
                                        down to it, then each path's files (a value that
                                        already holds is not rewritten)
        .remove(path)  .children(path)  rmdir children first; names of child cgroups
    CgroupIO                            one system call each; unit tests fake the kernel
    host_cgroupfs()                     /sys/fs/cgroup, found once per process
"""

from __future__ import annotations

import errno
import logging
import os
import time
from dataclasses import dataclass

log = logging.getLogger("corral.agent.cgroupfs")

CGROUP_ROOT = "/sys/fs/cgroup"
HUGEPAGES = "/sys/kernel/mm/hugepages"
UNLIMITED_V1 = 1 << 62  # memory.limit_in_bytes at or above: no limit
_V2_CONTROLLERS = ("cpu", "memory")  # enabled on v2 down to every pod cgroup
_RETRIES = 4  # rmdir of a cgroup whose last task is still exiting: ~30 ms

Files = dict[str, dict[str, str]]  # controller -> {control file: value}


class CgroupError(Exception):
    """A pod cgroup cannot be made or written; the message names the pod and the field."""


@dataclass(frozen=True)
class Hierarchy:
    mount: str  # its directory under the cgroup root
    controllers: tuple[str, ...]  # v1: from the directory name; v2: cgroup.controllers
    unified: bool = False


def _holds(current: str, value: str) -> bool:
    """CURRENT (a control file's text) already says VALUE; v1 reads "no limit" (-1) back
    as the largest page multiple."""
    current = current.strip()
    if value == "-1" and current.isdigit():
        return int(current) >= UNLIMITED_V1
    return current == value


def host_page_sizes(path: str = HUGEPAGES) -> tuple[int, ...]:
    """The huge page sizes (bytes) the kernel offers: PATH's hugepages-<n>kB entries."""
    try:
        names = os.listdir(path)
    except OSError:
        return ()
    return tuple(sorted(int(n[10:-2]) * 1024 for n in names
                        if n.startswith("hugepages-") and n.endswith("kB")
                        and n[10:-2].isdigit()))


class CgroupIO:
    """The system calls on cgroupfs, one each; unit tests put a fake tree behind it."""

    def read(self, path: str) -> str:
        """The file's text, "" when it does not exist."""
        try:
            with open(path) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def write(self, path: str, value: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)  # never O_CREAT
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)

    def mkdir(self, path: str) -> None:
        os.mkdir(path, 0o755)

    def rmdir(self, path: str) -> None:
        os.rmdir(path)


class Cgroupfs:
    """The cgroup hierarchies under ROOT and the few operations the agent needs on them."""

    def __init__(self, root: str = CGROUP_ROOT, *, io: CgroupIO | None = None,
                 hugepages: str = HUGEPAGES) -> None:
        self.root = root
        self.io = io or CgroupIO()
        self.mode, self.hierarchies = self._detect()
        held = self.holding("hugetlb")
        # the host's huge page sizes, if a hugetlb controller can limit them
        self.page_sizes = host_page_sizes(hugepages) if self.has("hugetlb") else ()
        self.hugetlb_v2 = bool(held and held.unified)

    def _detect(self) -> tuple[str, list[Hierarchy]]:
        if os.path.exists(os.path.join(self.root, "cgroup.controllers")):
            return "v2", [Hierarchy(self.root, tuple(self.io.read(os.path.join(
                self.root, "cgroup.controllers")).split()), unified=True)]
        found = []
        for name in sorted(os.listdir(self.root)):
            path = os.path.join(self.root, name)
            if os.path.islink(path) or not os.path.isdir(path):
                continue  # cpu -> cpu,cpuacct: the same hierarchy under a second name
            if name == "unified" and os.path.exists(os.path.join(path, "cgroup.controllers")):
                # no controller of hybrid's unified/ is used (kubelet neither): enabling
                # one there is a host-wide change that outlives the agent, and a v1 runtime
                # puts no container's limits in unified/
                found.append(Hierarchy(path, (), unified=True))
            elif os.path.exists(os.path.join(path, "cgroup.procs")):
                found.append(Hierarchy(path, tuple(name.split(","))))
        if not found:
            raise CgroupError(f"cgroups: {self.root}: no cgroup hierarchy is mounted there")
        hybrid = any(h.unified for h in found)
        return ("hybrid" if hybrid else "v1"), found

    def holding(self, controller: str) -> Hierarchy | None:
        """The hierarchy whose files hold CONTROLLER's limits (None: no hierarchy has
        it)."""
        for h in self.hierarchies:
            if (self.mode == "v2" and h.unified) or controller in h.controllers:
                return h
        return None

    def has(self, controller: str) -> bool:
        """CONTROLLER is available: a v1 hierarchy of its own, or in a unified one's
        cgroup.controllers."""
        held = self.holding(controller)
        return held is not None and controller in held.controllers

    def dirs(self, path: str) -> list[str]:
        """PATH's directory in every hierarchy."""
        return [h.mount + path for h in self.hierarchies]

    def ensure(self, path: str, files: Files, *, who: str) -> None:
        """mkdir PATH in every hierarchy (parents too), then write FILES."""
        self.ensure_tree([(path, files, who)])

    def ensure_tree(self, steps: list[tuple[str, Files, str]]) -> None:
        """STEPS: (path, files, who) from the top down, each path below the one before:
        mkdir the last in every hierarchy (its parents too), enable the v2 controllers
        from the root down to it in one walk, then write each step's files in turn."""
        deepest, _, who = steps[-1]
        for h in self.hierarchies:
            self._mkdir(h, h.mount + deepest, who=who)
        for h in self.hierarchies:
            if h.unified:
                want = {c for _, files, _ in steps for c in files
                        if self.holding(c) is h} | set(
                    _V2_CONTROLLERS if self.mode == "v2" else ())
                if want:
                    self._enable(h, deepest, sorted(want), who=who)
        for path, files, who in steps:
            self._write(path, files, who=who)

    def _write(self, path: str, files: Files, *, who: str) -> None:
        for controller, values in files.items():
            held = self.holding(controller)
            if held is None or not self.has(controller):
                raise CgroupError(f"{who}: {controller}: the {controller} cgroup controller "
                                  f"is not mounted under {self.root}")
            for name, value in values.items():
                target = os.path.join(held.mount + path, name)
                if _holds(self.io.read(target), value):
                    continue  # adopted and unchanged: no write
                try:
                    self.io.write(target, value)
                except OSError as e:
                    raise CgroupError(f"{who}: {name}: writing {value!r} to {target}: "
                                      f"{os.strerror(e.errno or 0)}") from None

    def _mkdir(self, h: Hierarchy, d: str, *, who: str) -> None:
        """mkdir D, and its missing parents first (one mkdir when the parent exists, as
        it does for every pod but a tier's first)."""
        try:
            self.io.mkdir(d)
        except FileExistsError:
            return
        except FileNotFoundError:
            if len(d) <= len(h.mount):
                raise CgroupError(f"{who}: cgroup {h.mount}: the hierarchy is gone") from None
            self._mkdir(h, os.path.dirname(d), who=who)
            self._mkdir(h, d, who=who)
            return
        except OSError as e:
            raise CgroupError(f"{who}: cgroup {d}: mkdir: {os.strerror(e.errno or 0)}") from None
        if "cpuset" in h.controllers:  # v1 refuses tasks in a cpuset with none
            parent = os.path.dirname(d)
            for name in ("cpuset.cpus", "cpuset.mems"):
                mine = os.path.join(d, name)
                if os.path.exists(mine) and not self.io.read(mine).strip():
                    try:
                        self.io.write(mine, self.io.read(os.path.join(parent, name)).strip())
                    except OSError as e:
                        raise CgroupError(f"{who}: {name}: copying it from {parent}: "
                                          f"{os.strerror(e.errno or 0)}") from None

    def _enable(self, h: Hierarchy, path: str, want: list[str], *, who: str) -> None:
        """v2 (or hybrid's unified/): WANT on in cgroup.subtree_control from H's root down
        to PATH; cgroup.controllers is read only where one is still off."""
        cur = h.mount
        for part in ["", *path.strip("/").split("/")]:
            cur = os.path.join(cur, part) if part else cur
            on = self.io.read(os.path.join(cur, "cgroup.subtree_control")).split()
            if all(c in on for c in want):
                continue
            have = self.io.read(os.path.join(cur, "cgroup.controllers")).split()
            for c in want:
                if c in have and c not in on:
                    try:
                        self.io.write(os.path.join(cur, "cgroup.subtree_control"), f"+{c}")
                    except OSError as e:
                        raise CgroupError(f"{who}: cgroup {cur}: enabling {c}: "
                                          f"{os.strerror(e.errno or 0)}") from None

    def remove(self, path: str) -> bool:
        """rmdir PATH (children first) in every hierarchy; False if one is still busy."""
        for d in self.dirs(path):
            for sub in [p for p, _, _ in os.walk(d, topdown=False)]:  # deepest first, d last
                if not self._rmdir(sub):
                    log.warning("cgroup %s is busy; removing it later", sub)
                    return False  # held by a process: in every hierarchy alike
        return True

    def _rmdir(self, path: str) -> bool:
        for i in range(_RETRIES):
            try:
                self.io.rmdir(path)
                return True
            except FileNotFoundError:
                return True
            except OSError as e:
                if e.errno != errno.EBUSY or i == _RETRIES - 1:
                    return False
                time.sleep(0.005 * (i + 1))  # a task that is still exiting leaves it soon
        return False

    def children(self, path: str) -> set[str]:
        """Names of the child cgroups of PATH, in any hierarchy."""
        out: set[str] = set()
        for d in self.dirs(path):
            try:
                out.update(e.name for e in os.scandir(d) if e.is_dir(follow_symlinks=False))
            except (FileNotFoundError, NotADirectoryError):
                pass
        return out


_fs: Cgroupfs | None = None


def host_cgroupfs() -> Cgroupfs:
    """The host's hierarchies under /sys/fs/cgroup, found once per process."""
    global _fs
    if _fs is None:
        _fs = Cgroupfs()
    return _fs
