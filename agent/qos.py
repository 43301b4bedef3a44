"""Pod and QoS cgroups: the node-level hierarchy kubelet's cgroupfs driver builds, so that a
pod's summed limits hold whatever its containers do.

    <parent>/                    the agent's --cgroup-parent (kubelet's "kubepods")
        pod<uid>/                Guaranteed pods
        burstable/pod<uid>/      tier: cpu shares = its pods' requests (update_burstable_tier)
        besteffort/pod<uid>/     tier: cpu.shares 2 (v1) / cpu.weight 1 (v2)
            <container id>/      made by the runtime: the sandbox's cgroup_parent is pod<uid>

    pure      tier(pod) -> "" | "burstable" | "besteffort"        (status.qos_class)
              pod_cgroup(pod, parent) -> "/parent/burstable/pod<uid>"
              pod_resources(pod) -> PodResources(shares, quota, period, memory,
                                                 pids, hugepages)
              pod_files(res, mode) -> {controller: {file: value}}     v1 / v2 names
              node_files(cpu, memory, pids, mode)      the parent: kubelet's allocatable
    I/O       Cgroupfs(root): mkdir (v1 cpuset copied down, v2 controllers enabled in the
              ancestors: one walk per call), write, rmdir children first; one directory
              per hierarchy; the host's huge page sizes (/sys/kernel/mm/hugepages)
    agent     ensure_node_cgroup(parent, cpu=, memory=, pids=)   at start (idempotent)
    worker    ensure_pod_cgroup(pod, parent, pod_max_pids=) -> path   before
              RunPodSandbox (idempotent: a restarted agent adopts what exists and rewrites
              the same values); pids.max when --pod-max-pids > 0; hugetlb limits for
              every page size the host has (the pod's hugepages-<size> limits, else 0,
              as kubelet), wherever hugetlb is: a v1 hierarchy, v2, or hybrid's unified/
              remove_pod_cgroup(uid, parent) -> bool      after RemovePodSandbox; False: busy,
              sweep_pod_cgroups(parent, keep) -> busy      retried by the next sweep

The cgroup filesystem itself is agent/cgroupfs.py (Cgroupfs, CgroupIO, CgroupError: all
re-exported here); unit tests point a Cgroupfs at a temporary tree.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from agent.cgroupfs import CGROUP_ROOT as CGROUP_ROOT
from agent.cgroupfs import UNLIMITED_V1 as UNLIMITED_V1
from agent.cgroupfs import CgroupError as CgroupError
from agent.cgroupfs import Cgroupfs as Cgroupfs
from agent.cgroupfs import CgroupIO as CgroupIO
from agent.cgroupfs import Files as Files
from agent.cgroupfs import Hierarchy as Hierarchy
from agent.cgroupfs import host_cgroupfs as host_cgroupfs
from agent.cgroupfs import host_page_sizes as host_page_sizes
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
_UID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


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
    pids_limit: int = 0  # 0: not set (the kernel's "max")
    hugepages: tuple[tuple[int, int], ...] = ()  # (page size, limit) in bytes, by size


HUGEPAGES_PREFIX = "hugepages-"


def pod_hugepages(spec: Mapping[str, Any]) -> dict[int, int]:
    """{page size: bytes} of the pod's hugepages-<size> limits: the containers' sum or the
    largest init container's, whichever is larger (kubelet's pod requests; the API makes
    a huge page request equal its limit)."""
    def of(c: Mapping[str, Any]) -> dict[int, int]:
        out: dict[int, int] = {}
        for name, value in ((c.get("resources") or {}).get("limits") or {}).items():
            if str(name).startswith(HUGEPAGES_PREFIX):
                size = bytes_of(str(name)[len(HUGEPAGES_PREFIX):])
                out[size] = out.get(size, 0) + bytes_of(value)
        return out
    total: dict[int, int] = {}
    for c in spec.get("containers") or []:
        for size, n in of(c).items():
            total[size] = total.get(size, 0) + n
    for c in spec.get("initContainers") or []:
        for size, n in of(c).items():
            total[size] = max(total.get(size, 0), n)
    return total


def pod_resources(pod: Mapping[str, Any], *, pod_max_pids: int = -1,
                  page_sizes: Collection[int] = ()) -> PodResources:
    """kubelet's ResourceConfigForPod: shares from the summed cpu requests; the cpu quota
    and memory limit are the sums of the limits, set only when every container declares
    that limit (always for Guaranteed); BestEffort gets the minimum shares only. Every
    pod: pids.max POD_MAX_PIDS when > 0, and for each of the host's PAGE_SIZES the pod's
    huge page limit, 0 when it asks for none."""
    spec = pod.get("spec") or {}
    cls = qos_class(spec)
    asked = pod_hugepages(spec)
    pids = max(pod_max_pids, 0)
    pages = tuple((size, asked.get(size, 0)) for size in sorted(page_sizes))
    if cls == BESTEFFORT:
        return PodResources(cpu_shares=MIN_SHARES, pids_limit=pids, hugepages=pages)
    requests, limits = pod_totals(spec)
    mains = [_amounts(c)[1] for c in spec.get("containers") or []]
    declared = {r: cls == GUARANTEED or all(lim[r] > 0 for lim in mains) for r in _AMOUNT}
    return PodResources(
        cpu_shares=milli_to_shares(requests["cpu"]),
        cpu_quota=milli_to_quota(limits["cpu"]) if declared["cpu"] else 0,
        memory_limit=limits["memory"] if declared["memory"] else 0,
        pids_limit=pids, hugepages=pages)


def hugetlb_name(size: int) -> str:
    """The kernel's name of a huge page size in hugetlb files: 2MB, 1GB, 64KB."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20)):
        if size >= scale:
            return f"{size // scale}{unit}"
    return f"{size // 1024}KB"


