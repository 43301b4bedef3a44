"""The DaemonSet controller's decisions, pure: plan(ds, nodes, pods, now) -> DaemonSetPlan.

    for each node:  eligible? = nodeSelector + required node affinity + taints vs the
                    pod's tolerations (with the automatic DaemonSet tolerations)
        should run, no pod          ─► create one (bound to the node)
        pod created but not bound   ─► bind it
        should not run (any more)   ─► delete its pods (NoSchedule taints keep a running pod)
        several pods, failed pods   ─► delete the extra / the failed
    RollingUpdate: old-template pods are deleted while at most maxUnavailable nodes lack
    an available current pod (old pods that are not available first); OnDelete: never.
    status: desired/current/misscheduled/ready/available/updated counts.

A pod's template is told by its `controller-revision-hash` label (a hash of the template).
A node with a pod being deleted gets its new pod once the old one is gone.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controlplane.controllers.plan_util import (
    Obj,
    deleting,
    is_available,
    is_ready,
    meta,
    name_of,
    owner_reference,
    parse_time,
    phase,
    ready_since,
)
from controlplane.scheduler.plugins.node_affinity import required_matches
from controlplane.scheduler.plugins.taint_toleration import tolerated
from controlplane.scheduler.snapshot import NodeInfo

HASH_LABEL = "controller-revision-hash"
NODE_FIELD = "metadata.name"
_REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"

# What Kubernetes adds to every DaemonSet pod, so daemons survive node trouble.
DAEMON_TOLERATIONS: tuple[Obj, ...] = (
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists",
     "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists",
     "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists",
     "effect": "NoSchedule"},
)
HOST_NETWORK_TOLERATION: Obj = {"key": "node.kubernetes.io/network-unavailable",
                                "operator": "Exists", "effect": "NoSchedule"}


@dataclass(frozen=True)
class DaemonSetPlan:
    status: Obj
    create: tuple[str, ...] = ()  # node names that get a new pod
    bind: tuple[tuple[str, str], ...] = ()  # (pod name, node name): created, not yet bound
    delete: tuple[str, ...] = ()  # pod names
    requeue_after: float | None = None


def template_hash(ds: Mapping[str, Any]) -> str:
    template = (ds.get("spec") or {}).get("template") or {}
    raw = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(raw).hexdigest()[:10]


def tolerations_for(template_spec: Mapping[str, Any]) -> list[Obj]:
    """The template's tolerations plus the automatic ones it does not already have."""
    out = [dict(t) for t in template_spec.get("tolerations") or ()]
    extra = list(DAEMON_TOLERATIONS)
    if template_spec.get("hostNetwork"):
        extra.append(HOST_NETWORK_TOLERATION)
    for t in extra:
        if not any(o.get("key") == t["key"] and o.get("effect") == t["effect"] for o in out):
            out.append(dict(t))
    return out


def node_fit(ds: Mapping[str, Any], node: Mapping[str, Any]) -> tuple[bool, bool]:
    """(should run a new pod, may keep a running pod) on NODE, as Kubernetes decides:
    affinity and NoExecute taints decide both; NoSchedule taints only the first."""
    tspec = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
    if not required_matches({"spec": tspec}, NodeInfo(node)):
        return False, False
    tolerations = tolerations_for(tspec)
    run = True
    for taint in (node.get("spec") or {}).get("taints") or ():
        if tolerated(tolerations, taint):
            continue
        if taint.get("effect") == "NoExecute":
            return False, False
        if taint.get("effect") == "NoSchedule":
            run = False
    return run, True


