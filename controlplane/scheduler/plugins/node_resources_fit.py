"""NodeResourcesFit: the pod's requests must fit in the node's allocatable minus what the
pods already bound there request — cpu, memory, every other (extended) resource, and one
more pod slot. All shortfalls of a node are reported, in Kubernetes' order."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controlplane.scheduler.framework import SUCCESS, CycleState, Pod, Status, unschedulable
from controlplane.scheduler.snapshot import NodeInfo, Resource, pod_requests

NAME = "NodeResourcesFit"
_STATE_KEY = "PreFilter" + NAME


def insufficient(request: Resource, node: NodeInfo) -> list[str]:
    """The reasons REQUEST does not fit NODE; empty if it fits."""
    reasons: list[str] = []
    alloc, used = node.allocatable, node.requested
    if used.pods + 1 > alloc.pods:
        reasons.append("Too many pods")
    if request.milli_cpu > 0 and request.milli_cpu > alloc.milli_cpu - used.milli_cpu:
        reasons.append("Insufficient cpu")
    if request.memory > 0 and request.memory > alloc.memory - used.memory:
        reasons.append("Insufficient memory")
    for name in sorted(request.scalar):
        want = request.scalar[name]
        if want > 0 and want > alloc.scalar.get(name, 0) - used.scalar.get(name, 0):
            reasons.append(f"Insufficient {name}")
    return reasons


class NodeResourcesFit:
    name = NAME

    def __init__(self, args: Mapping[str, Any] | None = None) -> None:
        pass

    def pre_filter(self, state: CycleState, pod: Pod) -> Status:
        state[_STATE_KEY] = pod_requests(pod)
        return SUCCESS

    def filter(self, state: CycleState, pod: Pod, node: NodeInfo) -> Status:
        request = state.get(_STATE_KEY)
        if not isinstance(request, Resource):  # PreFilter not enabled in this profile
            request = state[_STATE_KEY] = pod_requests(pod)
        reasons = insufficient(request, node)
        return unschedulable(NAME, *reasons) if reasons else SUCCESS
