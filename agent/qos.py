"""Pod and QoS cgroups: the node-level hierarchy kubelet's cgroupfs driver builds, so that a
pod's summed limits hold whatever its containers do.

    <parent>/                    the agent's --cgroup-parent (kubelet's "kubepods")
        pod<uid>/                Guaranteed pods
        burstable/pod<uid>/      tier: cpu shares = its pods' requests (update_burstable_tier)
        besteffort/pod<uid>/     tier: cpu.shares 2 (v1) / cpu.weight 1 (v2)
            <container id>/      made by the runtime: the sandbox's cgroup_parent is pod<uid>

    pure      tier(pod) -> "" | "burstable" | "besteffort"        (status.qos_class)
              pod_cgroup(pod, parent) -> "/parent/burstable/pod<uid>"
              pod_resources(pod) -> PodResources(shares, quota, period, memory)
              pod_files(res, mode) -> {controller: {file: value}}     v1 / v2 names
    I/O       Cgroupfs(root): mkdir (v1 cpuset copied down, v2 controllers enabled in the
              ancestors), write, rmdir children first; one directory per hierarchy
    worker    ensure_pod_cgroup(pod, parent) -> path     before RunPodSandbox (idempotent:
              a restarted agent adopts what exists and rewrites the same values)
              remove_pod_cgroup(uid, parent) -> bool      after RemovePodSandbox; False: busy,
              sweep_pod_cgroups(parent, keep) -> busy      retried by the next sweep

The hierarchies are found from the directory tree under root (cgroup.controllers at the
root: v2; else a directory per v1 hierarchy, plus unified/ on hybrid hosts), so unit tests
point Cgroupfs at a temporary tree.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from agent.cri import (
    CPU_PERIOD,
    MAX_SHARES,
    MIN_SHARES,
    bytes_of,
    milli_of,
    milli_to_quota,
    milli_to_shares,
)
from agent.status import qos_class

log = logging.getLogger("agent.qos")

GUARANTEED, BURSTABLE, BESTEFFORT = "Guaranteed", "Burstable", "BestEffort"
TIERS = {GUARANTEED: "", BURSTABLE: "burstable", BESTEFFORT: "besteffort"}
CGROUP_ROOT = "/sys/fs/cgroup"
UNLIMITED_V1 = 1 << 62  # memory.limit_in_bytes at or above: no limit
_UID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_V2_CONTROLLERS = ("cpu", "memory")  # what pod_files writes on v2
_RETRIES = 4  # rmdir of a cgroup whose last task is still exiting: ~30 ms


class CgroupError(Exception):
    """A pod cgroup cannot be made or written; the message names the pod and the field."""


# ---- pure: the tiers and the pod's settings -----------------------------------------------


def tier(pod: Mapping[str, Any]) -> str:
    """The QoS tier directory below the node parent ("" for Guaranteed)."""
    return TIERS[qos_class(pod.get("spec") or {})]


def _who(pod: Mapping[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return f"Pod {meta.get('namespace') or 'default'}/{meta.get('name', '?')}"


def pod_cgroup(pod: Mapping[str, Any], parent: str) -> str:
    """The pod's cgroup path below each hierarchy's root; "" when PARENT is "" (no pod
    cgroups: the runtime's own default)."""
    if not parent:
        return ""
    uid = str((pod.get("metadata") or {}).get("uid") or "")
    _check(parent, uid, who=_who(pod))
    t = tier(pod)
    return "/".join(p for p in (parent.rstrip("/"), t, f"pod{uid}") if p)


def _check(parent: str, uid: str, *, who: str) -> None:
    """PARENT and UID name a cgroup below PARENT, never one outside it."""
    if not parent.startswith("/") or ".." in parent.split("/"):
        raise CgroupError(f"{who}: --cgroup-parent: must be an absolute path without "
                          f"'..', got {parent!r}")
    if not _UID.match(uid):
        raise CgroupError(f"{who}: metadata.uid: not usable in a cgroup name, got {uid!r}")


_AMOUNT = {"cpu": milli_of, "memory": bytes_of}


def _amounts(container: Mapping[str, Any]) -> tuple[dict[str, int], dict[str, int]]:
    """(requests, limits) of one container in millicores / bytes; a request left out
    is its limit (the API's defaulting)."""
    res = container.get("resources") or {}
    req, lim = res.get("requests") or {}, res.get("limits") or {}
    requests = {r: f(req.get(r, lim.get(r))) for r, f in _AMOUNT.items()}
    limits = {r: f(lim.get(r)) for r, f in _AMOUNT.items()}
    return requests, limits


def pod_totals(spec: Mapping[str, Any]) -> tuple[dict[str, int], dict[str, int]]:
    """(requests, limits) of the pod as kubelet sums them: per resource the larger of the
    containers' sum and the largest init container, plus spec.overhead (to limits only
    where a limit is set)."""
    requests, limits = {"cpu": 0, "memory": 0}, {"cpu": 0, "memory": 0}
    init_req, init_lim = {"cpu": 0, "memory": 0}, {"cpu": 0, "memory": 0}
    for c in spec.get("containers") or []:
        req, lim = _amounts(c)
        for r in _AMOUNT:
            requests[r] += req[r]
            limits[r] += lim[r]
    for c in spec.get("initContainers") or []:
        req, lim = _amounts(c)
        for r in _AMOUNT:
            init_req[r] = max(init_req[r], req[r])
            init_lim[r] = max(init_lim[r], lim[r])
    overhead = {r: f((spec.get("overhead") or {}).get(r)) for r, f in _AMOUNT.items()}
    for r in _AMOUNT:
        requests[r] = max(requests[r], init_req[r]) + overhead[r]
        limits[r] = max(limits[r], init_lim[r])
        if limits[r]:
            limits[r] += overhead[r]
    return requests, limits


def shares_to_weight(shares: int) -> int:
    """cgroup v2 cpu.weight for v1 shares: [2, 262144] -> [1, 10000] (kubelet, runc)."""
    return 1 + ((shares - MIN_SHARES) * 9999) // (MAX_SHARES - MIN_SHARES)


@dataclass(frozen=True)
class PodResources:
    """The pod cgroup's settings; 0 quota / memory: unlimited."""

    cpu_shares: int
    cpu_quota: int = 0
    cpu_period: int = CPU_PERIOD
    memory_limit: int = 0


def pod_resources(pod: Mapping[str, Any]) -> PodResources:
    """kubelet's ResourceConfigForPod: shares from the summed cpu requests; the cpu quota
    and memory limit are the sums of the limits, set only when every container declares
    that limit (always for Guaranteed); BestEffort gets the minimum shares only."""
    spec = pod.get("spec") or {}
    cls = qos_class(spec)
    if cls == BESTEFFORT:
        return PodResources(cpu_shares=MIN_SHARES)
    requests, limits = pod_totals(spec)
    mains = [_amounts(c)[1] for c in spec.get("containers") or []]
    declared = {r: cls == GUARANTEED or all(lim[r] > 0 for lim in mains) for r in _AMOUNT}
    return PodResources(
        cpu_shares=milli_to_shares(requests["cpu"]),
        cpu_quota=milli_to_quota(limits["cpu"]) if declared["cpu"] else 0,
        memory_limit=limits["memory"] if declared["memory"] else 0)


Files = dict[str, dict[str, str]]  # controller -> {control file: value}


def pod_files(res: PodResources, mode: str) -> Files:
    """The control files of a pod cgroup; mode "v1" / "hybrid" (v1 names) or "v2"."""
    if mode == "v2":
        cpu_max = f"{res.cpu_quota or 'max'} {res.cpu_period}"
        return {"cpu": {"cpu.weight": str(shares_to_weight(res.cpu_shares)),
                        "cpu.max": cpu_max},
                "memory": {"memory.max": str(res.memory_limit or "max")}}
    # the period before the quota: the kernel checks the quota against the period
    return {"cpu": {"cpu.shares": str(res.cpu_shares),
                    "cpu.cfs_period_us": str(res.cpu_period),
                    "cpu.cfs_quota_us": str(res.cpu_quota or -1)},
            "memory": {"memory.limit_in_bytes": str(res.memory_limit or -1)}}


def tier_files(name: str, mode: str, *, burstable_milli: int = 0) -> Files:
    """A tier's cpu weight: besteffort the minimum; burstable the shares of its pods'
    summed cpu requests (BURSTABLE_MILLI), as kubelet's QoS manager sets them."""
    if name == "besteffort":
        shares = MIN_SHARES
    elif name == "burstable":
        shares = milli_to_shares(burstable_milli)
    else:
        return {}
    if mode == "v2":
        return {"cpu": {"cpu.weight": str(shares_to_weight(shares))}}
    return {"cpu": {"cpu.shares": str(shares)}}


def burstable_requests(pods: Collection[Mapping[str, Any]]) -> int:
    """The summed cpu requests (millicores) of the Burstable pods among PODS."""
    return sum(pod_totals(p.get("spec") or {})[0]["cpu"] for p in pods
               if qos_class(p.get("spec") or {}) == BURSTABLE)


# ---- I/O: the cgroup filesystem -------------------------------------------------------------


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

    def __init__(self, root: str = CGROUP_ROOT, *, io: CgroupIO | None = None) -> None:
        self.root = root
        self.io = io or CgroupIO()
        self.mode, self.hierarchies = self._detect()

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
                found.append(Hierarchy(path, (), unified=True))
            elif os.path.exists(os.path.join(path, "cgroup.procs")):
                found.append(Hierarchy(path, tuple(name.split(","))))
        if not found:
            raise CgroupError(f"cgroups: {self.root}: no cgroup hierarchy is mounted there")
        hybrid = any(h.unified for h in found)
        return ("hybrid" if hybrid else "v1"), found

    def holding(self, controller: str) -> Hierarchy | None:
        """The hierarchy whose files FILES names for CONTROLLER."""
        for h in self.hierarchies:
            if (self.mode == "v2" and h.unified) or controller in h.controllers:
                return h
        return None

    def dirs(self, path: str) -> list[str]:
        """PATH's directory in every hierarchy."""
        return [h.mount + path for h in self.hierarchies]

    def ensure(self, path: str, files: Files, *, who: str) -> None:
        """mkdir PATH in every hierarchy (parents too), then write FILES."""
        for h in self.hierarchies:
            self._mkdir(h, h.mount + path, who=who)
        if self.mode == "v2":
            self._enable(path, who=who)
        for controller, values in files.items():
            held = self.holding(controller)
            if held is None:
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

    def _enable(self, path: str, *, who: str) -> None:
        """v2: cpu and memory on in cgroup.subtree_control from the root down to PATH."""
        cur = self.root
        for part in ["", *path.strip("/").split("/")]:
            cur = os.path.join(cur, part) if part else cur
            have = self.io.read(os.path.join(cur, "cgroup.controllers")).split()
            on = self.io.read(os.path.join(cur, "cgroup.subtree_control")).split()
            for c in _V2_CONTROLLERS:
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


# ---- what the worker calls --------------------------------------------------------------------

_fs: Cgroupfs | None = None


def host_cgroupfs() -> Cgroupfs:
    """The host's hierarchies under /sys/fs/cgroup, found once per process."""
    global _fs
    if _fs is None:
        _fs = Cgroupfs()
    return _fs


def ensure_pod_cgroup(pod: Mapping[str, Any], parent: str, *,
                      fs: Cgroupfs | None = None) -> str:
    """Make (or adopt) the pod's cgroup with its limits under its QoS tier; the path to
    give RunPodSandbox as linux.cgroup_parent ("" when PARENT is "")."""
    path = pod_cgroup(pod, parent)
    if not path:
        return ""
    fs = fs or host_cgroupfs()
    who = _who(pod)
    try:
        files = pod_files(pod_resources(pod), fs.mode)
    except ValueError as e:  # a quantity the API should have refused
        raise CgroupError(f"{who}: spec.containers[].resources: {e}") from None
    t = tier(pod)
    if t:  # burstable's weight is update_burstable_tier's: mkdir only (kernel default)
        files_of_tier = tier_files(t, fs.mode) if t == "besteffort" else {}
        fs.ensure(f"{parent.rstrip('/')}/{t}", files_of_tier, who=f"QoS tier {t}")
    fs.ensure(path, files, who=who)
    return path


def pod_cgroups(parent: str, *, fs: Cgroupfs | None = None) -> dict[str, str]:
    """{pod uid: cgroup path} of every pod cgroup under PARENT's tiers (what a restarted
    agent finds)."""
    if not parent:
        return {}
    fs = fs or host_cgroupfs()
    base = parent.rstrip("/")
    out: dict[str, str] = {}
    for t in TIERS.values():
        where = f"{base}/{t}" if t else base
        for name in fs.children(where):
            if name.startswith("pod") and _UID.match(name[3:]):
                out[name[3:]] = f"{where}/{name}"
    return out


def remove_pod_cgroup(uid: str, parent: str, *, fs: Cgroupfs | None = None) -> bool:
    """Remove the pod's cgroup in whichever tier it is; True when none is left, False
    while a process still holds it (sweep_pod_cgroups retries)."""
    if not parent:
        return True
    _check(parent, uid, who=f"Pod uid {uid}")
    fs = fs or host_cgroupfs()
    base = parent.rstrip("/")
    gone = True
    for t in TIERS.values():
        path = "/".join(p for p in (base, t, f"pod{uid}") if p)
        if any(os.path.isdir(d) for d in fs.dirs(path)):
            gone = fs.remove(path) and gone
    return gone


def sweep_pod_cgroups(parent: str, keep: Collection[str], *,
                      fs: Cgroupfs | None = None) -> list[str]:
    """Remove the pod cgroups of pods not in KEEP (uids: the bound pods, their workers and
    every pod the runtime still holds a sandbox of); the uids still busy."""
    busy = []
    for uid in sorted(set(pod_cgroups(parent, fs=fs)) - set(keep)):
        if not remove_pod_cgroup(uid, parent, fs=fs):
            busy.append(uid)
    return busy


def update_burstable_tier(pods: Collection[Mapping[str, Any]], parent: str, *,
                          fs: Cgroupfs | None = None) -> bool:
    """Set the burstable tier's cpu weight from the summed requests of PODS' Burstable
    ones (the pods bound to this node), so that the tier weighs against Guaranteed pods
    as its pods would. A weight is best effort: a failure is logged, False."""
    if not parent:
        return True
    try:
        _check(parent, "tier", who="QoS tier burstable")
        fs = fs or host_cgroupfs()
        milli = burstable_requests(pods)
        files = tier_files("burstable", fs.mode, burstable_milli=milli)
        fs.ensure(f"{parent.rstrip('/')}/burstable", files, who="QoS tier burstable")
    except (CgroupError, ValueError) as e:
        log.warning("%s", e)
        return False
    return True
