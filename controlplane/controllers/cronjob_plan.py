"""The CronJob controller's decisions, pure: plan(cronjob, jobs, now) -> CronJobPlan.

    cronjob + the Jobs it owns (by controller uid) + now
      ├─ status.active  = its unfinished Jobs; lastSuccessfulTime = the latest completion
      ├─ history: finished Jobs beyond successful/failedJobsHistoryLimit ─► delete the oldest
      ├─ suspended, or the schedule / timeZone unusable (event) ─► nothing more
      ├─ the most recent schedule time in (lastScheduleTime or creation, now], no earlier
      │  than now - startingDeadlineSeconds; none ─► wait for the next one
      │  (runs missed further back are dropped, as in Kubernetes)
      │     more than 100 of them missed ─► a TooManyMissedTimes event, run only the latest
      ├─ its Job `<name>-<minutes since the epoch>` exists, or it is lastScheduleTime ─► done
      ├─ concurrencyPolicy: Forbid with a Job active ─► skip (it runs when that one ends, if
      │  still within the deadline); Replace ─► delete the active Jobs; Allow ─► run
      └─ create the Job from spec.jobTemplate; lastScheduleTime = that time
    always: requeue at the next schedule time (no polling).

Schedule times are whole minutes read on the wall clock of spec.timeZone (api.batch). The
plan never mutates its inputs.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from api.batch import Schedule, ScheduleError, parse_schedule, time_zone
from controlplane.controllers.job_plan import finished_condition
from controlplane.controllers.plan_util import Obj, meta, name_of, parse_time, rfc3339

TOO_MANY_MISSED = 100
SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"
CRONJOB_NAME_LABEL = "batch.kubernetes.io/cronjob-name"
REQUEUE_SLACK = 0.1  # seconds past the schedule time, so the clock has surely reached it
Event = tuple[str, str, str]  # (type, reason, message)


@dataclass(frozen=True)
class CronJobPlan:
    status: Obj  # the CronJob's new status (without a Job this plan creates)
    create: Obj | None = None  # the Job to create
    delete: tuple[str, ...] = ()  # names of Jobs to delete (Replace, history limits)
    requeue_after: float | None = None  # seconds until the next schedule time
    events: tuple[Event, ...] = field(default=())


def job_name(cronjob: Mapping[str, Any], scheduled: float) -> str:
    """Kubernetes' name of the Job of one run: idempotent per schedule time."""
    return f"{name_of(cronjob)}-{int(scheduled // 60)}"


def latest_at_or_before(schedule: Schedule, tz: dt.tzinfo, *, now: float,
                        after: float) -> float | None:
    """The last schedule time in (AFTER, NOW]: searched in windows back from NOW that grow
    four-fold, so the cost follows the schedule's density, not NOW - AFTER."""
    window = 60.0
    while True:
        start = max(now - window, after)
        last = None
        t = schedule.next(start, tz)
        while t is not None and t <= now:
            last = t
            t = schedule.next(t, tz)
        if last is not None or start <= after:
            return last
        window *= 4


def missed_times(schedule: Schedule, tz: dt.tzinfo, *, since: float,
                 now: float) -> tuple[float | None, int]:
    """The most recent schedule time in (SINCE, NOW] and how many there are; counting stops
    at TOO_MANY_MISSED + 1."""
    count = 0
    last: float | None = None
    t = schedule.next(since, tz)
    while t is not None and t <= now:
        count += 1
        last = t
        if count > TOO_MANY_MISSED:
            return latest_at_or_before(schedule, tz, now=now, after=t - 1), count
        t = schedule.next(t, tz)
    return last, count


def owned(cronjob: Mapping[str, Any], job: Mapping[str, Any]) -> bool:
    uid = meta(cronjob).get("uid")
    return any(r.get("uid") == uid and r.get("controller")
               for r in meta(job).get("ownerReferences") or ())


def job_reference(job: Mapping[str, Any]) -> Obj:
    m = meta(job)
    return {"apiVersion": "batch/v1", "kind": "Job", "name": m.get("name", ""),
            "namespace": m.get("namespace", ""), "uid": m.get("uid", "")}


def _start_order(job: Mapping[str, Any]) -> tuple[bool, float, str]:
    """Oldest first; Jobs that never started after every one that did."""
    start = parse_time((job.get("status") or {}).get("startTime"))
    return start is None, start or 0.0, name_of(job)


def _history(spec: Mapping[str, Any], finished: Sequence[tuple[Mapping[str, Any], str]],
             ) -> list[str]:
    """The finished Jobs beyond the history limits, oldest first."""
    out: list[str] = []
    for kind, key, default in (("Complete", "successfulJobsHistoryLimit", 3),
                               ("Failed", "failedJobsHistoryLimit", 1)):
        limit = spec.get(key, default)
        if limit is None:
            continue
        done = sorted((j for j, k in finished if k == kind), key=_start_order)
        out += [name_of(j) for j in done[:max(0, len(done) - int(limit))]]
    return out


