"""The v1 Container: image, command, env, ports, resources, probes, security context."""

from __future__ import annotations

import re
from typing import Any

from api import meta
from api import schema as s
from api.fields import int_or_name_port, port_field, port_name, quantity_field, resource_list
from api.quantity import parse


def env_var_name(value: Any) -> str | None:
    if not re.fullmatch(r"[-._a-zA-Z][-._a-zA-Z0-9]*", value):
        return (f"{value!r} is not a valid environment variable name (letters, digits, "
                "'_', '-' and '.', not starting with a digit)")
    return None


def _key_ref(what: str) -> s.Obj:
    return s.Obj({
        "name": s.string(f"Name of the {what}."),
        "key": s.string(f"The key of the {what} to select."),
        "optional": s.boolean(f"Whether the {what} or its key may be missing."),
    }, required=("key",), doc=f"Selects a key of a {what}.")


ENV_VAR = s.Obj({
    "name": s.string("Name of the environment variable.", checks=(env_var_name,)),
    "value": s.string("The value; $(VAR) references earlier variables."),
    "valueFrom": s.Obj({
        "configMapKeyRef": _key_ref("ConfigMap"),
        "secretKeyRef": _key_ref("Secret"),
        "fieldRef": s.Obj({
            "apiVersion": s.string("Version of the schema fieldPath is written in.",
                                   default="v1"),
            "fieldPath": s.string("Path of the pod field, e.g. metadata.name or "
                                  "status.podIP."),
        }, required=("fieldPath",), doc="A field of the pod."),
        "resourceFieldRef": s.Obj({
            "containerName": s.string("Container whose resources are read."),
            "resource": s.string("Resource to select, e.g. limits.cpu."),
            "divisor": quantity_field("Output unit, default 1."),
        }, required=("resource",), doc="A resource request or limit of a container."),
    }, checks=(s.exactly_one_of("configMapKeyRef", "secretKeyRef", "fieldRef",
                                "resourceFieldRef", what="source"),),
        doc="Where the value comes from; not with value."),
}, required=("name",), checks=(s.at_most_one_of("value", "valueFrom"),),
    doc="An environment variable of a container.")

ENV_FROM = s.Obj({
    "prefix": s.string("Prepended to every key; must then be a valid variable name."),
    "configMapRef": s.Obj({"name": s.string("Name of the ConfigMap."),
                           "optional": s.boolean("The ConfigMap may be missing.")},
                          doc="A ConfigMap whose keys become variables."),
    "secretRef": s.Obj({"name": s.string("Name of the Secret."),
                        "optional": s.boolean("The Secret may be missing.")},
                       doc="A Secret whose keys become variables."),
}, checks=(s.exactly_one_of("configMapRef", "secretRef", what="source"),),
    doc="A source of a set of environment variables.")

CONTAINER_PORT = s.Obj({
    "containerPort": port_field("Port the container listens on."),
    "hostPort": port_field("Port on the node forwarded to containerPort."),
    "hostIP": s.string("Host IP to bind hostPort to."),
    "name": s.string("IANA service name services can refer to.", checks=(port_name,)),
    "protocol": s.string("TCP, UDP or SCTP.", default="TCP", enum=("TCP", "UDP", "SCTP")),
}, required=("containerPort",), doc="A network port of a container.")


def _requests_within_limits(value: Any, path: str, errors: s.Errors) -> None:
    limits, requests = value.get("limits") or {}, value.get("requests") or {}
    for name, req in requests.items():
        if name in limits and parse(limits[name]) < parse(req):
            errors.append(s.FieldError(
                f"{path}.requests[{name!r}]",
                f"must be less than or equal to {name} limit {limits[name]}, got {req}"))


def _requests_from_limits(out: dict[str, Any]) -> None:
    """Kubernetes: a resource with a limit and no request requests its limit. Anything but
    maps is left as it is, for validation to name."""
    limits, requests = out.get("limits") or {}, out.get("requests") or {}
    if limits and isinstance(limits, dict) and isinstance(requests, dict):
        out["requests"] = {**limits, **requests}


RESOURCES = s.Obj({
    "requests": resource_list("Minimum resources the scheduler reserves (cpu, memory)."),
    "limits": resource_list("Maximum resources the container may use."),
}, validators=(_requests_within_limits,), post_defaults=(_requests_from_limits,),
    doc="Compute resources: requests are reserved, limits are enforced.")

def relative_sub_path(value: Any) -> str | None:
    """Kubernetes: a subPath is relative and has no `..` component (the agent also checks
    that it resolves, after symlinks, inside the volume)."""
    if value.startswith("/"):
        return f"must be a relative path, got {value!r}"
    if ".." in value.split("/"):
        return "must not contain '..'"
    return None


VOLUME_MOUNT = s.Obj({
    "name": s.string("Name of a volume of the pod."),
    "mountPath": s.string("Path in the container to mount at; must not contain ':'."),
    "readOnly": s.boolean("Mount read-only."),
    "subPath": s.string("Path within the volume to mount instead of its root: relative, "
                        "without '..'.", checks=(relative_sub_path,)),
}, required=("name", "mountPath"), doc="A volume mounted into the container.")

EXEC = s.Obj({"command": s.List(s.string(), doc="Command line, run without a shell.")},
             doc="Run a command in the container; exit 0 is success.")

