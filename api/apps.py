"""The apps/v1 kinds: Deployment, ReplicaSet, DaemonSet."""

from __future__ import annotations

from typing import Any

from api import schema as s
from api.fields import KindDef, condition, int_or_percent, label_selector
from api.pod import pod_template
from api.workloads import selector_matches_template


def _int_or_percent(doc: str, default: int | str | None = None) -> s.Scalar:
    return s.int_or_string(doc, default=default, checks=(int_or_percent,))


def _is_zero(v: Any) -> bool:
    return v in (0, "0%")


# ---- Deployment --------------------------------------------------------------------------


def _rolling_defaults(**defaults: int | str) -> s.PostDefault:
    """A post-default hook: a RollingUpdate strategy (the default type) gets rollingUpdate
    with DEFAULTS for the fields it leaves out, as Kubernetes defaults them."""
    def fill(out: dict[str, Any]) -> None:
        if out.get("type", "RollingUpdate") == "RollingUpdate":
            ru = out.get("rollingUpdate") or {}
            if not isinstance(ru, dict):
                return  # validation names it
            ru = dict(ru)  # the caller's dict is not changed; its keys keep their order
            for field, value in defaults.items():
                ru.setdefault(field, value)
            out["rollingUpdate"] = ru
    return fill


# Kubernetes: a Deployment's RollingUpdate strategy gets rollingUpdate {25%, 25%}.
_rolling_update_default = _rolling_defaults(maxUnavailable="25%", maxSurge="25%")


def _strategy_ok(value: Any, path: str, errors: s.Errors) -> None:
    ru = value.get("rollingUpdate")
    if value.get("type") == "Recreate" and ru is not None:
        errors.append(s.FieldError(f"{path}.rollingUpdate",
                                   "may not be specified when type is Recreate"))
    elif ru and _is_zero(ru.get("maxSurge", "25%")) and _is_zero(
            ru.get("maxUnavailable", "25%")):
        errors.append(s.FieldError(f"{path}.rollingUpdate.maxUnavailable",
                                   "may not be 0 when maxSurge is 0"))


DEPLOYMENT_STRATEGY = s.Obj({
    "type": s.string("RollingUpdate or Recreate.", default="RollingUpdate",
                     enum=("RollingUpdate", "Recreate")),
    "rollingUpdate": s.Obj({
        "maxSurge": _int_or_percent("Pods above replicas during an update (number or %)."),
        "maxUnavailable": _int_or_percent("Pods below replicas during an update "
                                          "(number or %)."),
    }, doc="Parameters of a rolling update."),
}, default=dict, validators=(_strategy_ok,), post_defaults=(_rolling_update_default,),
    doc="How old pods are replaced by new ones.")


def _workload_ok(value: Any, path: str, errors: s.Errors) -> None:
    selector_matches_template(value, path, errors)


_REPLICAS = s.integer("Desired number of pods.", default=1, minimum=0)
_MIN_READY = s.integer("Seconds a new pod must be ready to count as available.",
                       minimum=0)
_HISTORY = s.integer("Old revisions kept for rollback.", default=10, minimum=0)
_SELECTOR = label_selector("Label query over the pods it owns; must match the template.")

DEPLOYMENT_STATUS = s.Obj({
    "observedGeneration": s.integer("The generation the controller last acted on."),
    "replicas": s.integer("Pods of every revision."),
    "updatedReplicas": s.integer("Pods of the current template."),
    "readyReplicas": s.integer("Pods that are ready."),
    "availableReplicas": s.integer("Pods ready for at least minReadySeconds."),
    "unavailableReplicas": s.integer("Pods still needed for 100% availability."),
    "conditions": s.List(condition(with_update_time=True),
                         doc="Available, Progressing, ReplicaFailure."),
    "collisionCount": s.integer("Hash collisions of the template, for naming."),
}, doc="The observed state of the deployment.")

