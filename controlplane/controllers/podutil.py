"""Pure helpers the workload controllers share: owner references, pod states, times.

    controller_ref(obj)          the ownerReference with controller: true, or None
    owner_ref(owner)             the reference a controller puts on what it creates
    is_active / is_ready / is_available(pod, min_ready, now)
    deletion_rank(pod)           sort key: the pods to delete first sort first
    generate_name(prefix)        "<prefix><5 random chars>", the prefix cut to fit 63
"""

from __future__ import annotations

import calendar
import datetime
import functools
import secrets
import time
from typing import Any

Obj = dict[str, Any]
TERMINATED = ("Succeeded", "Failed")
# Kubernetes' generateName: 5 random characters from an alphabet without vowels (no
# words) or look-alikes, after a prefix cut to 63 - 5 = 58 characters.
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
SUFFIX_LENGTH = 5
MAX_GENERATE_PREFIX = 63 - SUFFIX_LENGTH


def generate_name(prefix: str) -> str:
    """A name as the API server makes one from metadata.generateName PREFIX."""
    return prefix[:MAX_GENERATE_PREFIX] + "".join(
        secrets.choice(NAME_ALPHABET) for _ in range(SUFFIX_LENGTH))


def rfc3339(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(s: str | None) -> float | None:
    """Seconds since the epoch of an RFC 3339 timestamp (None if absent or unreadable)."""
    if not s:
        return None
    return _parse_seconds(s)


@functools.lru_cache(maxsize=8192)  # pods made in one burst share their timestamps
def _parse_seconds(s: str) -> float | None:
    try:
        return float(calendar.timegm(time.strptime(s[:19], "%Y-%m-%dT%H:%M:%S")))
    except ValueError:
        return None


def meta(obj: Obj) -> Obj:
    m: Obj = obj.get("metadata") or {}
    return m


def uid(obj: Obj) -> str:
    return str(meta(obj).get("uid") or "")


def controller_ref(obj: Obj) -> Obj | None:
    for ref in meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def owner_ref(owner: Obj) -> Obj:
    """The controller reference OWNER puts on its dependents."""
    m = meta(owner)
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": m["name"],
            "uid": m["uid"], "controller": True, "blockOwnerDeletion": True}


def is_controlled_by(obj: Obj, owner: Obj) -> bool:
    ref = controller_ref(obj)
    return ref is not None and ref.get("uid") == uid(owner)


def being_deleted(obj: Obj) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


def is_active(pod: Obj) -> bool:
    """Counts toward replicas: not finished and not being deleted."""
    return not being_deleted(pod) and (pod.get("status") or {}).get("phase") not in TERMINATED


def _ready_condition(pod: Obj) -> Obj | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return dict(c)
    return None


def is_ready(pod: Obj) -> bool:
    c = _ready_condition(pod)
    return c is not None and c.get("status") == "True"


def is_available(pod: Obj, min_ready_seconds: int, now: float) -> bool:
    """Ready for at least MIN_READY_SECONDS (Kubernetes' availability)."""
    c = _ready_condition(pod)
    if c is None or c.get("status") != "True":
        return False
    if min_ready_seconds <= 0:
        return True
    since = parse_time(c.get("lastTransitionTime"))
    return since is not None and since + min_ready_seconds <= now


def ready_since(pod: Obj) -> float | None:
    c = _ready_condition(pod)
    if c is None or c.get("status") != "True":
        return None
    return parse_time(c.get("lastTransitionTime"))


_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def deletion_rank(pod: Obj) -> tuple[int, int, int, float, float, str]:
    """Sorts the pods to delete first, first (Kubernetes' ActivePods order): unscheduled
    before scheduled, Pending before Unknown before Running, not ready before ready,
    recently ready before long ready, newer before older."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    scheduled = 1 if spec.get("nodeName") else 0
    phase = _PHASE_RANK.get(str(status.get("phase") or "Pending"), 0)
    ready = 1 if is_ready(pod) else 0
    since = ready_since(pod) or 0.0
    created = parse_time(meta(pod).get("creationTimestamp")) or 0.0
    return scheduled, phase, ready, -since, -created, str(meta(pod).get("name", ""))


def labels_of(obj: Obj) -> dict[str, str]:
    return dict(meta(obj).get("labels") or {})


def has_labels(obj: Obj, want: dict[str, str]) -> bool:
    have = meta(obj).get("labels") or {}
    return all(have.get(k) == v for k, v in want.items())