HTTP_GET = s.Obj({
    "path": s.string("Path to request.", default="/"),
    "port": s.int_or_string("Port number or name.", checks=(int_or_name_port,)),
    "host": s.string("Host to connect to, default the pod IP."),
    "scheme": s.string("HTTP or HTTPS.", default="HTTP", enum=("HTTP", "HTTPS")),
    "httpHeaders": s.List(s.Obj({"name": s.string("Header name."),
                                 "value": s.string("Header value.")},
                                required=("name",)), doc="Extra request headers."),
}, required=("port",), doc="An HTTP GET; a status in 200..399 is success.")

TCP_SOCKET = s.Obj({
    "port": s.int_or_string("Port number or name.", checks=(int_or_name_port,)),
    "host": s.string("Host to connect to, default the pod IP."),
}, required=("port",), doc="A TCP connect; success if it opens.")

_HANDLERS = ("exec", "httpGet", "tcpSocket")


def probe(doc: str) -> s.Obj:
    return s.Obj({
        "exec": EXEC,
        "httpGet": HTTP_GET,
        "tcpSocket": TCP_SOCKET,
        "initialDelaySeconds": s.integer("Seconds after start before the first probe.",
                                         minimum=0),
        "timeoutSeconds": s.integer("Seconds after which the probe times out.", default=1,
                                    minimum=1),
        "periodSeconds": s.integer("Seconds between probes.", default=10, minimum=1),
        "successThreshold": s.integer("Consecutive successes to count as success.",
                                      default=1, minimum=1),
        "failureThreshold": s.integer("Consecutive failures to count as failure.",
                                      default=3, minimum=1),
        "terminationGracePeriodSeconds": s.integer("Grace period when the probe fails.",
                                                   minimum=1),
    }, checks=(s.exactly_one_of(*_HANDLERS, what="handler"),), doc=doc)


def _handler(doc: str) -> s.Obj:
    return s.Obj({"exec": EXEC, "httpGet": HTTP_GET, "tcpSocket": TCP_SOCKET},
                 checks=(s.exactly_one_of(*_HANDLERS, what="handler"),), doc=doc)


LIFECYCLE = s.Obj({
    "postStart": _handler("Run right after the container starts."),
    "preStop": _handler("Run before the container is stopped (before SIGTERM)."),
}, doc="Actions taken on container lifecycle events.")

SECURITY_CONTEXT = s.Obj({
    "runAsUser": s.integer("UID to run the entrypoint as.", minimum=0),
    "runAsGroup": s.integer("GID to run the entrypoint as.", minimum=0),
    "runAsNonRoot": s.boolean("Refuse to start if the image would run as UID 0."),
    "privileged": s.boolean("Run privileged: all capabilities and devices."),
    "readOnlyRootFilesystem": s.boolean("Mount the root filesystem read-only."),
    "allowPrivilegeEscalation": s.boolean("Whether no_new_privs is left unset."),
    "capabilities": s.Obj({
        "add": s.List(s.string(), doc="Capabilities to add, e.g. NET_ADMIN."),
        "drop": s.List(s.string(), doc="Capabilities to drop, e.g. ALL."),
    }, doc="Linux capabilities to add and drop."),
}, doc="Security options of the container; override the pod's.")


def image_pull_policy_default(out: dict[str, Any]) -> None:
    """Always for :latest or an untagged image, else IfNotPresent (Kubernetes)."""
    if out.get("imagePullPolicy") or not isinstance(out.get("image"), str):
        return
    image = out["image"].split("@", 1)
    if len(image) == 2:  # pinned by digest
        out["imagePullPolicy"] = "IfNotPresent"
        return
    last = image[0].rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    out["imagePullPolicy"] = "Always" if tag in ("", "latest") else "IfNotPresent"


CONTAINER = s.Obj({
    "name": s.string("Name of the container (a DNS label), unique in the pod.",
                     checks=(meta.dns_label,)),
    "image": s.string("Container image reference, e.g. busybox:1.36."),
    "command": s.List(s.string(), doc="Entrypoint; replaces the image's ENTRYPOINT."),
    "args": s.List(s.string(), doc="Arguments; replace the image's CMD."),
    "workingDir": s.string("Working directory; default the image's."),
    "env": s.List(ENV_VAR, doc="Environment variables to set."),
    "envFrom": s.List(ENV_FROM, doc="Sources of environment variables."),
    "ports": s.List(CONTAINER_PORT, doc="Ports the container exposes (informational)."),
    "resources": RESOURCES,
    "volumeMounts": s.List(VOLUME_MOUNT, doc="Volumes of the pod to mount."),
    "livenessProbe": probe("Restart the container when this fails."),
    "readinessProbe": probe("Remove the pod from service endpoints when this fails."),
    "startupProbe": probe("Hold the other probes until this succeeds once."),
    "lifecycle": LIFECYCLE,
    "imagePullPolicy": s.string("Always, IfNotPresent or Never; default Always for "
                                ":latest or untagged images, else IfNotPresent.",
                                enum=("Always", "IfNotPresent", "Never")),
    "securityContext": SECURITY_CONTEXT,
    "terminationMessagePath": s.string("File the container's termination message is "
                                       "read from.", default="/dev/termination-log"),
    "terminationMessagePolicy": s.string("File or FallbackToLogsOnError.", default="File",
                                         enum=("File", "FallbackToLogsOnError")),
    "stdin": s.boolean("Allocate a stdin buffer."),
    "stdinOnce": s.boolean("Close stdin after the first attach detaches."),
    "tty": s.boolean("Allocate a TTY (needs stdin)."),
}, required=("name", "image"), post_defaults=(image_pull_policy_default,),
    doc="A container of a pod.")
