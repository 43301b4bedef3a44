"""The batch/v1 kinds: Job (pods that run to completion) and CronJob (Jobs on a schedule).

    CronJob spec.schedule ─► parse_schedule() ─► Schedule (a set of values per field)
    Schedule.next(after, tz) ─► the next run: the fields are matched on the wall clock of
        spec.timeZone (UTC when unset), then turned into an instant; wall times a
        spring-forward skips do not run, wall times a fall-back repeats run once (the
        first) unless the hour field is * (then the repeated hour runs like any other)

The cron dialect is Kubernetes' (five fields; `*`, `?`, ranges, lists, steps, month and
weekday names; @yearly @annually @monthly @weekly @daily @midnight @hourly).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from typing import Any

from api import meta
from api import schema as s
from api.fields import OBJECT_REFERENCE, KindDef, condition, label_selector, template_metadata
from api.pod import pod_template
from api.workloads import selector_matches_template


def _job_ok(value: Any, path: str, errors: s.Errors) -> None:
    selector_matches_template(value, path, errors, required=False)
    policy = ((value.get("template") or {}).get("spec") or {}).get("restartPolicy",
                                                                    "Always")
    if policy not in ("OnFailure", "Never"):
        errors.append(s.FieldError(f"{path}.template.spec.restartPolicy",
                                   f"must be OnFailure or Never for a Job, got {policy!r}"))


def _completions_default(out: dict[str, Any]) -> None:
    """Kubernetes: with neither completions nor parallelism, both are 1."""
    if out.get("completions") is None and out.get("parallelism") is None:
        out["completions"] = 1
    out.setdefault("parallelism", 1)


JOB_SPEC = s.Obj({
    "completions": s.integer("Successful pods needed; default 1 unless only "
                             "parallelism is set.", minimum=0),
    "parallelism": s.integer("Pods running at once at most.", minimum=0),
    "backoffLimit": s.integer("Retries before the job is failed.", default=6,
                              minimum=0),
    "activeDeadlineSeconds": s.integer("Seconds the job may run before it is "
                                       "failed.", minimum=1),
    "ttlSecondsAfterFinished": s.integer("Seconds after finishing before the job "
                                         "is deleted.", minimum=0),
    "completionMode": s.string("NonIndexed (Indexed is not supported).",
                               default="NonIndexed", enum=("NonIndexed",)),
    "suspend": s.boolean("Create no pods while true.", default=False),
    "manualSelector": s.boolean("Use the given selector instead of a generated one."),
    "selector": label_selector("Label query over its pods; generated if empty."),
    "template": pod_template("The pod the job runs; restartPolicy OnFailure or "
                             "Never."),
}, required=("template",), validators=(_job_ok,),
    post_defaults=(_completions_default,), doc="The desired state of the job.")


JOB = KindDef(
    api_version="batch/v1", kind="Job", resource="jobs", namespaced=True,
    doc="Runs pods until a number of them complete successfully.",
    fields={
        "spec": JOB_SPEC,
        "status": s.Obj({
            "active": s.integer("Pods running now."),
            "succeeded": s.integer("Pods that succeeded."),
            "failed": s.integer("Pods that failed."),
            "ready": s.integer("Active pods that are ready."),
            "startTime": s.string("When the job started, RFC 3339."),
            "completionTime": s.string("When the job completed, RFC 3339."),
            "conditions": s.List(condition(with_probe_time=True),
                                 doc="Complete, Failed, Suspended."),
        }, doc="The observed state of the job."),
    })


# ---- cron schedules -------------------------------------------------------------------

MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
          "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
          "@hourly": "0 * * * *"}
_MONTHS = {m: i + 1 for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}
_DAYS = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
# (name, lowest, highest, names); a day of week of 7 is Sunday, as in Vixie cron
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS), ("day of week", 0, 7, _DAYS))
_HORIZON_YEARS = 9  # a schedule that matches no minute in this many years never fires
_UTC = dt.UTC


class ScheduleError(ValueError):
    """A schedule that does not parse; the message names the field and the bad part."""


@dataclass(frozen=True)
class Schedule:
    """A parsed cron schedule: the values each field allows. As in cron, when both the
    day of month and the day of week are restricted (neither is `*`), a day matching
    either runs; otherwise a day must match both."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # the day-of-month field was * or ?
    any_weekday: bool  # the day-of-week field was * or ?

    def day_matches(self, day: dt.date) -> bool:
        dom = day.day in self.days
        dow = (day.weekday() + 1) % 7 in self.weekdays
        if self.any_day or self.any_weekday:
            return dom and dow
        return dom or dow

    def next_wall(self, after: dt.datetime) -> dt.datetime | None:
        """The first matching wall-clock minute after the naive time AFTER, or None if
        none comes within _HORIZON_YEARS (February 30th)."""
        t = after.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        last_year = t.year + _HORIZON_YEARS
        while t.year <= last_year:
            if t.month not in self.months:
                t = dt.datetime(t.year + t.month // 12, t.month % 12 + 1, 1)
            elif not self.day_matches(t.date()):
                t = dt.datetime(t.year, t.month, t.day) + dt.timedelta(days=1)
            elif t.hour not in self.hours:
                t = t.replace(minute=0) + dt.timedelta(hours=1)
            elif t.minute not in self.minutes:
                t += dt.timedelta(minutes=1)
            else:
                return t
        return None

    def next(self, after: float, tz: dt.tzinfo = _UTC) -> float | None:
        """The first run strictly after AFTER (seconds since the epoch), its fields read
        on the wall clock of TZ; None if the schedule never fires."""
        wall = dt.datetime.fromtimestamp(after, tz).replace(tzinfo=None)
        change = _offset(after + 3 * 3600, tz) - _offset(after - 3 * 3600, tz)
        near_change = bool(change)  # within 3 hours of a clock change
        slack = abs(change) + dt.timedelta(minutes=1)
        horizon = wall + slack
        if near_change:
            wall -= slack  # after a fall-back, an earlier wall time can be a later instant
        best: float | None = None
        for _ in range(100_000):
            found = self.next_wall(wall)
            if found is None:
                break
            for at in self._instants(found, tz):
                if at > after and (best is None or at < best):
                    best = at
            if best is not None and (not near_change or found >= horizon):
                break  # wall order is time order here: the first one found is the next
            wall = found
        return best

    def _instants(self, wall: dt.datetime, tz: dt.tzinfo) -> tuple[float, ...]:
        """When the naive WALL time happens in TZ: never when a spring-forward skips it;
        when a fall-back repeats it, the first time only, unless the hour field is * (so
        an hourly or every-minute schedule keeps running through the repeated hour)."""
        first = wall.replace(tzinfo=tz).timestamp()
        if dt.datetime.fromtimestamp(first, tz).replace(tzinfo=None) != wall:
            return ()
        second = wall.replace(tzinfo=tz, fold=1).timestamp()
        if second != first and len(self.hours) == 24:
            return first, second
        return (first,)


def _offset(at: float, tz: dt.tzinfo) -> dt.timedelta:
    return dt.datetime.fromtimestamp(at, tz).utcoffset() or dt.timedelta(0)


def _number(text: str, names: dict[str, int]) -> int | None:
    if text.isdigit():
        return int(text)
    return names.get(text.lower())


def _field(text: str, *, name: str, low: int, high: int,
           names: dict[str, int]) -> tuple[set[int], bool]:
    """The values of one field, and whether it is a bare * (or ?)."""
    values: set[int] = set()
    star = False
    for part in text.split(","):
        def bad(why: str, part: str = part) -> ScheduleError:
            return ScheduleError(f'invalid {name} "{part}": {why}')
        span, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) < 1:
                raise bad("the step must be a positive integer")
            step = int(step_text)
        if span in ("*", "?"):
            start, end = low, high
            star = star or step == 1
        else:
            first, dash, last = span.partition("-")
            start_n = _number(first, names)
            end_n = _number(last, names) if dash else (high if slash else start_n)
            if start_n is None or end_n is None:
                raise bad("not a number" + (" or a name" if names else ""))
            start, end = start_n, end_n
            for v in (start, end):
                if not low <= v <= high:
                    raise bad(f"must be within {low}-{high}")
            if start > end:
                raise bad("the range starts after it ends")
        values.update(range(start, end + 1, step))
    return values, star


