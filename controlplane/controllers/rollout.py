"""Pure rollout arithmetic for the Deployment controller (no I/O), as Kubernetes does it.

    template_hash(template, collisions)   stable name suffix and pod-template-hash label
    same_template(rs, deploy)             is RS the deployment's current template?
    fenceposts(deploy)                    (maxSurge rounded up, maxUnavailable rounded down)
    new_rs_replicas(...)                  how far the new ReplicaSet may scale up
    old_rs_scale_down(...)                how far each old ReplicaSet may scale down
    history_to_delete(...)                old ReplicaSets beyond revisionHistoryLimit
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from typing import Any

from controlplane.controllers import podutil as pu

Obj = dict[str, Any]
HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' SafeEncodeString alphabet


def template_hash(template: Obj, collisions: int = 0) -> str:
    """A short, stable hash of the pod template (without its pod-template-hash label)."""
    t = strip_hash(template)
    raw = json.dumps(t, sort_keys=True, separators=(",", ":"))
    if collisions:
        raw += f"#{collisions}"
    n = int.from_bytes(hashlib.sha256(raw.encode()).digest()[:5], "big")
    out = []
    for _ in range(8):
        n, r = divmod(n, len(_ALPHABET))
        out.append(_ALPHABET[r])
    return "".join(out)


def strip_hash(template: Obj) -> Obj:
    t = copy.deepcopy(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    return t


def same_template(rs: Obj, deploy: Obj) -> bool:
    return strip_hash((rs.get("spec") or {}).get("template") or {}) == strip_hash(
        (deploy.get("spec") or {}).get("template") or {})


def revision(rs: Obj) -> int:
    try:
        return int((pu.meta(rs).get("annotations") or {}).get(REVISION) or 0)
    except ValueError:
        return 0


def replicas(obj: Obj) -> int:
    return int((obj.get("spec") or {}).get("replicas", 1))


def status_int(obj: Obj, field: str) -> int:
    return int((obj.get("status") or {}).get(field) or 0)


def pods_upper_bound(rs: Obj) -> int:
    """Pods RS may have: its spec, or more while its controller is still deleting."""
    return max(replicas(rs), status_int(rs, "replicas"))


def available(rs: Obj) -> int:
    """Available pods of RS that will survive its current spec (stale status can report
    pods its controller is about to delete)."""
    return min(status_int(rs, "availableReplicas"), replicas(rs))


def scaled_value(value: int | str | None, total: int, *, round_up: bool) -> int:
    """An int-or-percent against TOTAL: "25%" of 10 is 3 rounded up, 2 rounded down."""
    if value is None:
        value = "25%"
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.endswith("%"):
        pct = int(text[:-1])
        exact = pct * total / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    return int(text)


def fenceposts(deploy: Obj) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) of a RollingUpdate; both 0 would stall: unavailable 1."""
    spec = deploy.get("spec") or {}
    ru = (spec.get("strategy") or {}).get("rollingUpdate") or {}
    want = replicas(deploy)
    surge = scaled_value(ru.get("maxSurge", "25%"), want, round_up=True)
    unavailable = scaled_value(ru.get("maxUnavailable", "25%"), want, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def new_rs_replicas(deploy: Obj, new_rs_spec: int, all_rs: list[Obj]) -> int:
    """The new ReplicaSet's next spec.replicas under maxSurge (Kubernetes'
    NewRSNewReplicas). ALL_RS excludes the new one; NEW_RS_SPEC is its current spec."""
    want = replicas(deploy)
    if new_rs_spec > want:
        return want
    surge, _ = fenceposts(deploy)
    current = new_rs_spec + sum(pods_upper_bound(rs) for rs in all_rs)
    max_total = want + surge
    if current >= max_total:
        return new_rs_spec
    return new_rs_spec + min(max_total - current, want - new_rs_spec)


def old_rs_scale_down(deploy: Obj, *, new_spec: int, new_available: int,
                      old: list[Obj]) -> dict[str, int]:
    """New spec.replicas for old ReplicaSets (by name) under maxUnavailable: first the
    unhealthy pods, then available ones while enough stay available (oldest RS first)."""
    old_total = sum(replicas(rs) for rs in old)
    if old_total == 0:
        return {}
    _, max_unavailable = fenceposts(deploy)
    min_available = replicas(deploy) - max_unavailable
    all_pods = new_spec + old_total
    new_unavailable = max(new_spec - new_available, 0)
    budget = all_pods - min_available - new_unavailable
    out: dict[str, int] = {}
    if budget <= 0:
        return out
    ordered = sorted(old, key=lambda rs: (pu.meta(rs).get("creationTimestamp") or "",
                                          pu.meta(rs)["name"]))
    spec = {pu.meta(rs)["name"]: replicas(rs) for rs in ordered}
    for rs in ordered:  # unhealthy pods cost no availability
        name = pu.meta(rs)["name"]
        unhealthy = spec[name] - available(rs)
        if budget <= 0 or unhealthy <= 0:
            continue
        cut = min(budget, unhealthy)
        spec[name] -= cut
        budget -= cut
        out[name] = spec[name]
    avail = new_available + sum(min(available(rs), spec[pu.meta(rs)["name"]])
                                for rs in ordered)
    room = avail - min_available
    for rs in ordered:
        name = pu.meta(rs)["name"]
        if room <= 0:
            break
        cut = min(spec[name], room)
        if cut <= 0:
            continue
        spec[name] -= cut
        room -= cut
        out[name] = spec[name]
    return {n: v for n, v in out.items() if v != replicas(
        next(rs for rs in old if pu.meta(rs)["name"] == n))}


def history_to_delete(old: list[Obj], limit: int) -> list[str]:
    """Old ReplicaSets fully scaled down, oldest revision first, beyond LIMIT."""
    idle = [rs for rs in old if replicas(rs) == 0 and status_int(rs, "replicas") == 0
            and not pu.being_deleted(rs)
            and status_int(rs, "observedGeneration") >= int(pu.meta(rs).get("generation")
                                                              or 0)]
    if len(idle) <= limit:
        return []
    idle.sort(key=lambda rs: (revision(rs), pu.meta(rs).get("creationTimestamp") or ""))
    return [pu.meta(rs)["name"] for rs in idle[:len(idle) - limit]]
