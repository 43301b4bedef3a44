"""An in-memory harness: schema-valid node and pod dicts, a snapshot, and a scheduler loop
that assumes each decision into the snapshot (no server, no store)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from api import kinds
from controlplane.scheduler.framework import Code, CycleState, Profile, Status
from controlplane.scheduler.plugins import DEFAULT_CONFIG, default_registry
from controlplane.scheduler.schedule import Decision, schedule_one
from controlplane.scheduler.snapshot import NodeInfo, Snapshot


def _valid(obj: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = kinds.defaults(obj)
    kinds.validate(out)
    return out


def node(name: str, cpu: str = "4", memory: str = "8Gi", pods: int = 110,
         labels: Mapping[str, str] | None = None, taints: Iterable[Mapping[str, str]] = (),
         unschedulable: bool = False, images: Mapping[str, int] | None = None,
         **extended: str) -> dict[str, Any]:
    """EXTENDED: resource name with "__" for "/" and "_" for "." (example_com__gpu).
    IMAGES: image name -> size in bytes, reported in status.images."""
    alloc = {"cpu": cpu, "memory": memory, "pods": str(pods)}
    alloc |= {k.replace("__", "/").replace("_", "."): v for k, v in extended.items()}
    spec: dict[str, Any] = {"taints": list(taints)}
    if unschedulable:
        spec["unschedulable"] = True
    return _valid({"apiVersion": "v1", "kind": "Node",
                   "metadata": {"name": name, "labels": dict(labels or {})},
                   "spec": spec, "status": {
                       "capacity": alloc, "allocatable": alloc,
                       "images": [{"names": [k], "sizeBytes": v}
                                  for k, v in (images or {}).items()]}})


def container(name: str = "c", image: str = "busybox", **requests: str) -> dict[str, Any]:
    reqs = {k.replace("__", "/").replace("_", "."): v for k, v in requests.items()}
    return {"name": name, "image": image, "resources": {"requests": reqs}}


def pod(name: str = "p", *, containers: list[dict[str, Any]] | None = None,
        init: list[dict[str, Any]] | None = None, node_name: str | None = None,
        phase: str | None = None, labels: Mapping[str, str] | None = None,
        namespace: str = "default", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"containers": containers or [container()], **spec}
    if init:
        body["initContainers"] = init
    if node_name:
        body["nodeName"] = node_name
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod",
                           "metadata": {"name": name, "namespace": namespace,
                                        "labels": dict(labels or {})}, "spec": body}
    if phase:
        obj["status"] = {"phase": phase}
    return _valid(obj)


def sized(name: str = "p", cpu: str | None = None, memory: str | None = None,
          **spec: Any) -> dict[str, Any]:
    reqs = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    return pod(name, containers=[container(**reqs)], **spec)


def info(n: dict[str, Any], *pods: dict[str, Any]) -> NodeInfo:
    return NodeInfo.from_node(n, pods)


def run_scores(plugin: Any, p: Mapping[str, Any], snapshot: Snapshot,
               nodes: Iterable[str] | None = None) -> dict[str, int]:
    """PreScore, Score and NormalizeScore of one plugin over the snapshot's nodes (or the
    named ones), as schedule_one runs them. A skipped PreScore scores every node 0."""
    state = CycleState(snapshot)
    chosen = [i for i in snapshot if nodes is None or i.name in set(nodes)]
    if hasattr(plugin, "pre_score"):
        status = plugin.pre_score(state, p, chosen)
        if status.code is Code.SKIP:
            return dict.fromkeys((i.name for i in chosen), 0)
        assert status.ok, status
    scores = {}
    for i in chosen:
        scores[i.name], status = plugin.score(state, p, i)
        assert status.ok, status
    if hasattr(plugin, "normalize_scores"):
        assert plugin.normalize_scores(state, p, scores).ok
    return scores


def run_filter(plugin: Any, p: Mapping[str, Any], snapshot: Snapshot) -> dict[str, Status]:
    """PreFilter once, then Filter on every node; a skipped PreFilter passes every node."""
    state = CycleState(snapshot)
    if hasattr(plugin, "pre_filter"):
        status = plugin.pre_filter(state, p)
        if status.code is Code.SKIP:
            return {i.name: Status() for i in snapshot}
        assert status.ok, status
    return {i.name: plugin.filter(state, p, i) for i in snapshot}


def default_profile(config: Mapping[str, Any] = DEFAULT_CONFIG) -> Profile:
    return Profile.from_config(config, default_registry())


class Cluster:
    """Nodes and bound pods; `schedule` places pods one by one like the scheduler loop."""

    def __init__(self, nodes: Iterable[dict[str, Any]], pods: Iterable[dict[str, Any]] = (),
                 profile: Profile | None = None,
                 namespaces: Iterable[dict[str, Any]] = ()) -> None:
        self.snapshot = Snapshot.from_objects(nodes, pods, namespaces)
        self.profile = profile or default_profile()

    def schedule(self, *pods: dict[str, Any]) -> list[Decision]:
        decisions = []
        for p in pods:
            d = schedule_one(p, self.snapshot, self.profile)
            if d.node is not None:
                p = {**p, "spec": {**p["spec"], "nodeName": d.node}}
                self.snapshot = self.snapshot.assume(p, d.node)
            decisions.append(d)
        return decisions