def parse_schedule(text: str) -> Schedule:
    """A Schedule from a five-field cron line or a macro; ScheduleError names the field."""
    line = text.strip()
    if line.startswith(("TZ=", "CRON_TZ=")):
        raise ScheduleError("TZ and CRON_TZ are not supported in a schedule; "
                            "set spec.timeZone instead")
    if line.startswith("@"):
        if line.lower() not in MACROS:
            raise ScheduleError(f'unknown macro "{line}" (one of {", ".join(MACROS)})')
        line = MACROS[line.lower()]
    parts = line.split()
    if len(parts) != len(_FIELDS):
        raise ScheduleError(f"expected 5 fields (minute hour day-of-month month "
                            f"day-of-week) or a macro, got {len(parts)}")
    fields = [_field(part, name=name, low=low, high=high, names=names)
              for part, (name, low, high, names) in zip(parts, _FIELDS, strict=True)]
    weekdays = {d % 7 for d in fields[4][0]}
    return Schedule(minutes=frozenset(fields[0][0]), hours=frozenset(fields[1][0]),
                    days=frozenset(fields[2][0]), months=frozenset(fields[3][0]),
                    weekdays=frozenset(weekdays), any_day=fields[2][1],
                    any_weekday=fields[4][1])


def time_zone(name: str | None) -> dt.tzinfo:
    """spec.timeZone as a tzinfo (UTC when unset); ValueError if it is not an IANA name."""
    if name is None:
        return _UTC
    if not name or name.lower() == "local":
        raise ValueError(f"must be an explicit IANA time zone name like Europe/Berlin, "
                         f"got {name!r}")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name like "
                         f"Europe/Berlin)") from None


