"""NodeAffinity. Filter: the pod's spec.nodeSelector labels must all be on the node, and one
of the requiredDuringSchedulingIgnoredDuringExecution nodeSelectorTerms must match (terms
are ORed, a term's requirements ANDed; an empty term matches nothing). Score: the sum of the
weights of the preferredDuringSchedulingIgnoredDuringExecution terms the node matches,
scaled so the best node has 100."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from controlplane.scheduler.framework import (
    SUCCESS,
    CycleState,
    Pod,
    Status,
    default_normalize,
    skip,
    unschedulable,
)
from controlplane.scheduler.snapshot import NodeInfo

NAME = "NodeAffinity"
REASON = "node(s) didn't match Pod's node affinity/selector"
_REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
_PREFERRED = "preferredDuringSchedulingIgnoredDuringExecution"
_STATE_KEY = "PreScore" + NAME


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def requirement_matches(req: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A NodeSelectorRequirement against a label map. Gt / Lt compare integers; a label that
    is missing or not an integer never matches them."""
    key, op = req.get("key", ""), req.get("operator")
    values: Sequence[str] = req.get("values") or []
    present = key in labels
    if op == "In":
        return present and labels[key] in values
    if op == "NotIn":
        return not present or labels[key] not in values
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt") and present and len(values) == 1:
        have, bound = _int(labels[key]), _int(values[0])
        if have is None or bound is None:
            return False
        return have > bound if op == "Gt" else have < bound
    return False


def term_matches(term: Mapping[str, Any], node: NodeInfo) -> bool:
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    node_fields = {"metadata.name": node.name}
    return (all(requirement_matches(r, node.labels) for r in exprs)
            and all(requirement_matches(r, node_fields) for r in fields))


def required_matches(pod: Pod, node: NodeInfo) -> bool:
    spec = pod.get("spec") or {}
    labels = node.labels
    for key, value in (spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(_REQUIRED)
    if required is None:
        return True
    return any(term_matches(t, node) for t in required.get("nodeSelectorTerms") or [])


class NodeAffinity:
    name = NAME

    def __init__(self, args: Mapping[str, Any] | None = None) -> None:
        pass

    def filter(self, state: CycleState, pod: Pod, node: NodeInfo) -> Status:
        if required_matches(pod, node):
            return SUCCESS
        return unschedulable(NAME, REASON, unresolvable=True)

    def pre_score(self, state: CycleState, pod: Pod, nodes: Sequence[NodeInfo]) -> Status:
        node_affinity = ((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity")
        preferred = [(int(p.get("weight") or 0), p.get("preference") or {})
                     for p in (node_affinity or {}).get(_PREFERRED) or ()]
        if not preferred:
            return skip(NAME)
        state[_STATE_KEY] = preferred
        return SUCCESS

    def score(self, state: CycleState, pod: Pod, node: NodeInfo) -> tuple[int, Status]:
        preferred: list[tuple[int, Mapping[str, Any]]] | None = state.get(_STATE_KEY)
        if preferred is None:
            self.pre_score(state, pod, ())
            preferred = state.get(_STATE_KEY) or []
        return sum(w for w, term in preferred if term_matches(term, node)), SUCCESS

    def normalize_scores(self, state: CycleState, pod: Pod, scores: dict[str, int]) -> Status:
        default_normalize(scores)
        return SUCCESS
