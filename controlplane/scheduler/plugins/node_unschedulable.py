"""NodeUnschedulable: a cordoned node (spec.unschedulable) takes only pods that tolerate the
`node.kubernetes.io/unschedulable:NoSchedule` taint (DaemonSet pods do)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controlplane.scheduler.framework import SUCCESS, CycleState, Pod, Status, unschedulable
from controlplane.scheduler.plugins.taint_toleration import pod_tolerations, tolerated
from controlplane.scheduler.snapshot import NodeInfo

NAME = "NodeUnschedulable"
REASON = "node(s) were unschedulable"
UNSCHEDULABLE_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}


class NodeUnschedulable:
    name = NAME

    def __init__(self, args: Mapping[str, Any] | None = None) -> None:
        pass

    def filter(self, state: CycleState, pod: Pod, node: NodeInfo) -> Status:
        if not (node.node.get("spec") or {}).get("unschedulable"):
            return SUCCESS
        if tolerated(pod_tolerations(pod), UNSCHEDULABLE_TAINT):
            return SUCCESS
        return unschedulable(NAME, REASON, unresolvable=True)