def _schedule_check(value: Any) -> str | None:
    try:
        schedule = parse_schedule(value)
    except ScheduleError as err:
        return str(err)
    if schedule.next(0.0) is None:
        return f"{value!r} never fires (no date has this day and month)"
    return None


def _time_zone_check(value: Any) -> str | None:
    try:
        time_zone(value)
    except ValueError as err:
        return str(err)
    return None


def _cronjob_name(value: Any) -> str | None:
    """Kubernetes: a CronJob's name leaves room for the 11 characters its Jobs add."""
    problem = meta.dns_subdomain(value)
    if problem is None and len(value) > 52:
        return f"must be no more than 52 characters, got {len(value)}"
    return problem


CRONJOB = KindDef(
    api_version="batch/v1", kind="CronJob", resource="cronjobs", namespaced=True,
    doc="Creates a Job from a template on a cron schedule.", name_check=_cronjob_name,
    fields={
        "spec": s.Obj({
            "schedule": s.string("When to run, in cron format: 'minute hour day-of-month "
                                 "month day-of-week' or a macro such as @daily.",
                                 checks=(_schedule_check,)),
            "timeZone": s.string("The IANA time zone the schedule is read in; UTC if unset.",
                                 checks=(_time_zone_check,)),
            "startingDeadlineSeconds": s.integer("Seconds after a missed run within which "
                                                 "it may still start.", minimum=0),
            "concurrencyPolicy": s.string("What to do when a run is due while the last "
                                          "one is active: Allow, Forbid or Replace.",
                                          default="Allow",
                                          enum=("Allow", "Forbid", "Replace")),
            "suspend": s.boolean("Start no new runs while true.", default=False),
            "jobTemplate": s.Obj({
                "metadata": template_metadata(),
                "spec": JOB_SPEC,
            }, required=("spec",), doc="The Job each run creates."),
            "successfulJobsHistoryLimit": s.integer("Finished successful Jobs to keep.",
                                                    default=3, minimum=0),
            "failedJobsHistoryLimit": s.integer("Finished failed Jobs to keep.", default=1,
                                                minimum=0),
        }, required=("schedule", "jobTemplate"), doc="The desired state of the cron job."),
        "status": s.Obj({
            "active": s.List(OBJECT_REFERENCE, doc="The Jobs running now."),
            "lastScheduleTime": s.string("When a Job was last scheduled, RFC 3339."),
            "lastSuccessfulTime": s.string("When a Job last completed, RFC 3339."),
        }, doc="The observed state of the cron job."),
    })

KIND_DEFS = (JOB, CRONJOB)
