"""The Job controller's decisions, pure: plan(job, pods, now) -> JobPlan.

    job + its pods (by controller uid) + now
      ├─ finished (Complete/Failed)? ─► TTL after finishing: delete the Job, or wait
      ├─ suspended? ─► delete the active pods, condition Suspended
      ├─ past activeDeadlineSeconds? ─► Failed/DeadlineExceeded, delete the active pods
      ├─ failures > backoffLimit? ─► Failed/BackoffLimitExceeded, delete the active pods
      ├─ succeeded >= completions? ─► Complete, completionTime
      └─ active vs min(parallelism, completions - succeeded):
            too many ─► delete the extra (pending before running, newest first)
            too few  ─► create, unless in backoff after a failure (10 s doubling, <= 6 min)

Failures count failed pods, plus container restarts of active pods when restartPolicy is
OnFailure (as Kubernetes does). The plan never mutates its inputs.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controlplane.controllers.plan_util import (
    Obj,
    condition,
    is_active,
    is_ready,
    meta,
    name_of,
    owner_reference,
    parse_time,
    phase,
    rfc3339,
    set_condition,
)

JOB_NAME_LABEL = "job-name"
CONTROLLER_UID_LABEL = "controller-uid"
BATCH_JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
BATCH_CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"
BACKOFF_BASE = 10.0
BACKOFF_MAX = 360.0
MAX_CREATES_PER_SYNC = 500


@dataclass(frozen=True)
class JobPlan:
    status: Obj  # the Job's new status
    create: int = 0  # pods to create from the template
    delete: tuple[str, ...] = ()  # names of pods to delete
    delete_job: bool = False  # the TTL after finishing has run out
    requeue_after: float | None = None  # look again in this many seconds
    events: tuple[tuple[str, str, str], ...] = field(default=())  # (type, reason, message)


def backoff_delay(failures: int, *, base: float = BACKOFF_BASE,
                  cap: float = BACKOFF_MAX) -> float:
    """The wait before re-creating a pod after FAILURES failures: 10 s doubling, <= 6 min."""
    if failures <= 0:
        return 0.0
    return float(min(base * 2.0 ** min(failures - 1, 16), cap))


def finished_condition(job: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for kind in ("Complete", "Failed"):
        c = condition(job, kind)
        if c is not None and c.get("status") == "True":
            return c
    return None


def _finish_time(pod: Mapping[str, Any]) -> float:
    """When a failed pod (or its last container) ended; its creation if unknown."""
    best: float | None = None
    for cs in (pod.get("status") or {}).get("containerStatuses") or ():
        for state in ("state", "lastState"):
            t = parse_time(((cs.get(state) or {}).get("terminated") or {}).get("finishedAt"))
            if t is not None and (best is None or t > best):
                best = t
    if best is None:
        c = condition(pod, "Ready")
        best = parse_time((c or {}).get("lastTransitionTime"))
    return best or parse_time(meta(pod).get("creationTimestamp")) or 0.0


def _restarts(pod: Mapping[str, Any]) -> int:
    return sum(int(cs.get("restartCount") or 0)
               for cs in (pod.get("status") or {}).get("containerStatuses") or ())


def _deletion_order(pod: Mapping[str, Any]) -> tuple[bool, bool, bool, float, str]:
    """Sort key: which active pod to delete first (unbound, pending, not ready, newest)."""
    created = parse_time(meta(pod).get("creationTimestamp")) or 0.0
    return (bool((pod.get("spec") or {}).get("nodeName")), phase(pod) != "Pending",
            is_ready(pod), -created, name_of(pod))


def plan(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], now: float, *,
         backoff_base: float = BACKOFF_BASE) -> JobPlan:
    """What the controller should do for JOB given the pods it owns, at time NOW;
    BACKOFF_BASE is the first wait after a failure (it doubles, up to BACKOFF_MAX)."""
    spec = job.get("spec") or {}
    old = dict(job.get("status") or {})
    conditions: list[Obj] = [dict(c) for c in old.get("conditions") or ()]
    active = [p for p in pods if is_active(p)]
    succeeded = sum(1 for p in pods if phase(p) == "Succeeded")
    failed_pods = [p for p in pods if phase(p) == "Failed"]
    failed = max(len(failed_pods), int(old.get("failed") or 0))
    succeeded = max(succeeded, int(old.get("succeeded") or 0))
    status: Obj = {**old, "active": len(active), "succeeded": succeeded, "failed": failed,
                   "ready": sum(1 for p in active if is_ready(p))}
    everything = tuple(sorted(name_of(p) for p in active))

    done = finished_condition(job)
    if done is not None:
        status["active"] = len(active)
        return _after_finish(job, status, done, now, delete=everything)

    if spec.get("suspend"):
        status["conditions"] = set_condition(conditions, {
            "type": "Suspended", "status": "True", "reason": "JobSuspended",
            "message": "Job suspended"}, now=now)
        status.pop("startTime", None)
        return JobPlan(status=status, delete=everything)
    if condition(job, "Suspended") is not None:
        conditions = set_condition(conditions, {
            "type": "Suspended", "status": "False", "reason": "JobResumed",
            "message": "Job resumed"}, now=now)
    start = parse_time(old.get("startTime"))
    if start is None:
        start = now
        status["startTime"] = rfc3339(now)

    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and now >= start + int(deadline):
        return _fail(status, conditions, now, "DeadlineExceeded",
                     "Job was active longer than specified deadline", everything)
    failures = failed
    if (spec.get("template") or {}).get("spec", {}).get("restartPolicy") == "OnFailure":
        failures += sum(_restarts(p) for p in active)
    limit = int(spec.get("backoffLimit", 6))
    if failures > limit:
        return _fail(status, conditions, now, "BackoffLimitExceeded",
                     "Job has reached the specified backoff limit", everything)

    completions = spec.get("completions")
    parallelism = int(spec.get("parallelism", 1))
    if completions is not None:
        complete = succeeded >= int(completions)
        want = max(0, min(parallelism, int(completions) - succeeded))
    else:  # work queue: done when one succeeded and none is left running
        complete = succeeded > 0 and not active
        want = len(active) if succeeded > 0 else parallelism
    if complete:
        status["conditions"] = set_condition(conditions, {
            "type": "Complete", "status": "True", "reason": "Completed",
            "message": "Job completed"}, now=now)
        status["completionTime"] = rfc3339(now)
        status["active"] = 0
        return JobPlan(status=status, delete=everything,
                       events=(("Normal", "Completed", "Job completed"),))
    status["conditions"] = conditions
    requeue = None if deadline is None else max(0.0, start + int(deadline) - now)
    if len(active) > want:
        extra = sorted(active, key=_deletion_order)[:len(active) - want]
        return JobPlan(status=status, delete=tuple(name_of(p) for p in extra),
                       requeue_after=requeue)
    missing = want - len(active)
    if missing and failures:
        last = max((_finish_time(p) for p in failed_pods), default=now)
        wait = last + backoff_delay(failures, base=backoff_base) - now
        if wait > 0:
            return JobPlan(status=status, requeue_after=_min(requeue, wait))
    return JobPlan(status=status, create=min(missing, MAX_CREATES_PER_SYNC),
                   requeue_after=requeue)


def _min(a: float | None, b: float) -> float:
    return b if a is None else min(a, b)


def _fail(status: Obj, conditions: list[Obj], now: float, reason: str, message: str,
          delete: tuple[str, ...]) -> JobPlan:
    status["conditions"] = set_condition(conditions, {
        "type": "Failed", "status": "True", "reason": reason, "message": message}, now=now)
    status["active"] = 0
    return JobPlan(status=status, delete=delete, events=(("Warning", reason, message),))


def _after_finish(job: Mapping[str, Any], status: Obj, done: Mapping[str, Any], now: float,
                  *, delete: tuple[str, ...]) -> JobPlan:
    ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
    status["active"] = 0
    if ttl is None:
        return JobPlan(status=status, delete=delete)
    finished = parse_time(status.get("completionTime")) or parse_time(
        done.get("lastTransitionTime")) or now
    left = finished + int(ttl) - now
    if left <= 0:
        return JobPlan(status=status, delete_job=True)
    return JobPlan(status=status, delete=delete, requeue_after=left)


def new_pod(job: Mapping[str, Any]) -> Obj:
    """A pod for JOB from its template: the job's labels, an owner reference, a name
    generated from the job's."""
    template = copy.deepcopy((job.get("spec") or {}).get("template") or {})
    tmeta = template.get("metadata") or {}
    m = meta(job)
    labels = {**(tmeta.get("labels") or {}), JOB_NAME_LABEL: m.get("name", ""),
              CONTROLLER_UID_LABEL: m.get("uid", ""),
              BATCH_JOB_NAME_LABEL: m.get("name", ""),
              BATCH_CONTROLLER_UID_LABEL: m.get("uid", "")}
    pod_meta: Obj = {"generateName": f"{m.get('name', '')}-", "labels": labels,
                     "ownerReferences": [owner_reference(job)]}
    if m.get("namespace"):
        pod_meta["namespace"] = m["namespace"]
    if tmeta.get("annotations"):
        pod_meta["annotations"] = dict(tmeta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta,
            "spec": template.get("spec") or {}}


def pod_selector(job: Mapping[str, Any]) -> str:
    """The label selector of the pods the job made."""
    return f"{CONTROLLER_UID_LABEL}={meta(job).get('uid', '')}"


def owned(job: Mapping[str, Any], pod: Mapping[str, Any]) -> bool:
    uid = meta(job).get("uid")
    return any(r.get("uid") == uid and r.get("controller")
               for r in meta(pod).get("ownerReferences") or ())
