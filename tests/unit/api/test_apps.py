"""apps/v1: Deployment, ReplicaSet, DaemonSet manifests, defaults and cross-field checks."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from api import kinds
from tests.unit.api.manifests import at, deployment


def replica_set() -> dict[str, Any]:
    d = deployment()
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web-5d9"},
            "spec": {"replicas": 2, "selector": d["spec"]["selector"],
                     "template": d["spec"]["template"], "minReadySeconds": 5}}


DAEMON_SET: dict[str, Any] = {
    "apiVersion": "apps/v1", "kind": "DaemonSet",
    "metadata": {"name": "node-exporter", "namespace": "monitoring"},
    "spec": {
        "selector": {"matchExpressions": [{"key": "app", "operator": "In",
                                           "values": ["node-exporter"]}]},
        "template": {"metadata": {"labels": {"app": "node-exporter"}}, "spec": {
            "hostNetwork": True,
            "tolerations": [{"operator": "Exists"}],
            "containers": [{"name": "exporter", "image": "prom/node-exporter:v1.7.0",
                            "args": ["--path.rootfs=/host"],
                            "ports": [{"containerPort": 9100, "hostPort": 9100}],
                            "volumeMounts": [{"name": "root", "mountPath": "/host",
                                              "readOnly": True}]}],
            "volumes": [{"name": "root", "hostPath": {"path": "/", "type": "Directory"}}]}},
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
    }}


@pytest.mark.parametrize("obj", [
    pytest.param(deployment(), id="deployment"),
    pytest.param(deployment(strategy={"type": "Recreate"}, paused=True), id="recreate"),
    pytest.param(deployment(strategy={"rollingUpdate": {"maxSurge": 1,
                                                        "maxUnavailable": 0}}),
                 id="rolling-numbers"),
    pytest.param(replica_set(), id="replicaset"),
    pytest.param(DAEMON_SET, id="daemonset"),
    pytest.param({**deployment(), "status": {
        "replicas": 3, "updatedReplicas": 3, "readyReplicas": 2, "availableReplicas": 2,
        "unavailableReplicas": 1, "observedGeneration": 4, "collisionCount": 0,
        "conditions": [{"type": "Available", "status": "False",
                        "reason": "MinimumReplicasUnavailable",
                        "lastUpdateTime": "2024-01-01T00:00:00Z"}]}},
                 id="deployment-with-status"),
])
def test_manifests_validate_unchanged(obj: dict[str, Any]) -> None:
    before = copy.deepcopy(obj)
    kinds.validate(obj)
    kinds.validate(kinds.defaults(obj))
    assert obj == before


BARE = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web",
                                                       "image": "busybox:1.36"}]}}}}
BARE_DS = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "ds"},
           "spec": {k: v for k, v in BARE["spec"].items()}}  # type: ignore[attr-defined]
BARE_RS = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "rs"},
           "spec": {k: v for k, v in BARE["spec"].items()}}  # type: ignore[attr-defined]


@pytest.mark.parametrize("obj,path,expected", [
    pytest.param(BARE, ("spec", "replicas"), 1, id="replicas"),
    pytest.param(BARE, ("spec", "strategy"),
                 {"type": "RollingUpdate",
                  "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                 id="strategy"),
    pytest.param(deployment(strategy={"rollingUpdate": {"maxSurge": 2}}),
                 ("spec", "strategy", "rollingUpdate"),
                 {"maxSurge": 2, "maxUnavailable": "25%"}, id="strategy-partial"),
    pytest.param(deployment(strategy={"type": "Recreate"}), ("spec", "strategy"),
                 {"type": "Recreate"}, id="recreate-has-no-rollingUpdate"),
    pytest.param(BARE, ("spec", "revisionHistoryLimit"), 10, id="revisionHistoryLimit"),
    pytest.param(BARE, ("spec", "progressDeadlineSeconds"), 600, id="progressDeadline"),
    pytest.param(BARE, ("spec", "template", "spec", "containers", 0, "imagePullPolicy"),
                 "IfNotPresent", id="template-container-defaults"),
    pytest.param(BARE, ("spec", "template", "spec", "restartPolicy"), "Always",
                 id="template-pod-defaults"),
    pytest.param(BARE_RS, ("spec", "replicas"), 1, id="replicaset-replicas"),
    pytest.param(BARE_DS, ("spec", "updateStrategy"),
                 {"type": "RollingUpdate",
                  "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
                 id="daemonset-updateStrategy"),
    pytest.param(BARE_DS, ("spec", "revisionHistoryLimit"), 10, id="daemonset-history"),
])
def test_defaults(obj: dict[str, Any], path: tuple[Any, ...], expected: Any) -> None:
    before = copy.deepcopy(obj)
    out: Any = kinds.defaults(obj)
    for p in path:
        out = out[p]
    assert out == expected
    assert obj == before


D = "Deployment web: spec."


@pytest.mark.parametrize("obj,message", [
    pytest.param(deployment(replicas=-1), D + "replicas: must be >= 0, got -1",
                 id="negative-replicas"),
    pytest.param(deployment(replicas="3"), D + "replicas: must be an integer, got string",
                 id="replicas-string"),
    pytest.param(deployment(selector={"matchLabels": {"app": "api"}}),
                 D + "template.metadata.labels: does not match spec.selector",
                 id="selector-does-not-match"),
    pytest.param(deployment(selector={}), D + "selector: must not be empty",
                 id="empty-selector"),
    pytest.param(deployment(selector={"matchExpressions": [{"key": "app",
                                                            "operator": "In"}]}),
                 D + "selector.matchExpressions[0].values: must be non-empty for In",
                 id="selector-expression"),
    pytest.param(deployment(selector=None), D + "selector: is required",
                 id="no-selector"),
    pytest.param(deployment(template=None), D + "template: is required", id="no-template"),
    pytest.param(deployment(strategy={"type": "Recreate",
                                      "rollingUpdate": {"maxSurge": 1}}),
                 D + "strategy.rollingUpdate: may not be specified when type is Recreate",
                 id="recreate-with-rollingUpdate"),
    pytest.param(deployment(strategy={"type": "BlueGreen"}),
                 D + "strategy.type: must be one of RollingUpdate, Recreate",
                 id="strategy-type"),
    pytest.param(deployment(strategy={"rollingUpdate": {"maxSurge": "25"}}),
                 D + "strategy.rollingUpdate.maxSurge: must be an integer or a percentage "
                 "like 25%, got '25'", id="maxSurge"),
    pytest.param(deployment(strategy={"rollingUpdate": {"maxSurge": 0,
                                                        "maxUnavailable": "0%"}}),
                 D + "strategy.rollingUpdate.maxUnavailable: may not be 0 when maxSurge "
                 "is 0", id="both-zero"),
    pytest.param(deployment(progressDeadlineSeconds=0),
                 D + "progressDeadlineSeconds: must be >= 1, got 0", id="progressDeadline"),
    pytest.param(deployment(replica=3),
                 D + "replica: unknown field (did you mean 'replicas'?)", id="typo"),
    pytest.param(at(deployment(), "spec.template.spec.containers.0.ports.0.containerPort",
                    -80),
                 D + "template.spec.containers[0].ports[0].containerPort: must be >= 1",
                 id="nested-in-template"),
    pytest.param(at(replica_set(), "spec.template.metadata.labels", {"app": "x"}),
                 "ReplicaSet web-5d9: spec.template.metadata.labels: does not match "
                 "spec.selector", id="replicaset-selector"),
    pytest.param(at(DAEMON_SET, "spec.template.metadata.labels", {}),
                 "DaemonSet node-exporter: spec.template.metadata.labels: does not match "
                 "spec.selector", id="daemonset-selector"),
    pytest.param(at(DAEMON_SET, "spec.updateStrategy", {"type": "OnDelete",
                                                        "rollingUpdate": {}}),
                 "DaemonSet node-exporter: spec.updateStrategy.rollingUpdate: may not be "
                 "specified when type is OnDelete", id="ondelete-with-rollingUpdate"),
])
def test_errors_name_the_field(obj: dict[str, Any], message: str) -> None:
    with pytest.raises(kinds.Invalid) as e:
        kinds.validate(obj)
    assert str(e.value).startswith(message), str(e.value)


@pytest.mark.parametrize("kind", ["Deployment", "DaemonSet"])
@pytest.mark.parametrize("bad", [pytest.param(-1, id="integer"), pytest.param("x", id="string")])
def test_rolling_update_not_a_map_is_a_field_error(kind: str, bad: object) -> None:
    """Defaulting rollingUpdate met a non-map and raised (TypeError/ValueError: an internal
    error at the server) instead of leaving it for validation to name."""
    template = {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "busybox"}]}}
    obj = {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": "web", "namespace": "d"},
           "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template,
                    ("strategy" if kind == "Deployment" else "updateStrategy"): {
                        "type": "RollingUpdate", "rollingUpdate": bad}}}
    with pytest.raises(kinds.Invalid, match=rf"{kind} web: spec\.(strategy|updateStrategy)"
                       r"\.rollingUpdate: must be an object, got"):
        kinds.validate(kinds.defaults(obj))
