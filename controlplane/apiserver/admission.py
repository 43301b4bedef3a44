"""Admission for writes, as pure functions: what an update may not change, and what the
server owns in metadata.

    prepare_create(obj, ...)    server-set metadata (uid, timestamps, generation)
    check_update(res, old, new) every immutable field that changed, as (path, problem)
    carry_over(res, old, new, subresource)
                                the parts a write may not touch come from the stored object
                                (status on the main resource, everything but status on
                                /status), and generation follows spec changes

Defaults and schema validation are api.kinds.defaults()/validate(); "the namespace
exists" needs storage, so it lives in the object service.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from api import jsoncodec
from controlplane.apiserver.resources import Resource

IMMUTABLE = "field is immutable"
Problems = list[tuple[str, str]]

# Fields the server owns: a client's values are replaced by the stored ones on update.
SERVER_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
               "generation", "selfLink")


def _get(obj: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def _immutable(*paths: str) -> Callable[[dict[str, Any], dict[str, Any], Problems], None]:
    def check(old: dict[str, Any], new: dict[str, Any], out: Problems) -> None:
        for p in paths:
            if _get(old, p) != _get(new, p):
                out.append((p, IMMUTABLE))
    return check


def _pod(old: dict[str, Any], new: dict[str, Any], out: Problems) -> None:
    """Kubernetes: a pod's spec may change only in images, activeDeadlineSeconds and by
    added tolerations; spec.nodeName is set once (by the binding)."""
    o, n = jsoncodec.copy(old.get("spec") or {}), jsoncodec.copy(new.get("spec") or {})
    for field in ("containers", "initContainers"):
        for oc, nc in zip(o.get(field) or [], n.get(field) or [], strict=False):
            oc.pop("image", None)
            nc.pop("image", None)
    o.pop("activeDeadlineSeconds", None)
    n.pop("activeDeadlineSeconds", None)
    old_tol, new_tol = o.pop("tolerations", None) or [], n.pop("tolerations", None) or []
    if any(t not in new_tol for t in old_tol):
        out.append(("spec.tolerations", "existing tolerations may not be removed or changed"))
    if not o.get("nodeName"):
        o.pop("nodeName", None)
        n.pop("nodeName", None)
    if o != n:
        changed = sorted(k for k in set(o) | set(n) if o.get(k) != n.get(k))
        out.append((f"spec.{changed[0]}" if changed else "spec",
                    "pod updates may not change fields other than spec.containers[*].image, "
                    "spec.initContainers[*].image, spec.activeDeadlineSeconds and "
                    "spec.tolerations (only additions)"))


def _immutable_data(old: dict[str, Any], new: dict[str, Any], out: Problems) -> None:
    """ConfigMaps and Secrets marked immutable keep their data, and stay immutable."""
    if not old.get("immutable"):
        return
    if not new.get("immutable"):
        out.append(("immutable", "field is immutable when `immutable` is set"))
    for f in ("data", "binaryData", "stringData"):
        if old.get(f) != new.get(f):
            out.append((f, "field is immutable when `immutable` is set"))


def _set_once(path: str) -> Callable[[dict[str, Any], dict[str, Any], Problems], None]:
    def check(old: dict[str, Any], new: dict[str, Any], out: Problems) -> None:
        if _get(old, path) and _get(old, path) != _get(new, path):
            out.append((path, f"{IMMUTABLE} once set"))
    return check


_RULES: dict[str, list[Callable[[dict[str, Any], dict[str, Any], Problems], None]]] = {
    "deployments": [_immutable("spec.selector")],
    "replicasets": [_immutable("spec.selector")],
    "daemonsets": [_immutable("spec.selector")],
    "jobs": [_immutable("spec.selector", "spec.template", "spec.completionMode"),
             _set_once("spec.completions")],
    "pods": [_pod],
    "configmaps": [_immutable_data],
    "secrets": [_immutable_data, _immutable("type")],
    "services": [_set_once("spec.clusterIP")],
    "nodes": [_set_once("spec.podCIDR")],
}


def check_update(res: Resource, old: dict[str, Any], new: dict[str, Any], *,
                 subresource: str = "") -> Problems:
    """Every immutable field NEW changes; a pod's nodeName only through its binding."""
    out: Problems = []
    for rule in _RULES.get(res.name, ()):
        rule(old, new, out)
    if res.name == "pods" and subresource != "binding":
        before = (old.get("spec") or {}).get("nodeName")
        if before != (new.get("spec") or {}).get("nodeName") and not before:
            out.append(("spec.nodeName", "may be set only by binding the pod "
                                         "(pods/binding), as the scheduler does"))
    return out


def _spec_part(res: Resource, obj: dict[str, Any]) -> dict[str, Any]:
    """What generation tracks: everything but metadata and status (Kubernetes bumps
    generation on spec changes; for kinds without spec, on any data change)."""
    return {k: v for k, v in obj.items()
            if k not in ("metadata", "status", "apiVersion", "kind")}


def carry_over(res: Resource, old: dict[str, Any], new: dict[str, Any], *,
               subresource: str) -> dict[str, Any]:
    """NEW with the server-owned parts taken from OLD; generation bumped on spec change."""
    out = copy.copy(new)
    if subresource == "binding":  # the binder changed exactly spec.nodeName and status
        return out
    if subresource == "status":
        # /status writes only status (and nothing of metadata but what the server keeps)
        out = {k: v for k, v in old.items() if k != "status"}
        if "status" in new:
            out["status"] = new["status"]
        return out
    if res.status:
        if "status" in old:
            out["status"] = old["status"]
        else:
            out.pop("status", None)
    meta = dict(new.get("metadata") or {})
    old_meta = old.get("metadata") or {}
    for f in SERVER_META:
        if f in old_meta:
            meta[f] = old_meta[f]
        else:
            meta.pop(f, None)
    meta.pop("resourceVersion", None)
    gen = int(old_meta.get("generation") or 1)
    if _spec_part(res, old) != _spec_part(res, out):
        gen += 1
    meta["generation"] = gen
    out["metadata"] = meta
    return out


# Kubernetes' DefaultTolerationSeconds admission: a pod tolerates a node being not-ready
# or unreachable for 5 minutes before the node lifecycle controller evicts it.
DEFAULT_TOLERATION_SECONDS = 300
NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"


def default_tolerations(pod: dict[str, Any]) -> None:
    """Add the not-ready/unreachable NoExecute tolerations a pod does not state itself."""
    spec = pod.setdefault("spec", {})
    tolerations = list(spec.get("tolerations") or [])
    for key in (NOT_READY, UNREACHABLE):
        covered = any((t.get("key") == key or (not t.get("key") and
                                                t.get("operator") == "Exists"))
                      and t.get("effect") in (None, "", "NoExecute") for t in tolerations)
        if not covered:
            tolerations.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                                "tolerationSeconds": DEFAULT_TOLERATION_SECONDS})
    spec["tolerations"] = tolerations
