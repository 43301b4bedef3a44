"""batch/v1 CronJob: Kubernetes manifests apply unchanged; defaults; errors name the field;
the resource is served as cronjobs/cj and printed with kubectl's columns."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from api import kinds
from clusterctl import printers
from clusterctl import resources as cli_resources
from controlplane.apiserver import resources


def cronjob(name: str = "nightly", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "schedule": "0 3 * * *",
        "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "OnFailure",
            "containers": [{"name": "backup", "image": "busybox:1.36",
                            "command": ["sh", "-c", "date"]}]}}}},
    }
    for k, v in spec.items():
        if v is None:
            body.pop(k, None)
        else:
            body[k] = v
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
            "spec": body}


@pytest.mark.parametrize("obj", [
    pytest.param(cronjob(), id="minimal"),
    pytest.param(cronjob(schedule="*/5 9-17 * jan-jun mon-fri", timeZone="Europe/Berlin",
                         startingDeadlineSeconds=200, concurrencyPolicy="Forbid",
                         suspend=True, successfulJobsHistoryLimit=0,
                         failedJobsHistoryLimit=5), id="everything"),
    pytest.param(cronjob(schedule="@hourly", concurrencyPolicy="Replace"), id="macro"),
    pytest.param({**cronjob(), "status": {
        "active": [{"apiVersion": "batch/v1", "kind": "Job", "name": "nightly-28000000",
                    "namespace": "default", "uid": "u1"}],
        "lastScheduleTime": "2024-01-01T03:00:00Z",
        "lastSuccessfulTime": "2024-01-01T03:00:09Z"}}, id="with-status"),
    pytest.param(cronjob(jobTemplate={"metadata": {"labels": {"app": "backup"}},
                                      "spec": {"backoffLimit": 2, "template": {"spec": {
                                          "restartPolicy": "Never",
                                          "containers": [{"name": "c", "image": "x"}]}}}}),
                 id="job-template-metadata"),
])
def test_manifests_validate_unchanged(obj: dict[str, Any]) -> None:
    before = copy.deepcopy(obj)
    kinds.validate(obj)
    kinds.validate(kinds.defaults(obj))
    assert obj == before


@pytest.mark.parametrize("path,expected", [
    pytest.param(("concurrencyPolicy",), "Allow", id="concurrencyPolicy"),
    pytest.param(("suspend",), False, id="suspend"),
    pytest.param(("successfulJobsHistoryLimit",), 3, id="successfulJobsHistoryLimit"),
    pytest.param(("failedJobsHistoryLimit",), 1, id="failedJobsHistoryLimit"),
    pytest.param(("startingDeadlineSeconds",), None, id="no-startingDeadlineSeconds"),
    pytest.param(("timeZone",), None, id="no-timeZone"),
    pytest.param(("jobTemplate", "spec", "backoffLimit"), 6, id="job-backoffLimit"),
    pytest.param(("jobTemplate", "spec", "completions"), 1, id="job-completions"),
])
def test_defaults(path: tuple[str, ...], expected: Any) -> None:
    node: Any = kinds.defaults(cronjob())["spec"]
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    assert node == expected


C = "CronJob nightly: "


@pytest.mark.parametrize("obj,message", [
    pytest.param(cronjob(schedule="61 * * * *"),
                 C + 'spec.schedule: invalid minute "61": must be within 0-59',
                 id="minute-61"),
    pytest.param(cronjob(schedule="0 0 * *"),
                 C + "spec.schedule: expected 5 fields (minute hour day-of-month month "
                 "day-of-week) or a macro, got 4", id="four-fields"),
    pytest.param(cronjob(schedule="@reboot"), C + 'spec.schedule: unknown macro "@reboot"',
                 id="unknown-macro"),
    pytest.param(cronjob(schedule="0 0 30 2 *"),
                 C + "spec.schedule: '0 0 30 2 *' never fires", id="never"),
    pytest.param(cronjob(schedule=None), C + "spec.schedule: is required", id="no-schedule"),
    pytest.param(cronjob(schedule=5), C + "spec.schedule: must be a string, got integer 5",
                 id="schedule-not-string"),
    pytest.param(cronjob(timeZone="Mars/Olympus_Mons"),
                 C + "spec.timeZone: unknown time zone 'Mars/Olympus_Mons'",
                 id="unknown-time-zone"),
    pytest.param(cronjob(timeZone="Local"),
                 C + "spec.timeZone: must be an explicit IANA time zone name", id="local"),
    pytest.param(cronjob(concurrencyPolicy="Sometimes"),
                 C + "spec.concurrencyPolicy: must be one of Allow, Forbid, Replace; got "
                 "'Sometimes'", id="concurrencyPolicy"),
    pytest.param(cronjob(startingDeadlineSeconds=-1),
                 C + "spec.startingDeadlineSeconds: must be >= 0, got -1", id="deadline"),
    pytest.param(cronjob(successfulJobsHistoryLimit=-1),
                 C + "spec.successfulJobsHistoryLimit: must be >= 0, got -1",
                 id="successful-limit"),
    pytest.param(cronjob(failedJobsHistoryLimit=-2),
                 C + "spec.failedJobsHistoryLimit: must be >= 0, got -2", id="failed-limit"),
    pytest.param(cronjob(jobTemplate=None), C + "spec.jobTemplate: is required",
                 id="no-jobTemplate"),
    pytest.param(cronjob(jobTemplate={"spec": {"template": {"spec": {
        "containers": [{"name": "c", "image": "x"}]}}}}),
        C + "spec.jobTemplate.spec.template.spec.restartPolicy: must be OnFailure or Never "
        "for a Job", id="job-template-restart-always"),
    pytest.param(cronjob(schedul="* * * * *"),
                 C + "spec.schedul: unknown field (did you mean 'schedule'?)", id="typo"),
    pytest.param(cronjob(name="n" * 53),
                 "metadata.name: must be no more than 52 characters, got 53",
                 id="name-too-long"),
])
def test_errors_name_the_field(obj: dict[str, Any], message: str) -> None:
    with pytest.raises(kinds.Invalid) as err:
        kinds.validate(kinds.defaults(obj))
    assert message in str(err.value)


def test_served_as_cronjobs_with_short_name_cj() -> None:
    for name in ("cronjobs", "cronjob", "cj", "CronJob"):
        r = resources.resolve(name)
        assert r is not None, name
        assert (r.name, r.kind, r.api_version, r.namespaced, r.status) == (
            "cronjobs", "CronJob", "batch/v1", True, True)
    offline = cli_resources.offline().resolve("cj")
    assert (offline.name, offline.qualified) == ("cronjobs", "cronjobs.batch")


NOW = dt.datetime(2024, 1, 1, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize("status,suspend,row", [
    pytest.param({}, None, ["nightly", "0 3 * * *", "False", "0", "<none>", "120m"],
                 id="never-scheduled"),
    pytest.param({"active": [{"name": "a"}, {"name": "b"}],
                  "lastScheduleTime": "2024-01-01T11:59:00Z"}, True,
                 ["nightly", "0 3 * * *", "True", "2", "60s", "120m"], id="active-suspended"),
])
def test_table_columns(status: dict[str, Any], suspend: bool | None, row: list[str]) -> None:
    obj = cronjob(suspend=suspend)
    obj["metadata"]["creationTimestamp"] = "2024-01-01T10:00:00Z"
    obj["status"] = status
    rows = printers.table("CronJob", [obj], now=NOW)
    assert rows[0] == ["NAME", "SCHEDULE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "AGE"]
    assert rows[1] == row
    wide = printers.table("CronJob", [obj], now=NOW, wide=True)
    assert wide[0][-3:] == ["CONTAINERS", "IMAGES", "SELECTOR"]
    assert wide[1][-3:] == ["backup", "busybox:1.36", "<none>"]