def target_node(pod: Mapping[str, Any]) -> str:
    """The node a daemon pod is for: spec.nodeName, else its metadata.name node affinity."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return str(spec["nodeName"])
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(_REQUIRED) or {}
    for term in required.get("nodeSelectorTerms") or ():
        for f in term.get("matchFields") or ():
            if f.get("key") == NODE_FIELD and f.get("operator") == "In" and f.get("values"):
                return str(f["values"][0])
    return ""


def _percent_or_int(value: Any, total: int) -> int:
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(int(value[:-1]) * total / 100)
    return int(value or 0)


def plan(ds: Mapping[str, Any], nodes: Sequence[Mapping[str, Any]],
         pods: Sequence[Mapping[str, Any]], now: float) -> DaemonSetPlan:
    spec = ds.get("spec") or {}
    current = template_hash(ds)
    min_ready = int(spec.get("minReadySeconds") or 0)
    by_node: dict[str, list[Mapping[str, Any]]] = {}
    for p in pods:
        by_node.setdefault(target_node(p), []).append(p)
    create: list[str] = []
    bind: list[tuple[str, str]] = []
    delete: list[str] = []
    desired = scheduled = misscheduled = ready = available = updated = 0
    old_on_node: dict[str, Mapping[str, Any]] = {}  # node -> its one old-template pod
    unavailable = 0
    requeue: float | None = None
    node_names = set()
    for node in sorted(nodes, key=name_of):
        name = name_of(node)
        node_names.add(name)
        run, keep = node_fit(ds, node)
        here = by_node.get(name, [])
        live = [p for p in here if not deleting(p)]
        dead = [p for p in live if phase(p) in ("Failed", "Succeeded")]
        live = sorted((p for p in live if p not in dead),
                      key=lambda p: (parse_time(meta(p).get("creationTimestamp")) or 0.0,
                                     name_of(p)))
        delete += [name_of(p) for p in dead]
        if run:
            desired += 1
        if not (run or keep) or (not run and not live):
            delete += [name_of(p) for p in live]
            continue
        if not run:  # a running pod the node still tolerates: misscheduled but kept
            misscheduled += 1
            continue
        if not live:
            unavailable += 1
            if not any(deleting(p) for p in here):
                create.append(name)
            continue
        pod, extra = live[0], live[1:]
        delete += [name_of(p) for p in extra]
        if not (pod.get("spec") or {}).get("nodeName"):
            bind.append((name_of(pod), name))
        scheduled += 1
        is_current = (meta(pod).get("labels") or {}).get(HASH_LABEL) == current
        updated += is_current
        ready += is_ready(pod)
        avail = is_available(pod, min_ready_seconds=min_ready, now=now)
        available += avail
        since = ready_since(pod)
        if since is not None and not avail:  # look again when it becomes available
            left = since + min_ready - now
            requeue = left if requeue is None else min(requeue, left)
        if not avail:
            unavailable += 1
        if not is_current:
            old_on_node[name] = pod
    for node_name, group in by_node.items():  # pods for nodes that are gone
        if node_name not in node_names:
            delete += [name_of(p) for p in group if not deleting(p)]
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") == "RollingUpdate" and old_on_node:
        limit = (strategy.get("rollingUpdate") or {}).get("maxUnavailable", 1)
        budget = max(_percent_or_int(limit, desired), 1) - unavailable
        for node_name in sorted(old_on_node):
            pod = old_on_node[node_name]
            if not is_available(pod, min_ready_seconds=min_ready, now=now):
                delete.append(name_of(pod))  # already down: replacing it costs nothing
            elif budget > 0:
                delete.append(name_of(pod))
                budget -= 1
    status: Obj = {
        "desiredNumberScheduled": desired, "currentNumberScheduled": scheduled,
        "numberMisscheduled": misscheduled, "numberReady": ready,
        "numberAvailable": available, "updatedNumberScheduled": updated,
        "numberUnavailable": max(desired - available, 0),
        "observedGeneration": int(meta(ds).get("generation") or 1),
    }
    if (ds.get("status") or {}).get("collisionCount") is not None:
        status["collisionCount"] = ds["status"]["collisionCount"]
    if (ds.get("status") or {}).get("conditions"):
        status["conditions"] = ds["status"]["conditions"]
    return DaemonSetPlan(status=status, create=tuple(create), bind=tuple(bind),
                         delete=tuple(dict.fromkeys(delete)), requeue_after=requeue)


def new_pod(ds: Mapping[str, Any], node_name: str) -> Obj:
    """A pod for DS on NODE_NAME: the template, the automatic tolerations, a node affinity
    to that node (so a scheduler would place it there too), the template hash label."""
    template = copy.deepcopy((ds.get("spec") or {}).get("template") or {})
    tmeta = template.get("metadata") or {}
    pspec: Obj = template.get("spec") or {}
    pspec["tolerations"] = tolerations_for(pspec)
    affinity = pspec.setdefault("affinity", {})
    node_aff = affinity.setdefault("nodeAffinity", {})
    node_aff[_REQUIRED] = {"nodeSelectorTerms": [{"matchFields": [
        {"key": NODE_FIELD, "operator": "In", "values": [node_name]}]}]}
    m = meta(ds)
    pmeta: Obj = {"generateName": f"{m.get('name', '')}-",
                  "labels": {**(tmeta.get("labels") or {}), HASH_LABEL: template_hash(ds)},
                  "ownerReferences": [owner_reference(ds)]}
    if m.get("namespace"):
        pmeta["namespace"] = m["namespace"]
    if tmeta.get("annotations"):
        pmeta["annotations"] = dict(tmeta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pmeta, "spec": pspec}
