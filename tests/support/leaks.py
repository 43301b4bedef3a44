"""The leak check: what one test left behind, found by the test's tag and tmp dir only.

::

    leaks = Leaks(tag, tmp)       at the start: which processes already descend from pytest
    ...the test runs...
    leaks.check() -> problems     at the end: polls (up to GRACE s) for leftovers that are
                                  this test's, then removes them, so that one leak does not
                                  fail every later test

    this test's, and only these:
      mount     its mount point is TMP or under it, or has TAG in its path (corral-runtimed
                in a test keeps root, state and its netns_dir under /tmp/<tag>-rtd-*);
                nsfs mounts (bind-mounted network namespaces) are reported as netns
      netns     an nsfs mount as above, or /run/netns/<name with TAG> (`ip netns add`)
      cgroup    a cgroup dir, in any hierarchy, whose name has TAG
      process   not a zombie, and: TAG in its argv or cgroup, or TAG_ENV=TAG in its
                environment (a harness sets it for the daemons it starts; their shims and
                holders inherit it, and stay tagged after their parent dies), or a
                descendant of this pytest process that was not alive at the start

A leftover of another test, of another test run or of a cluster on the same machine (a
mount with "corral" in its path, /run/corral/netns, /corral cgroups) is never touched.
Deciding is pure (``Owner``); reading /proc and /sys and cleaning up are the thin edges.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

TAG_ENV = "CORRAL_TEST_TAG"
CGROUP_ROOT = "/sys/fs/cgroup"
IP_NETNS_DIR = "/run/netns"
CGROUP_DEPTH = 4  # levels below the root looked into: /sys/fs/cgroup/memory/a/b/c/<found>


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    start: int  # clock ticks after boot: (pid, start) names one process across pid reuse
    zombie: bool
    argv: bytes = b""
    environ: bytes = b""
    cgroup: bytes = b""

    @property
    def key(self) -> tuple[int, int]:
        return (self.pid, self.start)


@dataclass(frozen=True)
class Mount:
    point: str
    fstype: str


@dataclass
class Found:
    processes: dict[int, str] = field(default_factory=dict)  # pid -> command line
    mounts: list[str] = field(default_factory=list)
    netns: list[str] = field(default_factory=list)
    cgroups: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.processes or self.mounts or self.netns or self.cgroups)


@dataclass(frozen=True)
class Owner:
    """Which leftovers belong to the test with TAG and TMP."""

    tag: str
    tmp: str

    def owns_path(self, path: str) -> bool:
        tmp = self.tmp.rstrip("/")
        return path == tmp or path.startswith(tmp + "/") or self.tag in path

    def owns_process(self, p: Proc, *, descendants: set[int],
                     before: set[tuple[int, int]]) -> bool:
        if p.zombie:
            return False
        tag = self.tag.encode()
        if tag in p.argv or tag in p.cgroup:
            return True
        if f"{TAG_ENV}={self.tag}".encode() in p.environ.split(b"\0"):
            return True
        return p.pid in descendants and p.key not in before

    def mounts(self, mounts: Iterable[Mount]) -> tuple[list[str], list[str]]:
        """(plain mounts, netns mounts) of this test, deepest first."""
        plain: set[str] = set()
        ns: set[str] = set()
        for m in mounts:
            if self.owns_path(m.point):
                (ns if m.fstype == "nsfs" else plain).add(m.point)
        return deepest_first(plain), deepest_first(ns)

    def ip_netns(self, names: Iterable[str]) -> list[str]:
        return sorted(os.path.join(IP_NETNS_DIR, n) for n in names if self.tag in n)


def deepest_first(paths: Iterable[str]) -> list[str]:
    return sorted(paths, key=lambda p: (-len(p), p))


def descendants_of(root: int, procs: Iterable[Proc]) -> set[int]:
    """Every pid below ROOT in the parent tree (not ROOT itself)."""
    children: dict[int, list[int]] = {}
    for p in procs:
        children.setdefault(p.ppid, []).append(p.pid)
    found: set[int] = set()
    todo = list(children.get(root, ()))
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo += children.get(pid, ())
    return found


# ---- reading the system ------------------------------------------------------------------

def parse_stat(pid: int, stat: bytes) -> tuple[int, int, bool]:
    """(ppid, start time, zombie) from /proc/PID/stat (comm may hold spaces and ')')."""
    rest = stat[stat.rindex(b")") + 2:].split()
    return int(rest[1]), int(rest[19]), rest[0] == b"Z"


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def read_procs(*, details: bool = True) -> list[Proc]:
    """Every process in /proc; with DETAILS also argv, environ and cgroup."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            ppid, start, zombie = parse_stat(pid, _read(f"/proc/{pid}/stat"))
            if details and not zombie:
                out.append(Proc(pid, ppid, start, zombie, _read(f"/proc/{pid}/cmdline"),
                                _read(f"/proc/{pid}/environ"), _read(f"/proc/{pid}/cgroup")))
            else:
                out.append(Proc(pid, ppid, start, zombie))
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or a kernel thread we may not read
    return out


