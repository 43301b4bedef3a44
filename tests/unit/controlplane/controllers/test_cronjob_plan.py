"""cronjob_plan: what the CronJob controller decides for a cron job and its Jobs, at a
fake time: missed runs, deadlines, concurrency policies, history, time zones."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from api.batch import parse_schedule
from controlplane.controllers import cronjob_plan as cp
from controlplane.controllers.plan_util import rfc3339


def at(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


CREATED = at("2024-01-10T00:00:30")
UID = "cj-uid"


def cronjob(*, status: dict[str, Any] | None = None, created: float = CREATED,
            **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "schedule": "*/10 * * * *", "concurrencyPolicy": "Allow", "suspend": False,
        "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1,
        "jobTemplate": {"metadata": {"labels": {"app": "report"},
                                     "annotations": {"team": "data"}},
                        "spec": {"backoffLimit": 2, "template": {"spec": {
                            "restartPolicy": "Never",
                            "containers": [{"name": "c", "image": "busybox"}]}}}}}
    body.update(spec)
    return {"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "report", "namespace": "default", "uid": UID,
                         "creationTimestamp": rfc3339(created)},
            "spec": body, "status": status or {}}


def job(name: str, state: str = "active", *, started: float = CREATED,
        finished: float | None = None, deleting: bool = False) -> dict[str, Any]:
    status: dict[str, Any] = {"startTime": rfc3339(started)}
    if state in ("Complete", "Failed"):
        end = finished if finished is not None else started + 60
        status["conditions"] = [{"type": state, "status": "True",
                                 "lastTransitionTime": rfc3339(end)}]
        if state == "Complete":
            status["completionTime"] = rfc3339(end)
    m: dict[str, Any] = {"name": name, "namespace": "default", "uid": f"uid-{name}",
                         "ownerReferences": [{"uid": UID, "controller": True}]}
    if deleting:
        m["deletionTimestamp"] = rfc3339(started)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": m, "status": status}


def minutes(text: str) -> str:
    return f"report-{int(at(text) // 60)}"


@pytest.mark.parametrize("the_cronjob,jobs,now,created_for", [
    pytest.param(cronjob(), [], at("2024-01-10T00:05:00"), None,
                 id="nothing-due-since-creation"),
    pytest.param(cronjob(), [], at("2024-01-10T00:10:00"), "2024-01-10T00:10:00",
                 id="first-run-due"),
    pytest.param(cronjob(), [], at("2024-01-10T00:10:59"), "2024-01-10T00:10:00",
                 id="first-run-late-in-its-minute"),
    pytest.param(cronjob(created=at("2024-01-10T00:10:00")), [], at("2024-01-10T00:10:30"),
                 None, id="created-at-the-schedule-time-waits-for-the-next"),
    pytest.param(cronjob(), [], at("2024-01-10T00:55:00"), "2024-01-10T00:50:00",
                 id="several-missed-only-the-latest"),
    pytest.param(cronjob(status={"lastScheduleTime": "2024-01-10T00:10:00Z"}), [],
                 at("2024-01-10T00:15:00"), None, id="already-scheduled-this-time"),
    pytest.param(cronjob(status={"lastScheduleTime": "2024-01-10T00:10:00Z"}), [],
                 at("2024-01-10T00:20:00"), "2024-01-10T00:20:00",
                 id="next-since-last-schedule"),
    pytest.param(cronjob(startingDeadlineSeconds=120), [], at("2024-01-10T00:13:00"), None,
                 id="deadline-passed-run-dropped"),
    pytest.param(cronjob(startingDeadlineSeconds=200), [], at("2024-01-10T00:13:00"),
                 "2024-01-10T00:10:00", id="within-deadline-runs-late"),
    pytest.param(cronjob(suspend=True), [], at("2024-01-10T00:10:00"), None,
                 id="suspended"),
    pytest.param(cronjob(schedule="0 9 * * *", timeZone="Europe/Berlin"), [],
                 at("2024-01-10T08:00:00"), "2024-01-10T08:00:00",
                 id="time-zone-berlin-9am-is-8-utc"),
    pytest.param(cronjob(schedule="0 9 * * *", timeZone="Europe/Berlin"), [],
                 at("2024-01-10T07:59:00"), None, id="time-zone-not-yet"),
    pytest.param(cronjob(schedule="0 9 * * *"), [], at("2024-01-10T08:00:00"), None,
                 id="no-time-zone-is-utc"),
])
def test_when_a_job_is_created(the_cronjob: dict[str, Any], jobs: list[dict[str, Any]],
                               now: float, created_for: str | None) -> None:
    plan = cp.plan(the_cronjob, jobs, now)
    if created_for is None:
        assert plan.create is None
        return
    assert plan.create is not None
    assert plan.create["metadata"]["name"] == minutes(created_for)
    assert plan.status["lastScheduleTime"] == created_for + "Z"


def test_job_comes_from_the_template_owned_by_the_cronjob() -> None:
    plan = cp.plan(cronjob(timeZone="America/New_York"), [], at("2024-01-10T00:10:00"))
    made = plan.create
    assert made is not None
    assert (made["apiVersion"], made["kind"]) == ("batch/v1", "Job")
    m = made["metadata"]
    assert m["name"] == f"report-{int(at('2024-01-10T00:10:00')) // 60}"
    assert m["namespace"] == "default"
    assert m["labels"] == {"app": "report", cp.CRONJOB_NAME_LABEL: "report"}
    assert m["annotations"]["team"] == "data"
    assert m["annotations"][cp.SCHEDULED_TIMESTAMP] == "2024-01-09T19:10:00-05:00"
    assert m["ownerReferences"] == [{"apiVersion": "batch/v1", "kind": "CronJob",
                                     "name": "report", "uid": UID, "controller": True,
                                     "blockOwnerDeletion": True}]
    assert made["spec"]["backoffLimit"] == 2
    assert made["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox"


def test_existing_job_of_the_time_is_not_made_again() -> None:
    due = "2024-01-10T00:10:00"
    plan = cp.plan(cronjob(), [job(minutes(due))], at("2024-01-10T00:10:05"))
    assert plan.create is None
    assert plan.status["lastScheduleTime"] == due + "Z"  # a lost status write catches up


@pytest.mark.parametrize("policy,create,delete,events", [
    pytest.param("Allow", True, (), (), id="allow-runs-alongside"),
    pytest.param("Forbid", False, (), ("JobAlreadyActive",), id="forbid-skips"),
    pytest.param("Replace", True, ("report-old",), (), id="replace-deletes-active"),
])
def test_concurrency_policies(policy: str, create: bool, delete: tuple[str, ...],
                              events: tuple[str, ...]) -> None:
    plan = cp.plan(cronjob(concurrencyPolicy=policy,
                           status={"lastScheduleTime": "2024-01-10T00:00:00Z"}),
                   [job("report-old")], at("2024-01-10T00:10:00"))
    assert (plan.create is not None) == create
    assert plan.delete == delete
    assert tuple(r for _, r, _ in plan.events) == events
    if not create:
        assert plan.status["lastScheduleTime"] == "2024-01-10T00:00:00Z"


def test_forbid_runs_the_missed_time_once_the_active_job_ends() -> None:
    cj = cronjob(concurrencyPolicy="Forbid", startingDeadlineSeconds=300,
                 status={"lastScheduleTime": "2024-01-10T00:00:00Z"})
    done = job("report-old", "Complete", finished=at("2024-01-10T00:12:00"))
    late = cp.plan(cj, [done], at("2024-01-10T00:12:00"))
    assert late.create is not None
    assert late.create["metadata"]["name"] == minutes("2024-01-10T00:10:00")
    too_late = cp.plan(cj, [done], at("2024-01-10T00:15:01"))
    assert too_late.create is None


def test_too_many_missed_runs_records_an_event_and_runs_the_latest() -> None:
    cj = cronjob(schedule="* * * * *")
    plan = cp.plan(cj, [], CREATED + 3 * 3600)
    assert [r for _, r, _ in plan.events] == ["TooManyMissedTimes"]
    assert plan.create is not None
    assert plan.status["lastScheduleTime"] == rfc3339(CREATED - 30 + 3 * 3600)
    few = cp.plan(cj, [], CREATED + 99 * 60)
    assert few.events == ()
    assert few.create is not None


def test_status_active_and_last_successful_time() -> None:
    jobs = [job("report-3"), job("report-1", "Complete", finished=at("2024-01-10T01:00:00")),
            job("report-2", "Complete", finished=at("2024-01-10T02:00:00")),
            job("report-0", "Failed"), job("report-4", deleting=True)]
    plan = cp.plan(cronjob(suspend=True,
                           status={"lastSuccessfulTime": "2024-01-10T00:30:00Z"}), jobs,
                   at("2024-01-10T03:00:00"))
    assert plan.status["active"] == [{"apiVersion": "batch/v1", "kind": "Job",
                                      "name": "report-3", "namespace": "default",
                                      "uid": "uid-report-3"}]
    assert plan.status["lastSuccessfulTime"] == "2024-01-10T02:00:00Z"
    idle = cp.plan(cronjob(status={"active": [{"name": "gone"}]}), [], CREATED + 1)
    assert "active" not in idle.status


def finished_jobs() -> list[dict[str, Any]]:
    out = [job(f"ok-{i}", "Complete", started=CREATED + i * 600) for i in range(5)]
    out += [job(f"bad-{i}", "Failed", started=CREATED + i * 600) for i in range(3)]
    return [*out, job("running")]


@pytest.mark.parametrize("limits,deleted", [
    pytest.param({}, {"ok-0", "ok-1", "bad-0", "bad-1"}, id="defaults-3-and-1"),
    pytest.param({"successfulJobsHistoryLimit": 0, "failedJobsHistoryLimit": 0},
                 {"ok-0", "ok-1", "ok-2", "ok-3", "ok-4", "bad-0", "bad-1", "bad-2"},
                 id="keep-none"),
    pytest.param({"successfulJobsHistoryLimit": 10, "failedJobsHistoryLimit": 2},
                 {"bad-0"}, id="keep-more"),
    pytest.param({"suspend": True}, {"ok-0", "ok-1", "bad-0", "bad-1"},
                 id="suspended-still-prunes"),
])
def test_history_limits_delete_the_oldest_finished(limits: dict[str, Any],
                                                   deleted: set[str]) -> None:
    plan = cp.plan(cronjob(**limits), list(reversed(finished_jobs())),
                   at("2024-01-10T00:05:00"))
    assert set(plan.delete) == deleted
    assert "running" not in plan.delete


@pytest.mark.parametrize("the_cronjob,now,requeue", [
    pytest.param(cronjob(), at("2024-01-10T00:05:00"), 300 + cp.REQUEUE_SLACK,
                 id="to-the-next-time"),
    pytest.param(cronjob(), at("2024-01-10T00:10:00"), 600 + cp.REQUEUE_SLACK,
                 id="after-creating"),
    pytest.param(cronjob(suspend=True), at("2024-01-10T00:05:00"), None, id="suspended"),
    pytest.param(cronjob(schedule="0 0 30 2 *"), at("2024-01-10T00:05:00"), None,
                 id="never-fires"),
])
def test_requeue_at_the_next_schedule_time(the_cronjob: dict[str, Any], now: float,
                                           requeue: float | None) -> None:
    got = cp.plan(the_cronjob, [], now).requeue_after
    assert got == (None if requeue is None else pytest.approx(requeue))


@pytest.mark.parametrize("spec,reason", [
    pytest.param({"schedule": "61 * * * *"}, "UnparseableSchedule", id="schedule"),
    pytest.param({"timeZone": "Mars/Base"}, "UnknownTimeZone", id="time-zone"),
])
def test_unusable_spec_is_an_event(spec: dict[str, Any], reason: str) -> None:
    plan = cp.plan(cronjob(**spec), [], at("2024-01-10T00:10:00"))
    assert plan.create is None and plan.requeue_after is None
    assert [r for _, r, _ in plan.events] == [reason]


@pytest.mark.parametrize("schedule,since,now,latest,count", [
    pytest.param("*/10 * * * *", "2024-01-10T00:00:00", "2024-01-10T00:35:00",
                 "2024-01-10T00:30:00", 3, id="three"),
    pytest.param("*/10 * * * *", "2024-01-10T00:00:00", "2024-01-10T00:09:59", None, 0,
                 id="none"),
    pytest.param("* * * * *", "2024-01-01T00:00:00", "2024-01-10T00:00:30",
                 "2024-01-10T00:00:00", cp.TOO_MANY_MISSED + 1, id="too-many-counting-stops"),
    pytest.param("30 9 * * mon-fri", "2023-01-01T00:00:00", "2024-01-08T09:00:00",
                 "2024-01-05T09:30:00", cp.TOO_MANY_MISSED + 1, id="too-many-irregular"),
])
def test_missed_times(schedule: str, since: str, now: str, latest: str | None,
                      count: int) -> None:
    got = cp.missed_times(parse_schedule(schedule), dt.UTC, since=at(since), now=at(now))
    assert got == (None if latest is None else at(latest), count)
