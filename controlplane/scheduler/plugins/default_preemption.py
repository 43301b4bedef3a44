"""DefaultPreemption (a PostFilter): when a pod fits nowhere, find a node where evicting pods
of strictly lower spec.priority makes room, and the fewest and least important victims there.

    candidates   nodes rejected as Unschedulable (not Unresolvable), in snapshot order, until
                 max(10% of the nodes, 100) are found
    per node     remove every lower-priority pod; if the pod still does not fit, no; else add
                 them back one by one, most important first (higher priority, then earlier
                 start), keeping each that leaves the pod fitting: the rest are the victims
    pick         (no PDBs here) lowest highest-victim priority, smallest sum of victim
                 priorities, fewest victims, latest start of the most important victims,
                 then the first node

Pure: the result names the node and victims; the caller evicts them and writes the pod's
status.nominatedNodeName. Filters are re-run through the profile, with each cluster-wide
PreFilter (affinity, spread) recomputed on the trial snapshot.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from controlplane.scheduler.framework import (
    SUCCESS,
    Code,
    CycleState,
    Pod,
    PostFilterResult,
    PreFilterPlugin,
    Profile,
    Status,
    error,
    unschedulable,
)
from controlplane.scheduler.snapshot import NodeInfo, Snapshot
from controlplane.scheduler.terms import pod_key, pod_priority

NAME = "DefaultPreemption"
NO_VICTIMS = "No preemption victims found for incoming pod"
NOT_HELPFUL = "Preemption is not helpful for scheduling"
NEVER = "not eligible due to preemptionPolicy=Never."
# PreFilters whose state depends only on the pod, never on other nodes' pods
NODE_LOCAL_PRE_FILTERS = frozenset({"NodeResourcesFit"})
_OFFSET = 2 ** 31  # Kubernetes adds MaxInt32 + 1 so negative priorities sum sensibly


def start_time(pod: Pod) -> str:
    """RFC 3339 text compares in time order; pods without a start sort first."""
    status, meta = pod.get("status") or {}, pod.get("metadata") or {}
    return str(status.get("startTime") or meta.get("creationTimestamp") or "")


def _importance(pod: Pod) -> tuple[int, str]:
    return (-pod_priority(pod), start_time(pod))  # sorts most important first


class _Trial:
    """Runs PreFilter once on the real snapshot, then answers "does the pod fit NODE?"
    re-running only the PreFilters that read other nodes."""

    def __init__(self, pod: Pod, snapshot: Snapshot, profile: Profile) -> None:
        self.pod, self.snapshot, self.profile = pod, snapshot, profile
        self.base = CycleState(snapshot, profile)
        self.rerun: list[PreFilterPlugin] = []
        for pre in profile.pre_filter:
            status = pre.pre_filter(self.base, pod)
            if status.code is Code.SKIP:
                self.base.skip_filter.add(pre.name)  # removing pods never adds constraints
            elif pre.name not in NODE_LOCAL_PRE_FILTERS:
                self.rerun.append(pre)

    def fits(self, node: NodeInfo) -> bool:
        state = self.base
        if self.rerun:
            state = CycleState(self.snapshot.replace(node), self.profile)
            state.update(self.base)
            state.skip_filter = set(self.base.skip_filter)
            for pre in self.rerun:
                status = pre.pre_filter(state, self.pod)
                if status.code is Code.SKIP:
                    state.skip_filter.add(pre.name)
                elif not status.ok:
                    return False
        for plugin in self.profile.filter:
            if plugin.name not in state.skip_filter and not plugin.filter(
                    state, self.pod, node).ok:
                return False
        return True


def select_victims(trial: _Trial, node: NodeInfo) -> list[Pod] | None:
    """The minimal victims on NODE, most important first; None if eviction cannot help."""
    priority = pod_priority(trial.pod)
    lower = sorted((p for p in node.pods if pod_priority(p) < priority), key=_importance)
    if not lower:
        return None
    current = node.without_pods({pod_key(p) for p in lower})
    if not trial.fits(current):
        return None
    victims: list[Pod] = []
    for p in lower:  # reprieve the most important first
        with_p = current.with_pod(p)
        if trial.fits(with_p):
            current = with_p
        else:
            victims.append(p)
    return victims


def _rank(item: tuple[int, str, Sequence[Pod]]) -> tuple[int, int, int, str]:
    """Smaller is better; the last field is negated start time via reverse text order."""
    _, _, victims = item
    prios = [pod_priority(v) for v in victims]
    top = max(prios)
    earliest = min(start_time(v) for v in victims if pod_priority(v) == top)
    return (top, sum(p + _OFFSET for p in prios), len(victims), _invert(earliest))


def _invert(text: str) -> str:
    """A key that sorts later times first."""
    return "".join(chr(0x10FFFF - ord(c)) for c in text) + chr(0x10FFFF)


def pick_node(candidates: Sequence[tuple[str, Sequence[Pod]]]) -> tuple[str, Sequence[Pod]]:
    """Kubernetes' pickOneNodeForPreemption without PDBs (see the module docstring)."""
    for name, victims in candidates:
        if not victims:
            return name, victims
    ranked = sorted(((i, name, victims) for i, (name, victims) in enumerate(candidates)),
                    key=lambda item: (_rank(item), item[0]))
    _, name, victims = ranked[0]
    return name, victims


class DefaultPreemption:
    name = NAME

    def __init__(self, args: Mapping[str, Any] | None = None) -> None:
        args = args or {}
        self.min_percentage = int(args.get("minCandidateNodesPercentage", 10))
        self.min_absolute = int(args.get("minCandidateNodesAbsolute", 100))

    def post_filter(self, state: CycleState, pod: Pod,
                    statuses: Mapping[str, Status]) -> tuple[PostFilterResult | None, Status]:
        if (pod.get("spec") or {}).get("preemptionPolicy") == "Never":
            return None, unschedulable(NAME, NEVER, unresolvable=True)
        snap, profile = state.snapshot, state.profile
        if snap is None or profile is None:
            return None, error(NAME, "preemption needs the cycle's snapshot and profile")
        limit = min(len(snap), max(len(snap) * self.min_percentage // 100, self.min_absolute))
        trial = _Trial(pod, snap, profile)
        reasons: Counter[str] = Counter()
        candidates: list[tuple[str, Sequence[Pod]]] = []
        for node in snap:
            status = statuses.get(node.name)
            if status is None or status.code is not Code.UNSCHEDULABLE:
                reasons[NOT_HELPFUL] += 1
                continue
            victims = select_victims(trial, node)
            if victims is None:
                reasons[NO_VICTIMS] += 1
                continue
            candidates.append((node.name, victims))
            if len(candidates) >= limit:
                break
        if not candidates:
            detail = ", ".join(sorted(f"{n} {r}" for r, n in reasons.items()))
            return None, unschedulable(
                NAME, f"preemption: 0/{len(snap)} nodes are available: {detail}.")
        name, chosen = pick_node(candidates)
        return PostFilterResult(name, tuple(chosen)), SUCCESS
