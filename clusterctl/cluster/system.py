"""The thin executors `up` and `down` act through: `ip` for links and namespaces,
processes started in a new session and stopped by PID, mounts, cgroups."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable

from clusterctl.cluster.state import Proc

CGROUP_ROOT = "/sys/fs/cgroup"
NETNS_DIR = "/run/netns"


class ClusterError(RuntimeError):
    """What `cluster up` or `down` could not do: names the command, process or flag."""


def sh(*argv: str, check: bool = True) -> str:
    p = subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       stdin=subprocess.DEVNULL, text=True)
    if check and p.returncode != 0:
        raise ClusterError(f"`{' '.join(argv)}` exited {p.returncode}: {p.stdout.strip()}")
    return p.stdout


def link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


def netns_exists(name: str) -> bool:
    return os.path.exists(os.path.join(NETNS_DIR, name))


def host_addresses() -> list[tuple[str, str]]:
    """(device, address/prefix) of every IPv4 address in this network namespace."""
    out = []
    for line in sh("ip", "-4", "-o", "addr", "show").splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] == "inet":
            out.append((parts[1], parts[3]))
    return out


def in_netns(netns: str, argv: list[str]) -> list[str]:
    """ARGV run in NETNS's network namespace only: the mount namespace stays the host's,
    so the mounts the runtime makes (rootfs, pod netns) are visible to `down`."""
    return ["nsenter", f"--net={os.path.join(NETNS_DIR, netns)}", "--", *argv]


def start_time(pid: int) -> int:
    """Field 22 of /proc/PID/stat (clock ticks since boot), or -1 if PID is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return -1
    return int(data[data.rindex(b")") + 2:].split()[19])


def spawn(argv: list[str], *, log: str, role: str, node: str = "",
          env: dict[str, str] | None = None) -> Proc:
    """Start ARGV in a session of its own (it outlives clusterctl), output to LOG."""
    os.makedirs(os.path.dirname(log), exist_ok=True)
    with open(log, "ab") as out:
        p = subprocess.Popen(argv, stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                             start_new_session=True, env=env)
    return Proc(role=role, node=node, pid=p.pid, start_time=start_time(p.pid), log=log)


def alive(proc: Proc) -> bool:
    """PROC still runs (the same process: a reused PID has another start time)."""
    _reap(proc.pid)
    if start_time(proc.pid) != proc.start_time:
        return False
    with open(f"/proc/{proc.pid}/stat", "rb") as f:
        data = f.read()
    return data[data.rindex(b")") + 2:][:1] != b"Z"


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop(proc: Proc, *, grace: float = 10) -> None:
    """SIGTERM, then SIGKILL after GRACE seconds; nothing if PROC is gone."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        if not alive(proc):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and alive(proc):
            time.sleep(0.05)


def log_tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_for(what: str, check: Callable[[], bool], *, timeout: float, proc: Proc | None = None,
             ) -> None:
    """Poll CHECK until true; fail early if PROC exits, naming it and its log's tail."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if proc is not None and not alive(proc):
            raise ClusterError(f"{proc.role}{' ' + proc.node if proc.node else ''} exited "
                               f"while waiting for {what}; {proc.log}:\n{log_tail(proc.log)}")
        if time.monotonic() > deadline:
            tail = f"; {proc.log}:\n{log_tail(proc.log)}" if proc else ""
            raise ClusterError(f"timed out after {timeout:g}s waiting for {what}{tail}")
        time.sleep(0.1)


def pids_matching(*, needles: list[str], cgroups: list[str]) -> list[int]:
    """Live processes whose command line holds one of NEEDLES or whose cgroup path starts
    with one of CGROUPS (the shims and containers a stopped runtime leaves)."""
    found = []
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{name}/cgroup") as f:
                cg = [line.rstrip("\n").split(":", 2)[-1] for line in f]
        except OSError:
            continue
        if any(n in cmd for n in needles) or any(
                c == parent or c.startswith(parent + "/") for c in cg for parent in cgroups):
            found.append(int(name))
    return found


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(start_time(p) >= 0 for p in pids):
        for p in pids:
            _reap(p)
        time.sleep(0.05)


def mounts_under(path: str) -> list[str]:
    """Mount points at or under PATH, deepest first."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4].encode().decode("unicode_escape") for line in f]
    mine = {p for p in points if p == path or p.startswith(path.rstrip("/") + "/")}
    return sorted(mine, key=len, reverse=True)


def unmount_under(path: str) -> None:
    for _ in range(3):
        points = mounts_under(path)
        if not points:
            return
        for m in points:
            subprocess.run(["umount", "-l", m], check=False, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)


def remove_cgroup(parent: str) -> list[str]:
    """Remove PARENT's cgroup trees (every hierarchy), deepest first; returns what stayed."""
    left = []
    tops = [""] if os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers")) else \
        os.listdir(CGROUP_ROOT)
    for top in tops:
        base = os.path.join(CGROUP_ROOT, top) + parent
        if not os.path.isdir(base):
            continue
        for d in sorted((p for p, _, _ in os.walk(base)), key=len, reverse=True):
            for _ in range(50):
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)
            else:
                left.append(d)
    return left
