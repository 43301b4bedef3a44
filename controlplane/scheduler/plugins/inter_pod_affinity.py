"""InterPodAffinity (Kubernetes' interpodaffinity plugin): pods placed by the pods already
in each topology domain (the nodes sharing one value of a topologyKey label).

    PreFilter  count once per cycle, per (topologyKey, value):
               existing_anti  existing pods whose required anti-affinity matches this pod
               affinity       existing pods matching *all* this pod's required affinity terms
               anti           existing pods matching each required anti-affinity term
    Filter     affinity: the node has every term's key and a matching pod in each domain
               (or no such pod exists anywhere and the pod matches its own terms: the first
               of a group); anti: no matching pod in the node's domain; symmetry: no
               existing pod's anti-affinity covers the node's domain
    PreScore   per (key, value): + preferred affinity weights, - preferred anti-affinity
               weights, both ways (this pod's terms against existing pods, existing pods'
               terms against this pod; existing required affinity counts hardPodAffinityWeight)
    Score      the node's domains summed; normalized to 0..100 between the min and the max
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from api.selectors import SelectorError
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
from controlplane.scheduler.snapshot import NodeInfo, Snapshot
from controlplane.scheduler.terms import (
    AffinityTerm,
    NamespaceLabels,
    PodAffinityInfo,
    no_labels,
    parse_pod_affinity,
)

NAME = "InterPodAffinity"
AFFINITY_REASON = "node(s) didn't match pod affinity rules"
ANTI_AFFINITY_REASON = "node(s) didn't match pod anti-affinity rules"
EXISTING_ANTI_AFFINITY_REASON = "node(s) didn't satisfy existing pods anti-affinity rules"
_FILTER_KEY = "PreFilter" + NAME
_SCORE_KEY = "PreScore" + NAME
Pair = tuple[str, str]


@dataclass
class _FilterState:
    info: PodAffinityInfo
    existing_anti: Counter[Pair]
    affinity: Counter[Pair]
    anti: Counter[Pair]


def _ns_labels(snap: Snapshot | None) -> NamespaceLabels:
    return snap.namespace_labels if snap is not None else no_labels


def _count_terms(counts: Counter[Pair], terms: Sequence[AffinityTerm],
                 labels: Mapping[str, str], n: int = 1) -> None:
    for t in terms:
        value = labels.get(t.topology_key)
        if value is not None:
            counts[(t.topology_key, value)] += n


def _covers(counts: Counter[Pair], labels: Mapping[str, str]) -> bool:
    """A counted domain with a positive count contains the node."""
    return any(n > 0 and labels.get(key) == value for (key, value), n in counts.items())


class InterPodAffinity:
    name = NAME

    def __init__(self, args: Mapping[str, Any] | None = None) -> None:
        self.hard_weight = int((args or {}).get("hardPodAffinityWeight", 1))

    def _info(self, state: CycleState, pod: Pod) -> PodAffinityInfo | Status:
        key = "Parsed" + NAME
        if key not in state:
            try:
                state[key] = parse_pod_affinity(pod)
            except SelectorError as e:
                return error(NAME, str(e))
        info: PodAffinityInfo = state[key]
        return info

    # ---- filter -----------------------------------------------------------------------

    def pre_filter(self, state: CycleState, pod: Pod) -> Status:
        info = self._info(state, pod)
        if isinstance(info, Status):
            return info
        snap = state.snapshot or Snapshot()
        ns_labels = snap.namespace_labels
        existing_anti: Counter[Pair] = Counter()
        for node in snap.have_pods_with_required_anti_affinity:
            for other in node.required_anti_affinity_pods:
                _count_terms(existing_anti, [t for t in other.required_anti
                                             if t.matches(pod, ns_labels)], node.labels)
        affinity: Counter[Pair] = Counter()
        anti: Counter[Pair] = Counter()
        if info.required_affinity or info.required_anti:
            for node in snap:
                labels = node.labels
                for peer in node.pods:
                    if info.matches_all_required(peer, ns_labels):
                        _count_terms(affinity, info.required_affinity, labels)
                    if info.required_anti:
                        _count_terms(anti, [t for t in info.required_anti
                                            if t.matches(peer, ns_labels)], labels)
        elif not existing_anti:
            state[_FILTER_KEY] = None
            return skip(NAME)
        state[_FILTER_KEY] = _FilterState(info, existing_anti, affinity, anti)
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
        if s.info.required_affinity and not self._affinity_ok(s, labels, state):
            return unschedulable(NAME, AFFINITY_REASON, unresolvable=True)
        if s.anti:
            for t in s.info.required_anti:
                value = labels.get(t.topology_key)
                if value is not None and s.anti[(t.topology_key, value)] > 0:
                    return unschedulable(NAME, ANTI_AFFINITY_REASON)
        if s.existing_anti and _covers(s.existing_anti, labels):
            return unschedulable(NAME, EXISTING_ANTI_AFFINITY_REASON)
        return SUCCESS

    @staticmethod
    def _affinity_ok(s: _FilterState, labels: Mapping[str, str], state: CycleState) -> bool:
        pods_exist = True
        for t in s.info.required_affinity:
            value = labels.get(t.topology_key)
            if value is None:
                return False  # every topology key must be on the node
            if s.affinity[(t.topology_key, value)] <= 0:
                pods_exist = False
        if pods_exist:
            return True
        # no matching pod anywhere: the pod may start the group if it matches its own terms
        return not s.affinity and s.info.matches_all_required(s.info.pod,
                                                              _ns_labels(state.snapshot))

    # ---- score ------------------------------------------------------------------------

    def pre_score(self, state: CycleState, pod: Pod, nodes: Sequence[NodeInfo]) -> Status:
        info = self._info(state, pod)
        if isinstance(info, Status):
            return info
        snap = state.snapshot or Snapshot()
        ns_labels = snap.namespace_labels
        own = info.preferred_affinity or info.preferred_anti
        scan = list(snap) if own else snap.have_pods_with_affinity
        if not scan:
            return skip(NAME)
        totals: Counter[Pair] = Counter()
        for node in scan:
            labels = node.labels
            if own:
                for other in node.pods:
                    for t in info.preferred_affinity:
                        if t.matches(other, ns_labels):
                            _count_terms(totals, (t,), labels, t.weight)
                    for t in info.preferred_anti:
                        if t.matches(other, ns_labels):
                            _count_terms(totals, (t,), labels, -t.weight)
            for holder in node.affinity_pods:
                if self.hard_weight > 0:
                    for t in holder.required_affinity:
                        if t.matches(pod, ns_labels):
                            _count_terms(totals, (t,), labels, self.hard_weight)
                for t in holder.preferred_affinity:
                    if t.matches(pod, ns_labels):
                        _count_terms(totals, (t,), labels, t.weight)
                for t in holder.preferred_anti:
                    if t.matches(pod, ns_labels):
                        _count_terms(totals, (t,), labels, -t.weight)
        by_key: dict[str, dict[str, int]] = {}
        for (key, value), n in totals.items():
            by_key.setdefault(key, {})[value] = n
        if not by_key:
            return skip(NAME)
        state[_SCORE_KEY] = by_key
        return SUCCESS

    def score(self, state: CycleState, pod: Pod, node: NodeInfo) -> tuple[int, Status]:
        by_key: dict[str, dict[str, int]] | None = state.get(_SCORE_KEY)
        if not by_key:
            return 0, SUCCESS
        labels = node.labels
        total = 0
        for key, values in by_key.items():
            value = labels.get(key)
            if value is not None:
                total += values.get(value, 0)
        return total, SUCCESS

    def normalize_scores(self, state: CycleState, pod: Pod, scores: dict[str, int]) -> Status:
        if not state.get(_SCORE_KEY) or not scores:
            return SUCCESS
        low, high = min(scores.values()), max(scores.values())
        diff = high - low
        for name, value in scores.items():
            scores[name] = int(MAX_NODE_SCORE * (value - low) / diff) if diff > 0 else 0
        return SUCCESS