DEPLOYMENT = KindDef(
    api_version="apps/v1", kind="Deployment", resource="deployments", namespaced=True,
    doc="Declarative updates of replicated pods through ReplicaSets.",
    fields={
        "spec": s.Obj({
            "replicas": _REPLICAS,
            "selector": _SELECTOR,
            "template": pod_template(),
            "strategy": DEPLOYMENT_STRATEGY,
            "minReadySeconds": _MIN_READY,
            "revisionHistoryLimit": _HISTORY,
            "progressDeadlineSeconds": s.integer(
                "Seconds without progress before the rollout is reported failed.",
                default=600, minimum=1),
            "paused": s.boolean("Stop rolling out template changes."),
        }, required=("selector", "template"), validators=(_workload_ok,),
            doc="The desired state of the deployment."),
        "status": DEPLOYMENT_STATUS,
    })

REPLICA_SET = KindDef(
    api_version="apps/v1", kind="ReplicaSet", resource="replicasets", namespaced=True,
    doc="Keeps a number of identical pods running.",
    fields={
        "spec": s.Obj({
            "replicas": _REPLICAS,
            "selector": _SELECTOR,
            "template": pod_template(),
            "minReadySeconds": _MIN_READY,
        }, required=("selector",), validators=(_workload_ok,),
            doc="The desired state of the replica set."),
        "status": s.Obj({
            "replicas": s.integer("Pods it owns."),
            "fullyLabeledReplicas": s.integer("Pods with all the template's labels."),
            "readyReplicas": s.integer("Pods that are ready."),
            "availableReplicas": s.integer("Pods ready for at least minReadySeconds."),
            "observedGeneration": s.integer("The generation last acted on."),
            "conditions": s.List(condition(), doc="ReplicaFailure."),
        }, doc="The observed state of the replica set."),
    })

# ---- DaemonSet ---------------------------------------------------------------------------


# A DaemonSet's: {maxUnavailable 1, maxSurge 0}.
_daemon_rolling_default = _rolling_defaults(maxUnavailable=1, maxSurge=0)


def _daemon_strategy_ok(value: Any, path: str, errors: s.Errors) -> None:
    ru = value.get("rollingUpdate")
    if value.get("type") == "OnDelete" and ru is not None:
        errors.append(s.FieldError(f"{path}.rollingUpdate",
                                   "may not be specified when type is OnDelete"))
    elif ru and _is_zero(ru.get("maxSurge", 0)) and _is_zero(ru.get("maxUnavailable", 1)):
        errors.append(s.FieldError(f"{path}.rollingUpdate.maxUnavailable",
                                   "may not be 0 when maxSurge is 0"))


DAEMON_SET = KindDef(
    api_version="apps/v1", kind="DaemonSet", resource="daemonsets", namespaced=True,
    doc="Runs one pod on every eligible node.",
    fields={
        "spec": s.Obj({
            "selector": _SELECTOR,
            "template": pod_template(),
            "updateStrategy": s.Obj({
                "type": s.string("RollingUpdate or OnDelete.", default="RollingUpdate",
                                 enum=("RollingUpdate", "OnDelete")),
                "rollingUpdate": s.Obj({
                    "maxUnavailable": _int_or_percent("Nodes whose pod may be down "
                                                      "during an update."),
                    "maxSurge": _int_or_percent("Nodes that may run an old and a new "
                                                "pod at once."),
                }, doc="Parameters of a rolling update."),
            }, default=dict, validators=(_daemon_strategy_ok,),
                post_defaults=(_daemon_rolling_default,),
                doc="How pods are replaced when the template changes."),
            "minReadySeconds": _MIN_READY,
            "revisionHistoryLimit": _HISTORY,
        }, required=("selector", "template"), validators=(_workload_ok,),
            doc="The desired state of the daemon set."),
        "status": s.Obj({name: s.integer(doc) for name, doc in (
            ("currentNumberScheduled", "Nodes running a pod that should."),
            ("numberMisscheduled", "Nodes running a pod that should not."),
            ("desiredNumberScheduled", "Nodes that should run a pod."),
            ("numberReady", "Nodes whose pod is ready."),
            ("updatedNumberScheduled", "Nodes running the current template."),
            ("numberAvailable", "Nodes whose pod is available."),
            ("numberUnavailable", "Nodes whose pod is not available."),
            ("observedGeneration", "The generation last acted on."),
            ("collisionCount", "Hash collisions of the template."))} | {
            "conditions": s.List(condition(), doc="Conditions of the daemon set.")},
            doc="The observed state of the daemon set."),
    })

KIND_DEFS = (DEPLOYMENT, REPLICA_SET, DAEMON_SET)
