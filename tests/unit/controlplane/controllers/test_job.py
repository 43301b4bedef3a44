"""job_plan: what the Job controller decides for a job and its pods, at a fake time."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.controllers import job_plan
from controlplane.controllers.plan_util import rfc3339

NOW = 1_800_000_000.0
UID = "job-uid-1"


def job(status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"completions": 1, "parallelism": 1, "backoffLimit": 6,
                            "template": {"metadata": {"labels": {"app": "pi"}},
                                         "spec": {"restartPolicy": "Never",
                                                  "containers": [{"name": "c",
                                                                  "image": "pi"}]}}}
    for k, v in spec.items():
        if k == "restartPolicy":
            base["template"]["spec"]["restartPolicy"] = v
        elif v is None:
            base.pop(k, None)
        else:
            base[k] = v
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "pi", "namespace": "default", "uid": UID},
            "spec": base, "status": status or {}}


def pod(name: str, phase: str = "Running", *, created: float = NOW - 50,
        ready: bool = False, bound: bool = True, finished: float | None = None,
        restarts: int = 0) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if ready:
        status["conditions"] = [{"type": "Ready", "status": "True"}]
    cs: dict[str, Any] = {"name": "c", "restartCount": restarts}
    if finished is not None:
        cs["state"] = {"terminated": {"exitCode": 1, "finishedAt": rfc3339(finished)}}
    status["containerStatuses"] = [cs]
    return {"metadata": {"name": name, "creationTimestamp": rfc3339(created),
                         "ownerReferences": [{"uid": UID, "controller": True}]},
            "spec": {"nodeName": "n1"} if bound else {}, "status": status}


STARTED = {"startTime": rfc3339(NOW - 60)}


def cond(plan: job_plan.JobPlan, kind: str) -> dict[str, Any] | None:
    for c in plan.status.get("conditions") or ():
        if c["type"] == kind:
            return dict(c)
    return None


@pytest.mark.parametrize("the_job,pods,create,delete", [
    pytest.param(job(), [], 1, (), id="new-job-one-pod"),
    pytest.param(job(completions=3, parallelism=2), [], 2, (), id="parallelism-caps"),
    pytest.param(job(completions=3, parallelism=2),
                 [pod("a", "Succeeded"), pod("b")], 1, (), id="one-done-one-running"),
    pytest.param(job(completions=3, parallelism=2),
                 [pod("a", "Succeeded"), pod("b", "Succeeded"), pod("c")], 0, (),
                 id="last-one-running"),
    pytest.param(job(completions=5, parallelism=1),
                 [pod("run", ready=True), pod("pend", "Pending", bound=False)], 0, ("pend",),
                 id="too-many-delete-unbound-first"),
    pytest.param(job(completions=None, parallelism=2),
                 [pod("a", "Succeeded"), pod("b")], 0, (), id="work-queue-no-new-pods"),
    pytest.param(job(completions=None, parallelism=3), [], 3, (), id="work-queue-start"),
    pytest.param(job(completions=2, parallelism=2),
                 [pod("a"), pod("gone", "Running") | {"metadata": {
                     "name": "gone", "deletionTimestamp": rfc3339(NOW),
                     "ownerReferences": [{"uid": UID, "controller": True}]}}], 1, (),
                 id="deleting-pod-not-active"),
])
def test_pods_to_create_and_delete(the_job: dict[str, Any], pods: list[dict[str, Any]],
                                   create: int, delete: tuple[str, ...]) -> None:
    plan = job_plan.plan(the_job, pods, NOW)
    assert (plan.create, plan.delete) == (create, delete)
    assert plan.status["startTime"] == rfc3339(NOW)
    assert plan.status["active"] == sum(1 for p in pods if (p["status"]["phase"] in (
        "Running", "Pending") and "deletionTimestamp" not in p["metadata"]))


@pytest.mark.parametrize("failures,expected", [
    pytest.param(0, 0.0, id="none"),
    pytest.param(1, 10.0, id="first"),
    pytest.param(2, 20.0, id="second"),
    pytest.param(4, 80.0, id="fourth"),
    pytest.param(6, 320.0, id="sixth"),
    pytest.param(7, 360.0, id="capped"),
    pytest.param(60, 360.0, id="huge"),
])
def test_backoff_delay(failures: int, expected: float) -> None:
    assert job_plan.backoff_delay(failures) == expected


@pytest.mark.parametrize("pods,create,requeue", [
    pytest.param([pod("f1", "Failed", finished=NOW - 4)], 0, 6.0, id="in-first-backoff"),
    pytest.param([pod("f1", "Failed", finished=NOW - 11)], 1, None, id="first-backoff-over"),
    pytest.param([pod("f1", "Failed", finished=NOW - 100),
                  pod("f2", "Failed", finished=NOW - 30),
                  pod("f3", "Failed", finished=NOW - 10)], 0, 30.0,
                 id="third-failure-waits-40s"),
])
def test_backoff_between_recreations(pods: list[dict[str, Any]], create: int,
                                     requeue: float | None) -> None:
    plan = job_plan.plan(job(status=dict(STARTED)), pods, NOW)
    assert plan.create == create
    assert plan.requeue_after == requeue
    assert plan.status["failed"] == len(pods)


def test_backoff_limit_exceeded_fails_and_deletes_active() -> None:
    pods = [pod(f"f{i}", "Failed", finished=NOW - 1000) for i in range(3)] + [pod("run")]
    plan = job_plan.plan(job(backoffLimit=2, parallelism=1, status=dict(STARTED)), pods, NOW)
    failed = cond(plan, "Failed")
    assert failed is not None and failed["reason"] == "BackoffLimitExceeded"
    assert plan.delete == ("run",) and plan.create == 0
    assert plan.status["active"] == 0 and plan.status["failed"] == 3


def test_backoff_limit_not_yet_exceeded() -> None:
    pods = [pod(f"f{i}", "Failed", finished=NOW - 1000) for i in range(2)]
    plan = job_plan.plan(job(backoffLimit=2, status=dict(STARTED)), pods, NOW)
    assert cond(plan, "Failed") is None and plan.create == 1


def test_on_failure_restarts_count_as_failures() -> None:
    plan = job_plan.plan(job(backoffLimit=3, restartPolicy="OnFailure",
                             status=dict(STARTED)), [pod("a", restarts=4)], NOW)
    failed = cond(plan, "Failed")
    assert failed is not None and failed["reason"] == "BackoffLimitExceeded"


@pytest.mark.parametrize("deadline,failed,requeue", [
    pytest.param(30, True, None, id="past-deadline"),
    pytest.param(60, True, None, id="at-deadline"),
    pytest.param(100, False, 40.0, id="before-deadline"),
])
def test_active_deadline(deadline: int, failed: bool, requeue: float | None) -> None:
    plan = job_plan.plan(job(activeDeadlineSeconds=deadline, status=dict(STARTED)),
                         [pod("a")], NOW)
    c = cond(plan, "Failed")
    assert (c is not None and c["reason"] == "DeadlineExceeded") == failed
    assert plan.delete == (("a",) if failed else ())
    if not failed:
        assert plan.requeue_after == requeue


def test_completes_when_enough_succeeded() -> None:
    pods = [pod(n, "Succeeded") for n in "abc"]
    plan = job_plan.plan(job(completions=3, parallelism=2, status=dict(STARTED)), pods, NOW)
    complete = cond(plan, "Complete")
    assert complete is not None and complete["status"] == "True"
    assert plan.status["completionTime"] == rfc3339(NOW)
    assert plan.status["succeeded"] == 3 and plan.create == 0


def test_work_queue_completes_when_one_succeeded_and_none_runs() -> None:
    plan = job_plan.plan(job(completions=None, parallelism=2, status=dict(STARTED)),
                         [pod("a", "Succeeded"), pod("b", "Failed")], NOW)
    assert cond(plan, "Complete") is not None


@pytest.mark.parametrize("ttl,delete_job,requeue", [
    pytest.param(None, False, None, id="no-ttl"),
    pytest.param(50, True, None, id="ttl-over"),
    pytest.param(0, True, None, id="ttl-zero"),
    pytest.param(300, False, 200.0, id="ttl-running"),
])
def test_ttl_after_finished(ttl: int | None, delete_job: bool,
                            requeue: float | None) -> None:
    status = {**STARTED, "completionTime": rfc3339(NOW - 100), "succeeded": 1,
              "conditions": [{"type": "Complete", "status": "True"}]}
    plan = job_plan.plan(job(ttlSecondsAfterFinished=ttl, status=status),
                         [pod("a", "Succeeded")], NOW)
    assert plan.delete_job == delete_job
    assert plan.requeue_after == requeue
    assert plan.create == 0


def test_suspend_deletes_active_pods() -> None:
    plan = job_plan.plan(job(suspend=True, completions=2, parallelism=2,
                             status=dict(STARTED)), [pod("a"), pod("b")], NOW)
    assert plan.delete == ("a", "b") and plan.create == 0
    c = cond(plan, "Suspended")
    assert c is not None and c["status"] == "True"
    assert "startTime" not in plan.status


def test_resume_after_suspend() -> None:
    status = {"conditions": [{"type": "Suspended", "status": "True"}]}
    plan = job_plan.plan(job(status=status), [], NOW)
    c = cond(plan, "Suspended")
    assert c is not None and c["status"] == "False" and plan.create == 1


def test_plan_does_not_mutate_inputs() -> None:
    import copy
    the_job, pods = job(status=dict(STARTED)), [pod("a", "Failed", finished=NOW - 1)]
    before = copy.deepcopy((the_job, pods))
    job_plan.plan(the_job, pods, NOW)
    assert (the_job, pods) == before


def test_new_pod_labels_and_owner() -> None:
    p = job_plan.new_pod(job())
    labels = p["metadata"]["labels"]
    assert labels["job-name"] == "pi" and labels["controller-uid"] == UID
    assert labels["app"] == "pi"
    assert p["metadata"]["generateName"] == "pi-"
    ref = p["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["uid"], ref["controller"]) == ("Job", UID, True)
    assert p["spec"]["restartPolicy"] == "Never"
    assert job_plan.pod_selector(job()) == f"controller-uid={UID}"
