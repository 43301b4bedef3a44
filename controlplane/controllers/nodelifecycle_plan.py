"""Node lifecycle decisions, pure: a node's health from its Lease, the taints that follow,
and when each pod on a NoExecute-tainted node must be evicted.

    lease renewTime + grace < now ─► Ready=Unknown (NodeStatusUnknown)
    Ready: True ─► no taints │ False ─► not-ready │ Unknown ─► unreachable
                             (NoSchedule at once; NoExecute through the rate limiter)
    pod on a NoExecute taint ─► evict at taint.timeAdded + min tolerationSeconds of the
                                tolerations it uses; untolerated ─► now
    node_health(node, lease, now, grace) -> NodeHealth(ready status, taints wanted)
    eviction_time(pod, taints, now, default_toleration) -> when, or None (tolerated forever)
    RateLimiter(qps) ─► tokens for tainting nodes NoExecute (Kubernetes' node eviction rate)

A fresh lease after NodeStatusUnknown brings Ready back to True (the lease is the
heartbeat here); a Ready condition the agent wrote (True or False) is left as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controlplane.controllers.plan_util import (
    Obj,
    condition,
    meta,
    parse_time,
    rfc3339,
    set_condition,
)
from controlplane.scheduler.plugins.taint_toleration import tolerates

LEASE_NAMESPACE = "corral-node-lease"
NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
STATUS_UNKNOWN = "NodeStatusUnknown"
LEASE_RENEWED = "NodeLeaseRenewed"
DEFAULT_GRACE = 40.0
DEFAULT_TOLERATION_SECONDS = 300
DEFAULT_EVICTION_RATE = 0.1


@dataclass(frozen=True)
class NodeHealth:
    ready: str  # "True", "False" or "Unknown"
    conditions: list[Obj]  # the node's conditions as they should be
    no_schedule: tuple[Obj, ...]  # the lifecycle NoSchedule taints it should have
    no_execute: tuple[Obj, ...]  # the lifecycle NoExecute taints it should have
    probe_in: float  # seconds until the lease would go stale


def last_renewal(node: Mapping[str, Any], lease: Mapping[str, Any] | None) -> float:
    """When the node last showed life: the lease's renewTime (or acquireTime, or its
    creation); a node without a lease counts from its own creation."""
    if lease is not None:
        spec = lease.get("spec") or {}
        for t in (spec.get("renewTime"), spec.get("acquireTime"),
                  meta(lease).get("creationTimestamp")):
            got = parse_time(t)
            if got is not None:
                return got
    return parse_time(meta(node).get("creationTimestamp")) or 0.0


def node_health(node: Mapping[str, Any], lease: Mapping[str, Any] | None, *, now: float,
                grace: float = DEFAULT_GRACE) -> NodeHealth:
    conditions = [dict(c) for c in (node.get("status") or {}).get("conditions") or ()]
    ready = condition(node, "Ready")
    stale_at = last_renewal(node, lease) + grace
    if now > stale_at:
        if ready is None or ready.get("status") != "Unknown":
            conditions = set_condition(conditions, {
                "type": "Ready", "status": "Unknown", "reason": STATUS_UNKNOWN,
                "message": "Kubelet stopped posting node status.",
                "lastHeartbeatTime": (ready or {}).get("lastHeartbeatTime")
                or rfc3339(stale_at - grace)}, now=now)
        status = "Unknown"
    elif ready is not None and ready.get("reason") == STATUS_UNKNOWN:
        conditions = set_condition(conditions, {
            "type": "Ready", "status": "True", "reason": LEASE_RENEWED,
            "message": "the node's lease was renewed",
            "lastHeartbeatTime": rfc3339(last_renewal(node, lease))}, now=now)
        status = "True"
    else:
        status = str((ready or {}).get("status") or "True")
    key = {"False": NOT_READY, "Unknown": UNREACHABLE}.get(status)
    no_schedule: tuple[Obj, ...] = ()
    no_execute: tuple[Obj, ...] = ()
    if key:
        no_schedule = ({"key": key, "effect": "NoSchedule"},)
        no_execute = ({"key": key, "effect": "NoExecute"},)
    return NodeHealth(status, conditions, no_schedule, no_execute,
                      max(stale_at - now, 0.0) if status != "Unknown" else grace)


LIFECYCLE_KEYS = (NOT_READY, UNREACHABLE)


def lifecycle_taints(node: Mapping[str, Any]) -> list[Obj]:
    return [dict(t) for t in (node.get("spec") or {}).get("taints") or ()
            if t.get("key") in LIFECYCLE_KEYS]


def desired_taints(node: Mapping[str, Any], health: NodeHealth, *, now: float,
                   may_add_no_execute: bool) -> list[Obj]:
    """The node's taints: others kept, the lifecycle ones as HEALTH wants them. A new
    NoExecute taint is added only if MAY_ADD_NO_EXECUTE (the rate limiter gave a token)."""
    current = [dict(t) for t in (node.get("spec") or {}).get("taints") or ()]
    out = [t for t in current if t.get("key") not in LIFECYCLE_KEYS]
    have = {(t.get("key"), t.get("effect")): t for t in current
            if t.get("key") in LIFECYCLE_KEYS}
    for want in health.no_schedule:
        out.append(dict(have.get((want["key"], "NoSchedule")) or want))
    for want in health.no_execute:
        existing = have.get((want["key"], "NoExecute"))
        if existing is not None:
            out.append(existing)
        elif may_add_no_execute:
            out.append({**want, "timeAdded": rfc3339(now)})
    return out


def needs_no_execute(node: Mapping[str, Any], health: NodeHealth) -> bool:
    """HEALTH wants a NoExecute taint the node does not have yet."""
    have = {(t.get("key"), t.get("effect")) for t in lifecycle_taints(node)}
    return any((t["key"], "NoExecute") not in have for t in health.no_execute)


def _with_defaults(tolerations: Sequence[Mapping[str, Any]],
                   default_seconds: int) -> list[Mapping[str, Any]]:
    """Kubernetes' DefaultTolerationSeconds: a pod that tolerates neither not-ready nor
    unreachable NoExecute gets both for DEFAULT_SECONDS."""
    out = list(tolerations)
    for key in LIFECYCLE_KEYS:
        taint = {"key": key, "effect": "NoExecute"}
        if not any(tolerates(t, taint) for t in tolerations):
            out.append({**taint, "operator": "Exists", "tolerationSeconds": default_seconds})
    return out


def eviction_time(pod: Mapping[str, Any], taints: Sequence[Mapping[str, Any]], *,
                  now: float, default_seconds: int = DEFAULT_TOLERATION_SECONDS,
                  ) -> float | None:
    """When POD must be evicted from a node with TAINTS: None if no NoExecute taint
    applies or all are tolerated for ever; NOW when one is not tolerated at all."""
    tolerations = _with_defaults((pod.get("spec") or {}).get("tolerations") or (),
                                 default_seconds)
    when: float | None = None
    for taint in taints:
        if taint.get("effect") != "NoExecute":
            continue
        used = [t for t in tolerations if tolerates(t, taint)]
        if not used:
            return now
        limits = [t.get("tolerationSeconds") for t in used]
        if any(s is None for s in limits):
            continue  # some toleration of it lasts for ever
        seconds = max(min(int(s) for s in limits if s is not None), 0)
        added = parse_time(taint.get("timeAdded")) or now
        at = added + seconds
        when = at if when is None else min(when, at)
    return when


class RateLimiter:
    """A token bucket: QPS tokens a second, BURST at most; the clock is the caller's."""

    def __init__(self, qps: float = DEFAULT_EVICTION_RATE, *, burst: int = 1) -> None:
        self.qps = qps
        self.burst = burst
        self._tokens = float(burst)
        self._last: float | None = None

    def _fill(self, now: float) -> None:
        if self._last is not None and now > self._last:
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
        if self._last is None or now > self._last:
            self._last = now

    def try_take(self, now: float) -> bool:
        self._fill(now)
        if self.qps <= 0:
            return False
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def wait(self, now: float) -> float:
        """Seconds until the next token."""
        self._fill(now)
        if self.qps <= 0:
            return float("inf")
        if self._tokens >= 1.0:
            return 0.0
        return (1.0 - self._tokens) / self.qps