def pod_files(res: PodResources, mode: str, *, hugetlb_v2: bool | None = None) -> Files:
    """The control files of a pod cgroup; mode "v1" / "hybrid" (v1 names) or "v2";
    HUGETLB_V2: hugetlb's hierarchy is unified (default: MODE is "v2")."""
    files: Files
    if mode == "v2":
        cpu_max = f"{res.cpu_quota or 'max'} {res.cpu_period}"
        files = {"cpu": {"cpu.weight": str(shares_to_weight(res.cpu_shares)),
                         "cpu.max": cpu_max},
                 "memory": {"memory.max": str(res.memory_limit or "max")}}
    else:  # the period before the quota: the kernel checks the quota against the period
        files = {"cpu": {"cpu.shares": str(res.cpu_shares),
                         "cpu.cfs_period_us": str(res.cpu_period),
                         "cpu.cfs_quota_us": str(res.cpu_quota or -1)},
                 "memory": {"memory.limit_in_bytes": str(res.memory_limit or -1)}}
    if res.pids_limit > 0:
        files["pids"] = {"pids.max": str(res.pids_limit)}
    if res.hugepages:
        suffix = "max" if (mode == "v2" if hugetlb_v2 is None else hugetlb_v2) \
            else "limit_in_bytes"
        files["hugetlb"] = {f"hugetlb.{hugetlb_name(size)}.{suffix}": str(limit)
                            for size, limit in res.hugepages}
    return files


def node_files(mode: str, *, cpu_milli: int, memory: int, pids: int = 0,
               with_pids: bool = True) -> Files:
    """The pods' parent cgroup held to the node's allocatable (kubelet's
    enforceNodeAllocatableCgroups): cpu weight from CPU_MILLI, the MEMORY limit, and
    pids.max PIDS ("max" for 0) when WITH_PIDS (the pids controller is there)."""
    shares = milli_to_shares(cpu_milli)
    files: Files = ({"cpu": {"cpu.weight": str(shares_to_weight(shares))},
                     "memory": {"memory.max": str(memory)}} if mode == "v2" else
                    {"cpu": {"cpu.shares": str(shares)},
                     "memory": {"memory.limit_in_bytes": str(memory)}})
    if with_pids:
        files["pids"] = {"pids.max": str(pids or "max")}
    return files


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


# ---- what the worker calls --------------------------------------------------------------------


def ensure_node_cgroup(parent: str, *, cpu_milli: int, memory: int, pids: int = 0,
                       fs: Cgroupfs | None = None) -> None:
    """Make (or adopt) PARENT, the pods' node-level cgroup, held to CPU_MILLI (its cpu
    weight), MEMORY bytes and PIDS processes (0: "max"; pids.max only where the pids
    controller is, unless PIDS asks for a limit)."""
    if not parent:
        return
    _check(parent, "node", who="--cgroup-parent")
    if not parent.strip("/"):  # the root cgroup itself: nothing to hold, as kubelet's "/"
        log.warning("--cgroup-parent /: the pods are not held to the node's allocatable")
        return
    fs = fs or host_cgroupfs()
    who = f"--cgroup-parent {parent}"
    for d in fs.dirs(parent.rstrip("/")):  # the pods' budget would cap these processes too
        pids_in = fs.io.read(os.path.join(d, "cgroup.procs")).split()
        if pids_in:
            raise CgroupError(f"{who}: the cgroup {d} has processes (pid {pids_in[0]}): "
                              "give the pods a cgroup of their own")
    files = node_files(fs.mode, cpu_milli=cpu_milli, memory=memory, pids=pids,
                       with_pids=bool(pids) or fs.has("pids"))
    fs.ensure(parent.rstrip("/"), files, who=who)


def ensure_pod_cgroup(pod: Mapping[str, Any], parent: str, *, pod_max_pids: int = -1,
                      fs: Cgroupfs | None = None) -> str:
    """Make (or adopt) the pod's cgroup with its limits under its QoS tier; the path to
    give RunPodSandbox as linux.cgroup_parent ("" when PARENT is ""). POD_MAX_PIDS > 0:
    its pids.max (kubelet's --pod-max-pids)."""
    path = pod_cgroup(pod, parent)
    if not path:
        return ""
    fs = fs or host_cgroupfs()
    who = _who(pod)
    try:
        res = pod_resources(pod, pod_max_pids=pod_max_pids, page_sizes=fs.page_sizes)
    except ValueError as e:  # a quantity the API should have refused
        raise CgroupError(f"{who}: spec.containers[].resources: {e}") from None
    files = pod_files(res, fs.mode, hugetlb_v2=fs.hugetlb_v2)
    t = tier(pod)
    steps: list[tuple[str, Files, str]] = []
    if t:  # burstable's weight is update_burstable_tier's: mkdir only (kernel default)
        files_of_tier = tier_files(t, fs.mode) if t == "besteffort" else {}
        steps.append((f"{parent.rstrip('/')}/{t}", files_of_tier, f"QoS tier {t}"))
    fs.ensure_tree([*steps, (path, files, who)])
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
