"""Small pure helpers the Job, DaemonSet, node lifecycle and Endpoints plans share: RFC 3339
times, pod state (active, ready, terminal), owner references and conditions."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

Obj = dict[str, Any]
TERMINAL = ("Succeeded", "Failed")


def rfc3339(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> float | None:
    """Seconds since the epoch of an RFC 3339 time; None when missing or malformed."""
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def name_of(obj: Mapping[str, Any]) -> str:
    return str(meta(obj).get("name") or "")


def phase(pod: Mapping[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


def deleting(obj: Mapping[str, Any]) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


def is_active(pod: Mapping[str, Any]) -> bool:
    """Neither finished nor being deleted."""
    return phase(pod) not in TERMINAL and not deleting(pod)


def condition(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or ():
        if c.get("type") == kind:
            return dict(c)
    return None


def is_ready(pod: Mapping[str, Any]) -> bool:
    c = condition(pod, "Ready")
    return c is not None and c.get("status") == "True"


def ready_since(pod: Mapping[str, Any]) -> float | None:
    """When the pod last became ready, or None if it is not ready."""
    c = condition(pod, "Ready")
    if c is None or c.get("status") != "True":
        return None
    return parse_time(c.get("lastTransitionTime")) or parse_time(
        meta(pod).get("creationTimestamp")) or 0.0


def is_available(pod: Mapping[str, Any], *, min_ready_seconds: int, now: float) -> bool:
    since = ready_since(pod)
    return since is not None and (min_ready_seconds <= 0 or since + min_ready_seconds <= now)


def controller_uid(obj: Mapping[str, Any]) -> str:
    for ref in meta(obj).get("ownerReferences") or ():
        if ref.get("controller"):
            return str(ref.get("uid") or "")
    return ""


def owner_reference(owner: Mapping[str, Any]) -> Obj:
    m = meta(owner)
    return {"apiVersion": owner.get("apiVersion", ""), "kind": owner.get("kind", ""),
            "name": m.get("name", ""), "uid": m.get("uid", ""), "controller": True,
            "blockOwnerDeletion": True}


def set_condition(conditions: Sequence[Mapping[str, Any]], new: Mapping[str, Any], *,
                  now: float) -> list[Obj]:
    """CONDITIONS with NEW in place of the one of its type; lastTransitionTime moves only
    when the status changes."""
    out: list[Obj] = []
    found = False
    for c in conditions:
        if c.get("type") != new.get("type"):
            out.append(dict(c))
            continue
        found = True
        merged = {**c, **new}
        if c.get("status") != new.get("status") or "lastTransitionTime" not in c:
            merged["lastTransitionTime"] = rfc3339(now)
        out.append(merged)
    if not found:
        out.append({**new, "lastTransitionTime": rfc3339(now)})
    return out
