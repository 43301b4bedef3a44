"""batch/v1 Job: the manifest, its defaults, and the restartPolicy and selector rules."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from api import kinds
from tests.unit.api.manifests import at, job


@pytest.mark.parametrize("obj", [
    pytest.param(job(), id="job"),
    pytest.param(job(completions=5, parallelism=2, activeDeadlineSeconds=600,
                     ttlSecondsAfterFinished=100), id="job-with-everything"),
    pytest.param(at(job(selector={"matchLabels": {"job": "pi"}}, manualSelector=True),
                    "spec.template.metadata", {"labels": {"job": "pi"}}),
                 id="manual-selector"),
    pytest.param({**job(), "status": {"active": 1, "succeeded": 2, "failed": 0,
                                      "startTime": "2024-01-01T00:00:00Z",
                                      "conditions": [{"type": "Complete",
                                                      "status": "True"}]}},
                 id="job-with-status"),
])
def test_manifests_validate_unchanged(obj: dict[str, Any]) -> None:
    before = copy.deepcopy(obj)
    kinds.validate(obj)
    kinds.validate(kinds.defaults(obj))
    assert obj == before


@pytest.mark.parametrize("obj,field,expected", [
    pytest.param(job(), "backoffLimit", 4, id="backoffLimit-given"),
    pytest.param(job(backoffLimit=None), "backoffLimit", 6, id="backoffLimit"),
    pytest.param(job(), "completions", 1, id="completions"),
    pytest.param(job(), "parallelism", 1, id="parallelism"),
    pytest.param(job(parallelism=3), "completions", None, id="work-queue-no-completions"),
    pytest.param(job(completions=4), "parallelism", 1, id="parallelism-with-completions"),
    pytest.param(job(), "completionMode", "NonIndexed", id="completionMode"),
    pytest.param(job(), "suspend", False, id="suspend"),
])
def test_defaults(obj: dict[str, Any], field: str, expected: Any) -> None:
    assert kinds.defaults(obj)["spec"].get(field) == expected


J = "Job pi: spec."


@pytest.mark.parametrize("obj,message", [
    pytest.param(at(job(), "spec.template.spec.restartPolicy", "Always"),
                 J + "template.spec.restartPolicy: must be OnFailure or Never for a Job, "
                 "got 'Always'", id="restart-always"),
    pytest.param(at(job(), "spec.template.spec", {"containers": [{"name": "a",
                                                                  "image": "b"}]}),
                 J + "template.spec.restartPolicy: must be OnFailure or Never for a Job, "
                 "got 'Always'", id="restart-defaults-to-always"),
    pytest.param(job(backoffLimit=-1), J + "backoffLimit: must be >= 0, got -1",
                 id="backoffLimit"),
    pytest.param(job(completionMode="Indexed"),
                 J + "completionMode: must be one of NonIndexed; got 'Indexed'",
                 id="indexed"),
    pytest.param(job(activeDeadlineSeconds=0), J + "activeDeadlineSeconds: must be >= 1",
                 id="deadline"),
    pytest.param(job(selector={"matchLabels": {"job": "other"}}),
                 J + "template.metadata.labels: does not match spec.selector",
                 id="selector"),
    pytest.param(job(template=None), J + "template: is required", id="no-template"),
])
def test_errors_name_the_field(obj: dict[str, Any], message: str) -> None:
    with pytest.raises(kinds.Invalid) as e:
        kinds.validate(obj)
    assert str(e.value).startswith(message), str(e.value)
