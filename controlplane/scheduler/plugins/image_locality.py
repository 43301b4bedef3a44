"""ImageLocality: prefer nodes that already hold the pod's images (Kubernetes'
image_locality.go). For each container (init containers too) whose image is on the node, add
its size scaled by the share of nodes that have it (an image everywhere says nothing about
this node); clamp the sum to 23 MB .. 1000 MB per container and map that range to 0..100."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from controlplane.scheduler.framework import MAX_NODE_SCORE, SUCCESS, CycleState, Pod, Status
from controlplane.scheduler.snapshot import NodeInfo, normalize_image

NAME = "ImageLocality"
MB = 1024 * 1024
MIN_THRESHOLD = 23 * MB
MAX_CONTAINER_THRESHOLD = 1000 * MB
_STATE_KEY = "PreScore" + NAME


def pod_images(pod: Pod) -> list[str]:
    spec = pod.get("spec") or {}
    return [normalize_image(str(c.get("image") or ""))
            for field in ("initContainers", "containers") for c in spec.get(field) or ()]


def calculate_priority(sum_scores: int, num_containers: int) -> int:
    max_threshold = MAX_CONTAINER_THRESHOLD * num_containers
    clamped = min(max(sum_scores, MIN_THRESHOLD), max_threshold)
    return MAX_NODE_SCORE * (clamped - MIN_THRESHOLD) // (max_threshold - MIN_THRESHOLD)


class ImageLocality:
    name = NAME

    def __init__(self, args: Mapping[str, Any] | None = None) -> None:
        pass

    def pre_score(self, state: CycleState, pod: Pod, nodes: Sequence[NodeInfo]) -> Status:
        images = pod_images(pod)
        snap = state.snapshot
        total = len(snap) if snap is not None else 1
        # the share of nodes holding each image, computed once per cycle
        spread = {i: (snap.image_nodes(i) if snap is not None else 1) / total for i in images}
        state[_STATE_KEY] = (images, spread)
        return SUCCESS

    def score(self, state: CycleState, pod: Pod, node: NodeInfo) -> tuple[int, Status]:
        if _STATE_KEY not in state:
            self.pre_score(state, pod, ())
        images, spread = state[_STATE_KEY]
        if not images:
            return 0, SUCCESS
        sizes = node.image_sizes
        total = 0
        for image in images:
            size = sizes.get(image)
            if size is not None:
                total += int(size * spread[image])
        return calculate_priority(total, len(images)), SUCCESS
