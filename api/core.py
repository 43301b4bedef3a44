"""The core/v1 kinds besides Namespace and ConfigMap: Pod, Service, Secret, Node, Event.

Each is a KindDef that kinds.py registers; the pod spec lives in pod.py and container.py.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from api import meta
from api import schema as s
from api.fields import (
    OBJECT_REFERENCE,
    KindDef,
    condition,
    int_or_name_port,
    port_field,
    resource_list,
)
from api.pod import POD_SPEC, POD_STATUS, TAINT_EFFECTS
from api.quantity import parse as parse_quantity

POD = KindDef(
    api_version="v1", kind="Pod", resource="pods", namespaced=True,
    doc="A group of containers scheduled together onto one node.",
    fields={"spec": POD_SPEC, "status": POD_STATUS})

# ---- Service ---------------------------------------------------------------------------


def _target_port_default(out: dict[str, Any]) -> None:
    if out.get("targetPort") is None and out.get("port") is not None:
        out["targetPort"] = out["port"]


SERVICE_PORT = s.Obj({
    "name": s.string("Name of the port (a DNS label); required with several ports.",
                     checks=(meta.dns_label,)),
    "protocol": s.string("TCP, UDP or SCTP.", default="TCP", enum=("TCP", "UDP", "SCTP")),
    "port": port_field("Port the service listens on."),
    "targetPort": s.int_or_string("Port number or name on the pods; default port.",
                                  checks=(int_or_name_port,)),
    "nodePort": s.integer("Port on every node (type NodePort), 30000-32767.",
                          minimum=1, maximum=65535),
}, required=("port",), post_defaults=(_target_port_default,),
    doc="A port the service exposes.")


def _service_ok(value: Any, path: str, errors: s.Errors) -> None:
    ports = value.get("ports") or []
    kind = value.get("type", "ClusterIP")
    headless = value.get("clusterIP") == "None"
    if not ports and not headless:
        errors.append(s.FieldError(f"{path}.ports", "must have at least one port"))
    names: set[str] = set()
    for i, p in enumerate(ports):
        if len(ports) > 1 and not p.get("name"):
            errors.append(s.FieldError(f"{path}.ports[{i}].name",
                                       "is required when there is more than one port"))
        if p.get("name") and p["name"] in names:
            errors.append(s.FieldError(f"{path}.ports[{i}].name",
                                       f"duplicate port name {p['name']!r}"))
        names.add(p.get("name"))
        if p.get("nodePort") is not None and kind != "NodePort":
            errors.append(s.FieldError(f"{path}.ports[{i}].nodePort",
                                       f"may not be set when type is {kind}"))
    if headless and kind != "ClusterIP":
        errors.append(s.FieldError(f"{path}.clusterIP",
                                   f"may be None (headless) only when type is ClusterIP, "
                                   f"got {kind}"))


SERVICE = KindDef(
    api_version="v1", kind="Service", resource="services", namespaced=True,
    name_check=meta.dns_label,
    doc="A stable virtual IP and ports in front of the pods a selector matches.",
    fields={
        "spec": s.Obj({
            "type": s.string("ClusterIP or NodePort.", default="ClusterIP",
                             enum=("ClusterIP", "NodePort")),
            "selector": s.Map(s.string(), doc="Pods with these labels receive traffic."),
            "ports": s.List(SERVICE_PORT, doc="The ports the service exposes."),
            "clusterIP": s.string("Virtual IP; allocated if empty; None for a headless "
                                  "service."),
            "clusterIPs": s.List(s.string(), doc="Virtual IPs; the first is clusterIP."),
            "sessionAffinity": s.string("None or ClientIP.", default="None",
                                        enum=("None", "ClientIP")),
            "publishNotReadyAddresses": s.boolean("Include not-ready pods in endpoints."),
        }, validators=(_service_ok,), default=dict, doc="How the service is exposed."),
        "status": s.Obj({"loadBalancer": s.Obj({"ingress": s.List(s.Map(s.Node()))},
                                               doc="Not used by corral.")},
                        doc="The observed state of the service."),
    })

# ---- Secret ------------------------------------------------------------------------------


def config_key(value: Any) -> str | None:
    if not re.fullmatch(r"[-._a-zA-Z0-9]+", value) or len(value) > 253:
        return (f"{value!r} is not a valid key (letters, digits, '-', '_' and '.', "
                "at most 253)")
    return None


def _keys(value: Any) -> str | None:
    for k in value:
        problem = config_key(k)
        if problem:
            return problem
    return None


def base64_value(value: Any) -> str | None:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return f"must be base64-encoded, got {value[:20]!r}"
    return None


SECRET = KindDef(
    api_version="v1", kind="Secret", resource="secrets", namespaced=True,
    doc="Sensitive data (passwords, tokens, keys) for pods; encrypted at rest.",
    fields={
        "data": s.Map(s.string(checks=(base64_value,)), checks=(_keys,),
                      doc="Base64-encoded values."),
        "stringData": s.Map(s.string(), checks=(_keys,),
                            doc="Plain values, merged into data on write."),
        "type": s.string("How the data is used; Opaque for arbitrary data.",
                         default="Opaque"),
        "immutable": s.boolean("Data cannot change once set."),
    })

# ---- Node --------------------------------------------------------------------------------

TAINT = s.Obj({
    "key": s.string("Taint key."),
    "value": s.string("Taint value."),
    "effect": s.string("What happens to pods that do not tolerate it.",
                       enum=TAINT_EFFECTS),
    "timeAdded": s.string("When a NoExecute taint was added, RFC 3339."),
}, required=("key", "effect"), doc="Repels pods that do not tolerate it.")

# Kubernetes' IsIntegerResourceName for what a node reports: "pods", and every extended
# resource (a name with a domain outside kubernetes.io, like example.com/gpu).
INTEGER_NODE_RESOURCES = frozenset({"pods"})


def integer_resource(name: str) -> bool:
    if name in INTEGER_NODE_RESOURCES:
        return True
    domain, slash, _ = name.partition("/")
    native = not slash or domain == "kubernetes.io" or domain.endswith(".kubernetes.io")
    return not native and not name.startswith("requests.")


def _node_resources_ok(value: Any, path: str, errors: s.Errors) -> None:
    """Kubernetes' ValidateNodeResources: every quantity is non-negative (the schema checks
    that) and integer resources are whole numbers. Allocatable above capacity is allowed,
    as in Kubernetes: the agent computes allocatable, the API does not second-guess it."""
    for part in ("capacity", "allocatable"):
        for name, amount in (value.get(part) or {}).items():
            if integer_resource(str(name)) and parse_quantity(amount).amount.denominator != 1:
                errors.append(s.FieldError(f"{path}.{part}[{name!r}]",
                                           f"must be an integer, got {amount!r}"))


NODE = KindDef(
    api_version="v1", kind="Node", resource="nodes", namespaced=False,
    doc="A machine that runs pods, registered by its agent.",
    fields={
        "spec": s.Obj({
            "unschedulable": s.boolean("Keep new pods off the node (cordon)."),
            "taints": s.List(TAINT, doc="Taints of the node."),
            "podCIDR": s.string("IP range of the node's pods."),
            "podCIDRs": s.List(s.string(), doc="IP ranges of the node's pods."),
            "providerID": s.string("ID of the machine at its provider."),
        }, doc="The desired state of the node."),
        "status": s.Obj({
            "capacity": resource_list("Total resources of the node (cpu, memory, pods)."),
            "allocatable": resource_list("Resources available to pods."),
            "conditions": s.List(condition(with_heartbeat=True),
                                 doc="Ready, MemoryPressure, DiskPressure, PIDPressure."),
            "addresses": s.List(s.Obj({
                "type": s.string("Hostname, InternalIP or ExternalIP.",
                                 enum=("Hostname", "InternalIP", "ExternalIP",
                                       "InternalDNS", "ExternalDNS")),
                "address": s.string("The address."),
            }, required=("type", "address")), doc="Addresses the node is reachable at."),
            "nodeInfo": s.Obj({name: s.string() for name in (
                "machineID", "systemUUID", "bootID", "kernelVersion", "osImage",
                "containerRuntimeVersion", "kubeletVersion", "kubeProxyVersion",
                "operatingSystem", "architecture")}, doc="Facts about the node."),
            "daemonEndpoints": s.Obj({"kubeletEndpoint": s.Obj({"Port": s.integer()})},
                                     doc="Endpoints of the node's agent."),
            "images": s.List(s.Obj({"names": s.List(s.string()),
                                    "sizeBytes": s.integer(minimum=0)}),
                             doc="Images present on the node."),
        }, validators=(_node_resources_ok,), doc="The observed state of the node."),
    })

# ---- Event -------------------------------------------------------------------------------

EVENT = KindDef(
    api_version="v1", kind="Event", resource="events", namespaced=True,
    doc="A report of something that happened to an object.",
    fields={
        "involvedObject": OBJECT_REFERENCE,
        "reason": s.string("One CamelCase word, e.g. FailedScheduling."),
        "message": s.string("What happened, for a human."),
        "type": s.string("Normal or Warning.", enum=("Normal", "Warning")),
        "count": s.integer("Times this event has occurred.", minimum=0),
        "firstTimestamp": s.string("When it first occurred, RFC 3339."),
        "lastTimestamp": s.string("When it last occurred, RFC 3339."),
        "eventTime": s.string("When it first occurred, microseconds."),
        "source": s.Obj({"component": s.string("Component that reported it."),
                         "host": s.string("Node it was reported on.")},
                        doc="Who reported the event."),
        "reportingComponent": s.string("Component that reported it."),
        "reportingInstance": s.string("Instance of that component."),
        "action": s.string("What was done, e.g. Binding."),
    })

# ---- Lease (coordination.k8s.io/v1) ------------------------------------------------------

LEASE = KindDef(
    api_version="coordination.k8s.io/v1", kind="Lease", resource="leases", namespaced=True,
    doc="A lease held by one holder at a time: node heartbeats, leader election.",
    fields={
        "spec": s.Obj({
            "holderIdentity": s.string("Who holds the lease."),
            "leaseDurationSeconds": s.integer("Seconds the lease lasts after renewTime.",
                                              minimum=1),
            "acquireTime": s.string("When the current holder acquired it, RFC 3339."),
            "renewTime": s.string("When the holder last renewed it, RFC 3339."),
            "leaseTransitions": s.integer("Times the lease changed holders.", minimum=0),
        }, doc="The lease's holder and times."),
    })

KIND_DEFS = (POD, SERVICE, SECRET, NODE, EVENT, LEASE)
