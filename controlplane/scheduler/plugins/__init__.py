"""The in-tree plugins, their registry, and the default profile's config.

    filter order   cheap, unresolvable checks first (as kube-scheduler's default profile)
    score weights  Kubernetes' defaults: TaintToleration 3; NodeAffinity, InterPodAffinity,
                   PodTopologySpread 2; LeastAllocated, BalancedAllocation, ImageLocality 1
"""

from __future__ import annotations

from typing import Any

from controlplane.scheduler.framework import Registry
from controlplane.scheduler.plugins.default_preemption import DefaultPreemption
from controlplane.scheduler.plugins.image_locality import ImageLocality
from controlplane.scheduler.plugins.inter_pod_affinity import InterPodAffinity
from controlplane.scheduler.plugins.node_affinity import NodeAffinity
from controlplane.scheduler.plugins.node_name import NodeName
from controlplane.scheduler.plugins.node_resources_fit import NodeResourcesFit
from controlplane.scheduler.plugins.node_unschedulable import NodeUnschedulable
from controlplane.scheduler.plugins.pod_topology_spread import PodTopologySpread
from controlplane.scheduler.plugins.resource_allocation import BalancedAllocation, LeastAllocated
from controlplane.scheduler.plugins.taint_toleration import TaintToleration

__all__ = ["DEFAULT_CONFIG", "BalancedAllocation", "DefaultPreemption", "ImageLocality",
           "InterPodAffinity", "LeastAllocated", "NodeAffinity", "NodeName",
           "NodeResourcesFit", "NodeUnschedulable", "PodTopologySpread", "TaintToleration",
           "default_registry"]


def default_registry() -> Registry:
    registry = Registry()
    for cls in (NodeUnschedulable, NodeName, TaintToleration, NodeAffinity, NodeResourcesFit,
                LeastAllocated, BalancedAllocation, ImageLocality, InterPodAffinity,
                PodTopologySpread, DefaultPreemption):
        registry.register(cls.name, cls)
    return registry


DEFAULT_CONFIG: dict[str, Any] = {
    "schedulerName": "default-scheduler",
    "plugins": {
        "preFilter": ["NodeResourcesFit", "PodTopologySpread", "InterPodAffinity"],
        "filter": ["NodeUnschedulable", "NodeName", "TaintToleration", "NodeAffinity",
                   "NodeResourcesFit", "PodTopologySpread", "InterPodAffinity"],
        "postFilter": ["DefaultPreemption"],
        "preScore": ["TaintToleration", "NodeAffinity", "PodTopologySpread",
                     "InterPodAffinity", "ImageLocality"],
        "score": [{"name": "TaintToleration", "weight": 3},
                  {"name": "NodeAffinity", "weight": 2},
                  {"name": "PodTopologySpread", "weight": 2},
                  {"name": "InterPodAffinity", "weight": 2},
                  {"name": "LeastAllocated", "weight": 1},
                  {"name": "BalancedAllocation", "weight": 1},
                  {"name": "ImageLocality", "weight": 1}],
    },
}
