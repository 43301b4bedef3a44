"""The in-tree plugins, their registry, and the default profile's config."""

from __future__ import annotations

from typing import Any

from controlplane.scheduler.framework import Registry
from controlplane.scheduler.plugins.node_affinity import NodeAffinity
from controlplane.scheduler.plugins.node_name import NodeName
from controlplane.scheduler.plugins.node_resources_fit import NodeResourcesFit
from controlplane.scheduler.plugins.node_unschedulable import NodeUnschedulable
from controlplane.scheduler.plugins.resource_allocation import BalancedAllocation, LeastAllocated
from controlplane.scheduler.plugins.taint_toleration import TaintToleration

__all__ = ["DEFAULT_CONFIG", "BalancedAllocation", "LeastAllocated", "NodeAffinity",
           "NodeName", "NodeResourcesFit", "NodeUnschedulable", "TaintToleration",
           "default_registry"]


def default_registry() -> Registry:
    registry = Registry()
    for cls in (NodeUnschedulable, NodeName, TaintToleration, NodeAffinity, NodeResourcesFit,
                LeastAllocated, BalancedAllocation):
        registry.register(cls.name, cls)
    return registry


# Filter order as in kube-scheduler's default profile: cheap, unresolvable checks first.
DEFAULT_CONFIG: dict[str, Any] = {
    "schedulerName": "default-scheduler",
    "plugins": {
        "preFilter": ["NodeResourcesFit"],
        "filter": ["NodeUnschedulable", "NodeName", "TaintToleration", "NodeAffinity",
                   "NodeResourcesFit"],
        "score": [{"name": "LeastAllocated", "weight": 1},
                  {"name": "BalancedAllocation", "weight": 1}],
    },
}
