"""Kubernetes manifests as users write them, shared by the kind tests."""

from __future__ import annotations

import copy
from typing import Any


def container(**over: Any) -> dict[str, Any]:
    c: dict[str, Any] = {
        "name": "web", "image": "busybox:1.36",
        "command": ["httpd", "-f", "-p", "8080"],
        "env": [{"name": "MODE", "value": "prod"},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db",
                                                                    "key": "password"}}}],
        "envFrom": [{"configMapRef": {"name": "web-config"}}],
        "ports": [{"containerPort": 8080, "name": "http"}],
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                      "limits": {"cpu": "500m", "memory": "128Mi"}},
        "volumeMounts": [{"name": "data", "mountPath": "/data"},
                         {"name": "config", "mountPath": "/etc/web", "readOnly": True}],
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"},
                          "initialDelaySeconds": 5},
        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 5},
        "startupProbe": {"exec": {"command": ["cat", "/tmp/started"]},
                         "failureThreshold": 30},
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}},
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000,
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}},
    }
    c.update(over)
    return c


def pod_spec(**over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [container()],
        "initContainers": [{"name": "init", "image": "busybox:1.36",
                            "command": ["sh", "-c", "echo ready"]}],
        "volumes": [{"name": "data", "emptyDir": {"sizeLimit": "1Gi"}},
                    {"name": "config", "configMap": {"name": "web-config"}},
                    {"name": "creds", "secret": {"secretName": "db"}}],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "affinity": {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "disktype", "operator": "In", "values": ["ssd"]}]}]}},
            "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                "weight": 100, "podAffinityTerm": {
                    "labelSelector": {"matchLabels": {"app": "web"}},
                    "topologyKey": "kubernetes.io/hostname"}}]},
        },
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "web",
                         "effect": "NoSchedule"},
                        {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                         "effect": "NoExecute", "tolerationSeconds": 60}],
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone",
                                       "whenUnsatisfiable": "ScheduleAnyway",
                                       "labelSelector": {"matchLabels": {"app": "web"}}}],
    }
    spec.update(over)
    return spec


def deployment(**spec_over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "replicas": 3,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web", "tier": "frontend"}},
                     "spec": pod_spec()},
    }
    spec.update(spec_over)
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": spec}


def job(**spec_over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "template": {"spec": {"containers": [{"name": "pi", "image": "perl:5.34",
                                              "command": ["perl", "-e", "print 1"]}],
                              "restartPolicy": "Never"}},
        "backoffLimit": 4,
    }
    spec.update(spec_over)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi"},
            "spec": spec}


def pod(**spec_over: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-0", "labels": {"app": "web"}},
            "spec": pod_spec(**spec_over)}


def at(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of OBJ with the field at dotted PATH (list indices as numbers) set."""
    out = copy.deepcopy(obj)
    parts = path.split(".")
    node: Any = out
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node[p]
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return out
