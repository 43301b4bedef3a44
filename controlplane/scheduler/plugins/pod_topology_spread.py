"""PodTopologySpread (Kubernetes' podtopologyspread plugin): keep the pods a selector matches
evenly spread over the domains of a topology key.

    constraint   maxSkew, topologyKey, whenUnsatisfiable, labelSelector, minDomains,
                 matchLabelKeys, nodeAffinityPolicy (Honor), nodeTaintsPolicy (Ignore)
    PreFilter    DoNotSchedule constraints: count matching pods (same namespace, not being
                 deleted) per domain over the eligible nodes (every key present, the
                 policies met), and each constraint's smallest count (0 while fewer domains
                 than minDomains exist)
    Filter       missing key -> unresolvable; count in the node's domain + 1 (if the pod
                 matches its own selector) - the smallest count must be <= maxSkew
    PreScore     ScheduleAnyway constraints: counts over the domains of the feasible nodes,
                 each constraint weighted log(domains + 2)
    Score        sum of count * weight + (maxSkew - 1); normalized so the emptiest domain
                 scores highest; nodes lacking a key score 0
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from api.selectors import Requirement, Selector, SelectorError
from controlplane.scheduler.framework import (
    MAX_NODE_SCORE,
    SUCCESS,
    Code,
    CycleState,
    Pod,
    Status,
    error,
    skip,
    unschedulable,
)
from controlplane.scheduler.plugins.node_affinity import required_matches
from controlplane.scheduler.plugins.taint_toleration import first_untolerated, pod_tolerations
from controlplane.scheduler.snapshot import NodeInfo, Snapshot
from controlplane.scheduler.terms import pod_key, pod_labels, pod_namespace, selector_or_none

NAME = "PodTopologySpread"
REASON = "node(s) didn't match pod topology spread constraints"
MISSING_LABEL_REASON = REASON + " (missing required label)"
HOSTNAME = "kubernetes.io/hostname"
_FILTER_KEY = "PreFilter" + NAME
_SCORE_KEY = "PreScore" + NAME


@dataclass(frozen=True)
class Constraint:
    max_skew: int
    topology_key: str
    hard: bool
    selector: Selector | None  # None matches no pod
    min_domains: int = 1
    honor_affinity: bool = True
    honor_taints: bool = False

    def counts(self, pod: Pod, node: NodeInfo) -> int:
        """Pods on NODE this constraint counts: same namespace as POD, not being deleted."""
        if self.selector is None:
            return 0
        ns, sel = pod_namespace(pod), self.selector
        return sum(1 for p in node.pods if pod_namespace(p) == ns
                   and not (p.get("metadata") or {}).get("deletionTimestamp")
                   and sel.matches(pod_labels(p)))

    def includes(self, pod: Pod, node: NodeInfo) -> bool:
        """The node-inclusion policies: Honor nodeAffinity, Ignore taints unless asked."""
        if self.honor_affinity and not required_matches(pod, node):
            return False
        if self.honor_taints:
            taints = (node.node.get("spec") or {}).get("taints") or ()
            if first_untolerated(taints, pod_tolerations(pod)) is not None:
                return False
        return True


def parse_constraints(pod: Pod, *, hard: bool) -> list[Constraint]:
    """The pod's DoNotSchedule (HARD) or ScheduleAnyway constraints. Raises SelectorError."""
    out: list[Constraint] = []
    labels = pod_labels(pod)
    for i, c in enumerate((pod.get("spec") or {}).get("topologySpreadConstraints") or ()):
        if (c.get("whenUnsatisfiable") == "DoNotSchedule") != hard:
            continue
        where = f"Pod {pod_key(pod)}: spec.topologySpreadConstraints[{i}]"
        selector = selector_or_none(c.get("labelSelector"), f"{where}.labelSelector")
        keys = [k for k in c.get("matchLabelKeys") or () if k in labels]
        if keys:
            extra = [Requirement(k, "=", (labels[k],)) for k in keys]
            selector = Selector([*(selector.requirements if selector else ()), *extra])
        out.append(Constraint(
            max_skew=int(c.get("maxSkew") or 1), topology_key=str(c.get("topologyKey") or ""),
            hard=hard, selector=selector, min_domains=int(c.get("minDomains") or 1),
            honor_affinity=(c.get("nodeAffinityPolicy") or "Honor") == "Honor",
            honor_taints=(c.get("nodeTaintsPolicy") or "Ignore") == "Honor"))
    return out


def _has_keys(node: NodeInfo, constraints: Sequence[Constraint]) -> bool:
    labels = node.labels
    return all(c.topology_key in labels for c in constraints)


@dataclass
class _FilterState:
    constraints: list[Constraint]
    counts: list[dict[str, int]]  # per constraint: domain value -> matching pods
    minimum: list[int]  # per constraint: the smallest domain count (see minDomains)
    self_match: list[int] = field(default_factory=list)


