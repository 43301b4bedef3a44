"""Scoring by cpu and memory allocation (Kubernetes' resource_allocation.go): what the node's
pods request plus what this pod requests, against allocatable; each plugin turns that into
0..100 per resource and takes the weighted mean."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controlplane.scheduler.framework import MAX_NODE_SCORE, SUCCESS, CycleState, Pod, Status
from controlplane.scheduler.snapshot import NodeInfo, Resource, pod_requests

DEFAULT_WEIGHTS = {"cpu": 1, "memory": 1}


def _amount(r: Resource, name: str) -> int:
    """R's amount of NAME (cpu in millicores); 0 for a resource R does not list (the pod
    count is not an amount these plugins score)."""
    if name == "cpu":
        return r.milli_cpu
    if name == "memory":
        return r.memory
    return r.scalar.get(name, 0)


def _request(state: CycleState, pod: Pod, non_zero: bool) -> Resource:
    """The pod's request, computed once per cycle (quantity parsing is not cheap)."""
    key = "PodRequestNonZero" if non_zero else "PodRequest"
    cached = state.get(key)
    if not isinstance(cached, Resource):
        cached = state[key] = pod_requests(pod, non_zero=non_zero)
    return cached


def _weights(args: Mapping[str, Any] | None) -> dict[str, int]:
    """args {"resources": [{"name": "cpu", "weight": 1}, ...]}, default cpu and memory 1."""
    resources = (args or {}).get("resources")
    if not resources:
        return dict(DEFAULT_WEIGHTS)
    return {r["name"]: int(r.get("weight", 1)) for r in resources}


class LeastAllocated:
    """(allocatable - requested) * 100 / allocatable per resource, integer arithmetic;
    requests use the non-zero defaults so best-effort pods spread too."""

    name = "LeastAllocated"

    def __init__(self, args: Mapping[str, Any] | None = None) -> None:
        self.weights = _weights(args)

    def score(self, state: CycleState, pod: Pod, node: NodeInfo) -> tuple[int, Status]:
        alloc, used = node.allocatable, node.non_zero_requested
        request = _request(state, pod, True)
        total = weight_sum = 0
        for name, weight in self.weights.items():
            cap = _amount(alloc, name)
            req = _amount(used, name) + _amount(request, name)
            if cap == 0:
                continue  # a resource the node does not have does not count
            total += (0 if req > cap else (cap - req) * MAX_NODE_SCORE // cap) * weight
            weight_sum += weight
        return (total // weight_sum if weight_sum else 0), SUCCESS


class BalancedAllocation:
    """100 * (1 - standard deviation of the requested/allocatable fractions); with two
    resources the deviation is |f1 - f2| / 2. Uses the actual requests."""

    name = "BalancedAllocation"

    def __init__(self, args: Mapping[str, Any] | None = None) -> None:
        self.weights = _weights(args)

    def score(self, state: CycleState, pod: Pod, node: NodeInfo) -> tuple[int, Status]:
        alloc, used = node.allocatable, node.requested
        request = _request(state, pod, False)
        fractions = []
        for name in self.weights:
            cap = _amount(alloc, name)
            if cap:
                fractions.append(min((_amount(used, name) + _amount(request, name)) / cap,
                                     1.0))
        if len(fractions) == 2:
            std = abs(fractions[0] - fractions[1]) / 2
        elif len(fractions) > 2:
            mean = sum(fractions) / len(fractions)
            std = (sum((f - mean) ** 2 for f in fractions) / len(fractions)) ** 0.5
        else:
            std = 0.0
        return int((1 - std) * MAX_NODE_SCORE), SUCCESS