def unescape(field_: str) -> str:
    """A mountinfo path: spaces, tabs, newlines and backslashes come as \\ooo."""
    if "\\" not in field_:
        return field_
    return field_.encode().decode("unicode_escape").encode("latin-1").decode(errors="replace")


def parse_mountinfo(text: str) -> list[Mount]:
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 7 or "-" not in fields[6:]:
            continue
        sep = fields.index("-", 6)
        mounts.append(Mount(unescape(fields[4]), fields[sep + 1] if sep + 1 < len(fields)
                            else ""))
    return mounts


def read_mounts() -> list[Mount]:
    with open("/proc/self/mountinfo") as f:
        return parse_mountinfo(f.read())


def find_cgroups(tag: str, *, root: str = CGROUP_ROOT) -> list[str]:
    """Cgroup dirs whose name has TAG, in every hierarchy (not below one already found)."""
    found = []
    try:
        tops = os.listdir(root)
    except OSError:
        return []
    for top in tops:
        base = os.path.join(root, top)
        if os.path.islink(base):  # cpu -> cpu,cpuacct: the same hierarchy twice
            continue
        for dirpath, dirnames, _ in os.walk(base):
            keep = []
            for d in dirnames:
                if tag in d:
                    found.append(os.path.join(dirpath, d))
                else:
                    keep.append(d)
            dirnames[:] = keep if dirpath[len(root):].count("/") < CGROUP_DEPTH else []
    return deepest_first(found)


def list_dir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


# ---- the check ---------------------------------------------------------------------------

class Leaks:
    """What a test made that must be gone when it ends."""

    def __init__(self, tag: str, tmp: str, *, grace: float = 5.0) -> None:
        self.owner = Owner(tag, tmp)
        self.tag, self.tmp, self.grace = tag, tmp, grace
        self.pytest_pid = os.getpid()
        procs = read_procs(details=False)
        self.before = {p.key for p in procs if p.pid in descendants_of(self.pytest_pid, procs)}

    def find(self) -> Found:
        procs = read_procs()
        below = descendants_of(self.pytest_pid, procs)
        found = Found()
        for p in procs:
            if p.pid != self.pytest_pid and self.owner.owns_process(
                    p, descendants=below, before=self.before):
                found.processes[p.pid] = p.argv.replace(b"\0", b" ").decode(
                    errors="replace").strip()[:200]
        found.mounts, found.netns = self.owner.mounts(read_mounts())
        found.netns += self.owner.ip_netns(list_dir(IP_NETNS_DIR))
        found.cgroups = find_cgroups(self.tag)
        return found

    def check(self) -> list[str]:
        deadline = time.monotonic() + self.grace
        while True:
            found = self.find()
            if not found or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        problems = []
        if found.processes:
            problems.append("processes left running: " + ", ".join(
                f"{pid} ({cmd})" for pid, cmd in sorted(found.processes.items())))
        if found.mounts:
            problems.append(f"mounts left: {sorted(found.mounts)}")
        if found.cgroups:
            problems.append(f"cgroups left: {sorted(found.cgroups)}")
        if found.netns:
            problems.append(f"network namespaces left: {sorted(found.netns)}")
        if found:
            clean_up(found)
        return problems


def clean_up(found: Found) -> None:
    """Remove what FOUND names: kill the processes, then unmount, then remove cgroups."""
    for pid in found.processes:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 2
    while any(os.path.exists(f"/proc/{pid}") and not _zombie(pid) for pid in found.processes):
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    for path in found.netns:
        if path.startswith(IP_NETNS_DIR + "/"):
            subprocess.run(["ip", "netns", "delete", os.path.basename(path)], check=False,
                           stderr=subprocess.DEVNULL)
    for m in deepest_first([*found.mounts, *found.netns]):
        subprocess.run(["umount", "-l", m], check=False, stderr=subprocess.DEVNULL)
    for c in found.cgroups:
        for dirpath in deepest_first(d for d, _, _ in os.walk(c)):
            for _ in range(50):
                try:
                    os.rmdir(dirpath)  # children first
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


def _zombie(pid: int) -> bool:
    try:
        return parse_stat(pid, _read(f"/proc/{pid}/stat"))[2]
    except (OSError, ValueError, IndexError):
        return True
