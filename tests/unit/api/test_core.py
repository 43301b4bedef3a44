"""core/v1 kinds: real manifests validate unchanged, defaults apply, errors name the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from api import kinds
from tests.unit.api.manifests import at, container, pod

SERVICE: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
    "spec": {"selector": {"app": "web"},
             "ports": [{"name": "http", "port": 80, "targetPort": "http"},
                       {"name": "metrics", "port": 9090, "protocol": "TCP"}]}}
SECRET: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
    "data": {"password": "czNjcjN0"}, "stringData": {"user": "admin"}}
NODE: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Node",
    "metadata": {"name": "node-1", "labels": {"kubernetes.io/hostname": "node-1"}},
    "spec": {"podCIDR": "10.244.1.0/24", "unschedulable": False,
             "taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]},
    "status": {"capacity": {"cpu": "2", "memory": "4025704Ki", "pods": "110"},
               "allocatable": {"cpu": "1900m", "memory": "3.5Gi", "pods": 110},
               "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                               "lastHeartbeatTime": "2024-01-01T00:00:00Z"}],
               "addresses": [{"type": "InternalIP", "address": "10.0.0.2"}],
               "nodeInfo": {"kernelVersion": "6.1.0", "architecture": "amd64",
                            "operatingSystem": "linux"}}}
EVENT: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Event", "metadata": {"name": "web-0.17a", "namespace": "d"},
    "involvedObject": {"kind": "Pod", "name": "web-0", "namespace": "d"},
    "reason": "FailedScheduling", "type": "Warning", "count": 3,
    "message": "0/5 nodes are available", "firstTimestamp": "2024-01-01T00:00:00Z",
    "lastTimestamp": "2024-01-01T00:01:00Z", "source": {"component": "default-scheduler"}}
LEASE: dict[str, Any] = {
    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
    "metadata": {"name": "node-1", "namespace": "kube-node-lease"},
    "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40,
             "renewTime": "2024-01-01T00:00:00.000000Z", "leaseTransitions": 0}}
POD_WITH_STATUS = {**pod(), "status": {
    "phase": "Running", "podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}],
    "hostIP": "10.0.0.2", "startTime": "2024-01-01T00:00:00Z",
    "conditions": [{"type": "Ready", "status": "True"}],
    "containerStatuses": [{"name": "web", "ready": True, "restartCount": 1,
                           "image": "busybox:1.36", "imageID": "sha256:abc",
                           "containerID": "corral://abc",
                           "state": {"running": {"startedAt": "2024-01-01T00:00:01Z"}},
                           "lastState": {"terminated": {"exitCode": 137,
                                                        "reason": "OOMKilled"}}}]}}


@pytest.mark.parametrize("obj", [
    pytest.param(pod(), id="pod"),
    pytest.param(POD_WITH_STATUS, id="pod-with-status"),
    pytest.param(SERVICE, id="service"),
    pytest.param({**SERVICE, "spec": {"clusterIP": "None", "selector": {"app": "db"}}},
                 id="headless-service"),
    pytest.param({**SERVICE, "spec": {"type": "NodePort", "selector": {"app": "web"},
                                      "ports": [{"port": 80, "nodePort": 30080}]}},
                 id="nodeport-service"),
    pytest.param(SECRET, id="secret"),
    pytest.param(NODE, id="node"),
    pytest.param(EVENT, id="event"),
    pytest.param(LEASE, id="lease"),
])
def test_manifests_validate_unchanged(obj: dict[str, Any]) -> None:
    before = copy.deepcopy(obj)
    kinds.validate(obj)
    kinds.validate(kinds.defaults(obj))
    assert obj == before


def get(obj: Any, path: str) -> Any:
    for p in path.split("."):
        obj = obj[int(p)] if isinstance(obj, list) else obj[p]
    return obj


BARE_POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {
    "containers": [{"name": "a", "image": "nginx",
                    "ports": [{"containerPort": 80}],
                    "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
                    "livenessProbe": {"httpGet": {"port": 80}}},
                   {"name": "b", "image": "registry:5000/app:1.2"},
                   {"name": "c", "image": "app:latest"},
                   {"name": "d", "image": "app@sha256:abc"},
                   {"name": "e", "image": "app:1", "imagePullPolicy": "Never"}],
    "tolerations": [{"key": "k", "value": "v"}],
    "volumes": [{"name": "v"}, {"name": "cm", "configMap": {"name": "c"}},
                {"name": "s", "secret": {"secretName": "s"}}]}}


@pytest.mark.parametrize("obj,path,expected", [
    pytest.param(BARE_POD, "spec.restartPolicy", "Always", id="restartPolicy"),
    pytest.param(BARE_POD, "spec.terminationGracePeriodSeconds", 30, id="grace-period"),
    pytest.param(BARE_POD, "spec.dnsPolicy", "ClusterFirst", id="dnsPolicy"),
    pytest.param(BARE_POD, "spec.schedulerName", "default-scheduler", id="schedulerName"),
    pytest.param(BARE_POD, "spec.containers.0.imagePullPolicy", "Always",
                 id="pull-untagged"),
    pytest.param(BARE_POD, "spec.containers.1.imagePullPolicy", "IfNotPresent",
                 id="pull-tagged-with-registry-port"),
    pytest.param(BARE_POD, "spec.containers.2.imagePullPolicy", "Always", id="pull-latest"),
    pytest.param(BARE_POD, "spec.containers.3.imagePullPolicy", "IfNotPresent",
                 id="pull-digest"),
    pytest.param(BARE_POD, "spec.containers.4.imagePullPolicy", "Never", id="pull-explicit"),
    pytest.param(BARE_POD, "spec.containers.0.terminationMessagePath",
                 "/dev/termination-log", id="terminationMessagePath"),
    pytest.param(BARE_POD, "spec.containers.0.ports.0.protocol", "TCP", id="port-protocol"),
    pytest.param(BARE_POD, "spec.containers.0.resources.requests",
                 {"cpu": "1", "memory": "1Gi"}, id="requests-from-limits"),
    pytest.param(BARE_POD, "spec.containers.0.livenessProbe",
                 {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
                  "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1,
                  "failureThreshold": 3}, id="probe"),
    pytest.param(BARE_POD, "spec.tolerations.0.operator", "Equal", id="toleration-op"),
    pytest.param(BARE_POD, "spec.volumes.0.emptyDir", {}, id="volume-is-emptyDir"),
    pytest.param(BARE_POD, "spec.volumes.1.configMap.defaultMode", 420, id="cm-mode"),
    pytest.param(BARE_POD, "spec.volumes.2.secret.defaultMode", 0o400, id="secret-mode"),
    pytest.param(SERVICE, "spec.type", "ClusterIP", id="service-type"),
    pytest.param(SERVICE, "spec.ports.0.targetPort", "http", id="targetPort-given"),
    pytest.param(SERVICE, "spec.ports.1.targetPort", 9090, id="targetPort-is-port"),
    pytest.param(SERVICE, "spec.ports.0.protocol", "TCP", id="service-protocol"),
    pytest.param(SECRET, "type", "Opaque", id="secret-type"),
])
def test_defaults(obj: dict[str, Any], path: str, expected: Any) -> None:
    before = copy.deepcopy(obj)
    out = kinds.defaults(obj)
    assert get(out, path) == expected
    assert obj == before  # the input is untouched
    kinds.validate(out)


P = "Pod web-0: spec."


@pytest.mark.parametrize("obj,message", [
    pytest.param(at(pod(), "spec.containers.0.name", "Web"),
                 P + "containers[0].name: 'Web' is not a lowercase RFC 1123 label",
                 id="container-name"),
    pytest.param(pod(initContainers=[container()]),
                 P + "containers[0].name: duplicate container name 'web'",
                 id="duplicate-container"),
    pytest.param(at(pod(), "spec.containers.0.volumeMounts.0.name", "dta"),
                 P + "containers[0].volumeMounts[0].name: no volume named 'dta' in "
                 "spec.volumes", id="mount-of-undeclared-volume"),
    pytest.param(at(pod(), "spec.volumes.0", {"name": "data", "emptyDir": {},
                                             "hostPath": {"path": "/x"}}),
                 P + "volumes[0]: may not specify more than one volume source, got "
                 "emptyDir, hostPath", id="two-volume-sources"),
    pytest.param(at(pod(), "spec.volumes.0", {"name": "data", "persistentVolumeClaim": {}}),
                 P + "volumes[0]: persistentVolumeClaim volumes are not supported",
                 id="pvc"),
    pytest.param(at(pod(), "spec.volumes.0.emptyDir", {"medium": "Disk"}),
                 P + "volumes[0].emptyDir.medium: must be one of , Memory; got 'Disk'",
                 id="emptyDir-medium"),
    pytest.param(at(pod(), "spec.containers.0.env.0.name", "1MODE"),
                 P + "containers[0].env[0].name: '1MODE' is not a valid environment "
                 "variable name", id="env-name"),
    pytest.param(at(pod(), "spec.containers.0.env.0",
                    {"name": "A", "value": "x",
                     "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
                 P + "containers[0].env[0]: may not specify more than one of value, "
                 "valueFrom", id="value-and-valueFrom"),
    pytest.param(at(pod(), "spec.containers.0.env.0", {"name": "A", "valueFrom": {}}),
                 P + "containers[0].env[0].valueFrom: must specify exactly one source",
                 id="valueFrom-empty"),
    pytest.param(at(pod(), "spec.containers.0.ports.0.containerPort", 70000),
                 P + "containers[0].ports[0].containerPort: must be <= 65535, got 70000",
                 id="port-range"),
    pytest.param(at(pod(), "spec.containers.0.ports.0.containerPort", 0),
                 P + "containers[0].ports[0].containerPort: must be >= 1, got 0",
                 id="port-zero"),
    pytest.param(at(pod(), "spec.containers.0.resources.requests.cpu", "lots"),
                 P + "containers[0].resources.requests['cpu']: must be a quantity like "
                 "500m or 1Gi, got 'lots'", id="quantity"),
    pytest.param(at(pod(), "spec.containers.0.resources.requests.memory", "1Gi"),
                 P + "containers[0].resources.requests['memory']: must be less than or "
                 "equal to memory limit 128Mi, got 1Gi", id="request-over-limit"),
    pytest.param(at(pod(), "spec.containers.0.livenessProbe",
                    {"exec": {"command": ["true"]}, "tcpSocket": {"port": 80}}),
                 P + "containers[0].livenessProbe: must specify exactly one handler, got "
                 "exec, tcpSocket", id="two-probe-handlers"),
    pytest.param(at(pod(), "spec.containers.0.readinessProbe", {"periodSeconds": 5}),
                 P + "containers[0].readinessProbe: must specify exactly one handler: exec,"
                 " httpGet, tcpSocket", id="no-probe-handler"),
    pytest.param(at(pod(), "spec.containers.0.livenessProbe.httpGet.port", "HTTP"),
                 P + "containers[0].livenessProbe.httpGet.port: 'HTTP' is not a valid "
                 "port name", id="probe-port-name"),
    pytest.param(at(pod(), "spec.containers.0.imagePullPolicy", "Sometimes"),
                 P + "containers[0].imagePullPolicy: must be one of Always, IfNotPresent, "
                 "Never; got 'Sometimes'", id="pull-policy"),
    pytest.param(at(pod(), "spec.containers.0.image", ""),
                 P + "containers[0].image: is required", id="no-image"),
    pytest.param(pod(containers=[]), P + "containers: must have at least one container",
                 id="no-containers"),
    pytest.param(pod(restartPolicy="Sometimes"),
                 P + "restartPolicy: must be one of Always, OnFailure, Never", id="restart"),
    pytest.param(at(pod(), "spec.tolerations.1.value", "x"),
                 P + "tolerations[1].value: must be empty when operator is Exists",
                 id="toleration-exists-value"),
    pytest.param(at(pod(), "spec.tolerations.0.tolerationSeconds", 5),
                 P + "tolerations[0].effect: must be NoExecute when tolerationSeconds is "
                 "set", id="toleration-seconds"),
    pytest.param(at(pod(), "spec.affinity.nodeAffinity."
                    "requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms.0."
                    "matchExpressions.0", {"key": "cpus", "operator": "Gt",
                                           "values": ["a"]}),
                 P + "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution."
                 "nodeSelectorTerms[0].matchExpressions[0].values: must be a single "
                 "integer for Gt", id="affinity-gt"),
    pytest.param(at(pod(), "spec.affinity.podAntiAffinity."
                    "preferredDuringSchedulingIgnoredDuringExecution.0.weight", 101),
                 P + "affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution"
                 "[0].weight: must be <= 100, got 101", id="affinity-weight"),
    pytest.param(at(pod(), "spec.topologySpreadConstraints.0.whenUnsatisfiable", "Maybe"),
                 P + "topologySpreadConstraints[0].whenUnsatisfiable: must be one of "
                 "DoNotSchedule, ScheduleAnyway", id="spread"),
    pytest.param(at(pod(), "spec.containers.0.resurces", {}),
                 P + "containers[0].resurces: unknown field (did you mean 'resources'?)",
                 id="unknown-field"),
    pytest.param(at(SERVICE, "spec.ports.0.name", None),
                 "Service web: spec.ports[0].name: is required when there is more than one "
                 "port", id="service-port-names"),
    pytest.param(at(SERVICE, "spec.ports.0.nodePort", 30000),
                 "Service web: spec.ports[0].nodePort: may not be set when type is ClusterIP",
                 id="nodePort-on-ClusterIP"),
    pytest.param(at(SERVICE, "spec.type", "LoadBalancer"),
                 "Service web: spec.type: must be one of ClusterIP, NodePort",
                 id="service-type"),
    pytest.param(at(SERVICE, "spec.ports", []),
                 "Service web: spec.ports: must have at least one port", id="service-ports"),
    pytest.param(at(SECRET, "data", {"password": "not base64!"}),
                 "Secret db: data['password']: must be base64-encoded", id="secret-base64"),
    pytest.param(at(SECRET, "data", {"pass word": "YQ=="}),
                 "Secret db: data: 'pass word' is not a valid key", id="secret-key"),
    pytest.param(at(NODE, "status.capacity.cpu", "two"),
                 "Node node-1: status.capacity['cpu']: must be a quantity", id="node-cpu"),
    pytest.param(at(NODE, "spec.taints.0.effect", "NoRun"),
                 "Node node-1: spec.taints[0].effect: must be one of NoSchedule, "
                 "PreferNoSchedule, NoExecute", id="taint-effect"),
    pytest.param(at(NODE, "metadata.namespace", "default"),
                 "Node node-1: metadata.namespace: Node is cluster-scoped", id="node-scope"),
    pytest.param(at(EVENT, "type", "Error"),
                 "Event web-0.17a: type: must be one of Normal, Warning", id="event-type"),
    pytest.param(at(LEASE, "spec.leaseDurationSeconds", 0),
                 "Lease node-1: spec.leaseDurationSeconds: must be >= 1, got 0",
                 id="lease-duration"),
    pytest.param(at(POD_WITH_STATUS, "status.phase", "Done"),
                 "Pod web-0: status.phase: must be one of Pending, Running", id="phase"),
])
def test_errors_name_the_field(obj: dict[str, Any], message: str) -> None:
    with pytest.raises(kinds.Invalid) as e:
        kinds.validate(obj)
    assert str(e.value).startswith(message), str(e.value)


def test_explain_prints_field_docs() -> None:
    from api import schema as s
    schema = kinds.KINDS[("v1", "Pod")].schema
    path, node = schema.describe("spec.containers.livenessProbe")
    text = s.explain(node, path)
    assert "periodSeconds\t<an integer>" in text and "Seconds between probes." in text


@pytest.mark.parametrize("requests", [
    pytest.param(-1, id="integer"), pytest.param("1", id="string"), pytest.param([1], id="list"),
])
def test_requests_not_a_map_with_limits_is_a_field_error(requests: object) -> None:
    """Found by the API fuzz: defaulting requests from limits met a non-map requests and
    raised TypeError (an internal error) instead of leaving it for validation to name."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "namespace": "d"},
           "spec": {"containers": [{"name": "web", "image": "busybox", "resources": {
               "requests": requests, "limits": {"cpu": "500m"}}}]}}
    with pytest.raises(kinds.Invalid, match=r"Pod web-0: spec\.containers\[0\]\.resources"
                       r"\.requests: must be a map"):
        kinds.validate(kinds.defaults(pod))
