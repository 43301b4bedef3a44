"""The batch/v1 Job: pods that run to completion."""

from __future__ import annotations

from typing import Any

from api import schema as s
from api.fields import KindDef, condition, label_selector
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


JOB = KindDef(
    api_version="batch/v1", kind="Job", resource="jobs", namespaced=True,
    doc="Runs pods until a number of them complete successfully.",
    fields={
        "spec": s.Obj({
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
            post_defaults=(_completions_default,), doc="The desired state of the job."),
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

KIND_DEFS = (JOB,)