def _parse(pod: Pod, *, hard: bool) -> list[Constraint] | Status:
    try:
        return parse_constraints(pod, hard=hard)
    except SelectorError as e:
        return error(NAME, str(e))


class PodTopologySpread:
    name = NAME

    def __init__(self, args: Mapping[str, Any] | None = None) -> None:
        pass

    # ---- filter -----------------------------------------------------------------------

    def pre_filter(self, state: CycleState, pod: Pod) -> Status:
        constraints = _parse(pod, hard=True)
        if isinstance(constraints, Status):
            return constraints
        if not constraints:
            state[_FILTER_KEY] = None
            return skip(NAME)
        counts: list[dict[str, int]] = [{} for _ in constraints]
        for node in state.snapshot or Snapshot():
            if not _has_keys(node, constraints):
                continue
            labels = node.labels
            for i, c in enumerate(constraints):
                if c.includes(pod, node):
                    value = labels[c.topology_key]
                    counts[i][value] = counts[i].get(value, 0) + c.counts(pod, node)
        minimum = [0 if len(n) < c.min_domains else min(n.values())
                   for c, n in zip(constraints, counts, strict=True)]
        labels = pod_labels(pod)
        self_match = [1 if c.selector is not None and c.selector.matches(labels) else 0
                      for c in constraints]
        state[_FILTER_KEY] = _FilterState(constraints, counts, minimum, self_match)
        return SUCCESS

    def filter(self, state: CycleState, pod: Pod, node: NodeInfo) -> Status:
        if _FILTER_KEY not in state:  # PreFilter not enabled in this profile
            status = self.pre_filter(state, pod)
            if status.code is Code.ERROR:
                return status
        s: _FilterState | None = state[_FILTER_KEY]
        if s is None:
            return SUCCESS
        labels = node.labels
        if not _has_keys(node, s.constraints):
            return unschedulable(NAME, MISSING_LABEL_REASON, unresolvable=True)
        for i, c in enumerate(s.constraints):
            matched = s.counts[i].get(labels[c.topology_key], 0)
            if matched + s.self_match[i] - s.minimum[i] > c.max_skew:
                return unschedulable(NAME, REASON)
        return SUCCESS

    # ---- score ------------------------------------------------------------------------

    def pre_score(self, state: CycleState, pod: Pod, nodes: Sequence[NodeInfo]) -> Status:
        constraints = _parse(pod, hard=False)
        if isinstance(constraints, Status):
            return constraints
        if not constraints:
            return skip(NAME)
        ignored = {n.name for n in nodes if not _has_keys(n, constraints)}
        counts: list[dict[str, int]] = [{} for _ in constraints]
        for node in nodes:
            if node.name not in ignored:
                for i, c in enumerate(constraints):
                    if c.topology_key != HOSTNAME:
                        counts[i].setdefault(node.labels[c.topology_key], 0)
        weights = [math.log((len(nodes) - len(ignored) if c.topology_key == HOSTNAME
                             else len(counts[i])) + 2) for i, c in enumerate(constraints)]
        for node in state.snapshot or Snapshot(nodes):
            if not _has_keys(node, constraints):
                continue
            for i, c in enumerate(constraints):
                if c.topology_key == HOSTNAME or not c.includes(pod, node):
                    continue
                value = node.labels[c.topology_key]
                if value in counts[i]:
                    counts[i][value] += c.counts(pod, node)
        state[_SCORE_KEY] = (constraints, counts, weights, ignored)
        return SUCCESS

    def score(self, state: CycleState, pod: Pod, node: NodeInfo) -> tuple[int, Status]:
        if _SCORE_KEY not in state:
            return 0, SUCCESS
        constraints, counts, weights, ignored = state[_SCORE_KEY]
        if node.name in ignored:
            return 0, SUCCESS
        labels = node.labels
        total = 0.0
        for i, c in enumerate(constraints):
            n = (c.counts(pod, node) if c.topology_key == HOSTNAME
                 else counts[i].get(labels[c.topology_key], 0))
            total += n * weights[i] + (c.max_skew - 1)
        return math.floor(total + 0.5), SUCCESS

    def normalize_scores(self, state: CycleState, pod: Pod, scores: dict[str, int]) -> Status:
        if _SCORE_KEY not in state:
            return SUCCESS
        ignored: set[str] = state[_SCORE_KEY][3]
        valid = [v for name, v in scores.items() if name not in ignored]
        low, high = min(valid, default=0), max(valid, default=0)
        for name, value in scores.items():
            if name in ignored:
                scores[name] = 0
            elif high == 0:
                scores[name] = MAX_NODE_SCORE
            else:
                scores[name] = MAX_NODE_SCORE * (high + low - value) // high
        return SUCCESS
