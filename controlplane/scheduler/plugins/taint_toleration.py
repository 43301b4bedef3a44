"""TaintToleration. Filter: a node's NoSchedule and NoExecute taints must each be tolerated
by the pod. Score: the number of PreferNoSchedule taints the pod does not tolerate, reversed
and scaled (the node with the most such taints gets 0, nodes with none 100)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from controlplane.scheduler.framework import (
    SUCCESS,
    CycleState,
    Pod,
    Status,
    default_normalize,
    unschedulable,
)
from controlplane.scheduler.snapshot import NodeInfo

NAME = "TaintToleration"
FILTERED_EFFECTS = ("NoSchedule", "NoExecute")
PREFER = "PreferNoSchedule"
_STATE_KEY = "PreScore" + NAME


def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """Kubernetes' ToleratesTaint: an empty effect matches every effect, an empty key (with
    Exists) every key; Exists ignores the value, Equal (the default) compares it."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if key and key != taint.get("key"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    return operator == "Equal" and (toleration.get("value") or "") == (taint.get("value") or "")


def tolerated(tolerations: Iterable[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    return any(tolerates(t, taint) for t in tolerations)


def pod_tolerations(pod: Pod) -> list[Mapping[str, Any]]:
    return list((pod.get("spec") or {}).get("tolerations") or [])


def first_untolerated(taints: Iterable[Mapping[str, Any]],
                      tolerations: list[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    for taint in taints:
        if taint.get("effect") in FILTERED_EFFECTS and not tolerated(tolerations, taint):
            return taint
    return None


class TaintToleration:
    name = NAME

    def __init__(self, args: Mapping[str, Any] | None = None) -> None:
        pass

    def filter(self, state: CycleState, pod: Pod, node: NodeInfo) -> Status:
        taints = (node.node.get("spec") or {}).get("taints") or []
        taint = first_untolerated(taints, pod_tolerations(pod))
        if taint is None:
            return SUCCESS
        reason = (f"node(s) had untolerated taint {{{taint.get('key', '')}: "
                  f"{taint.get('value') or ''}}}")
        return unschedulable(NAME, reason, unresolvable=True)

    def pre_score(self, state: CycleState, pod: Pod, nodes: Sequence[NodeInfo]) -> Status:
        state[_STATE_KEY] = [t for t in pod_tolerations(pod)
                             if (t.get("effect") or "") in ("", PREFER)]
        return SUCCESS

    def score(self, state: CycleState, pod: Pod, node: NodeInfo) -> tuple[int, Status]:
        taints = (node.node.get("spec") or {}).get("taints")
        if not taints:
            return 0, SUCCESS
        tolerations = state.get(_STATE_KEY)
        if tolerations is None:
            self.pre_score(state, pod, ())
            tolerations = state[_STATE_KEY]
        return sum(1 for t in taints
                   if t.get("effect") == PREFER and not tolerated(tolerations, t)), SUCCESS

    def normalize_scores(self, state: CycleState, pod: Pod, scores: dict[str, int]) -> Status:
        default_normalize(scores, reverse=True)
        return SUCCESS