def new_job(cronjob: Mapping[str, Any], scheduled: float, tz: dt.tzinfo) -> Obj:
    """The Job of the run at SCHEDULED, from spec.jobTemplate, owned by CRONJOB."""
    template = copy.deepcopy((cronjob.get("spec") or {}).get("jobTemplate") or {})
    tmeta = template.get("metadata") or {}
    m = meta(cronjob)
    annotations = {**(tmeta.get("annotations") or {}),
                   SCHEDULED_TIMESTAMP: dt.datetime.fromtimestamp(scheduled, tz).isoformat()}
    job_meta: Obj = {
        "name": job_name(cronjob, scheduled),
        "labels": {**(tmeta.get("labels") or {}), CRONJOB_NAME_LABEL: m.get("name", "")},
        "annotations": annotations,
        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob",
                             "name": m.get("name", ""), "uid": m.get("uid", ""),
                             "controller": True, "blockOwnerDeletion": True}]}
    if m.get("namespace"):
        job_meta["namespace"] = m["namespace"]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": job_meta,
            "spec": template.get("spec") or {}}


def plan(cronjob: Mapping[str, Any], jobs: Sequence[Mapping[str, Any]],
         now: float) -> CronJobPlan:
    """What the controller should do for CRONJOB given the Jobs it owns, at time NOW."""
    spec = cronjob.get("spec") or {}
    old = dict(cronjob.get("status") or {})
    active: list[Mapping[str, Any]] = []
    finished: list[tuple[Mapping[str, Any], str]] = []
    last_success = parse_time(old.get("lastSuccessfulTime"))
    for j in jobs:
        done = finished_condition(j)
        if done is None:
            if not meta(j).get("deletionTimestamp"):
                active.append(j)
            continue
        finished.append((j, str(done.get("type"))))
        if done.get("type") == "Complete":
            t = parse_time((j.get("status") or {}).get("completionTime")) or parse_time(
                done.get("lastTransitionTime"))
            if t is not None and (last_success is None or t > last_success):
                last_success = t
    status: Obj = {k: v for k, v in old.items() if k != "active"}
    refs = [job_reference(j) for j in sorted(active, key=name_of)]
    if refs:
        status["active"] = refs
    if last_success is not None:
        status["lastSuccessfulTime"] = rfc3339(last_success)
    delete = _history(spec, finished)

    def result(**kw: Any) -> CronJobPlan:
        return CronJobPlan(status=status, delete=tuple(delete), **kw)

    if spec.get("suspend"):
        return result()
    try:
        tz = time_zone(spec.get("timeZone"))
    except ValueError as err:
        return result(events=(("Warning", "UnknownTimeZone",
                               f"spec.timeZone: {err}"),))
    try:
        schedule = parse_schedule(str(spec.get("schedule") or ""))
    except ScheduleError as err:
        return result(events=(("Warning", "UnparseableSchedule",
                               f"spec.schedule: {err}"),))
    nxt = schedule.next(now, tz)
    requeue = None if nxt is None else nxt - now + REQUEUE_SLACK
    last_scheduled = parse_time(old.get("lastScheduleTime"))
    since = last_scheduled or parse_time(meta(cronjob).get("creationTimestamp")) or now
    deadline = spec.get("startingDeadlineSeconds")
    if deadline is not None:
        since = max(since, now - int(deadline))
    scheduled, count = missed_times(schedule, tz, since=since, now=now)
    if scheduled is None:
        return result(requeue_after=requeue)
    events: list[Event] = []
    if count > TOO_MANY_MISSED:
        events.append(("Warning", "TooManyMissedTimes",
                       f"too many missed start times: more than {TOO_MANY_MISSED}; set or "
                       f"decrease spec.startingDeadlineSeconds or check clock skew"))
    name = job_name(cronjob, scheduled)
    if any(name_of(j) == name for j in jobs):  # this run was made already
        status["lastScheduleTime"] = rfc3339(scheduled)
        return result(requeue_after=requeue, events=tuple(events))
    policy = spec.get("concurrencyPolicy") or "Allow"
    if policy == "Forbid" and active:
        events.append(("Normal", "JobAlreadyActive", "Not starting job because prior "
                       "execution is running and concurrency policy is Forbid"))
        return result(requeue_after=requeue, events=tuple(events))
    if policy == "Replace" and active:
        delete = [name_of(j) for j in sorted(active, key=name_of)] + delete
        status.pop("active", None)
    status["lastScheduleTime"] = rfc3339(scheduled)
    return result(create=new_job(cronjob, scheduled, tz), requeue_after=requeue,
                  events=tuple(events))
