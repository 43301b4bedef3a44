"""The v1 PodSpec and its pieces: volumes, scheduling constraints, the pod template.

    POD_SPEC         containers, volumes, restartPolicy, affinity, tolerations, ...
    POD_STATUS       phase, conditions, IPs, containerStatuses
    pod_template()   {metadata, spec}: what Deployments, ReplicaSets, DaemonSets, Jobs stamp
"""

from __future__ import annotations

from typing import Any

from api import meta
from api import schema as s
from api.container import CONTAINER
from api.fields import condition, label_selector, quantity_field

# ---- volumes -------------------------------------------------------------------------

_KEY_TO_PATH = s.Obj({
    "key": s.string("Key of the ConfigMap or Secret."),
    "path": s.string("Relative file path to project the key to."),
    "mode": s.integer("File mode bits, 0..0777.", minimum=0, maximum=0o777),
}, required=("key", "path"), doc="Projects one key to one file.")

# Secrets are readable by their owner only unless the pod says otherwise (corral's
# default; Kubernetes defaults every projection, secrets too, to 0644).
_SECRET_MODE = s.integer("Mode bits of the created files, 0..0777; default 0400.",
                         default=0o400, minimum=0, maximum=0o777)
_DEFAULT_MODE = s.integer("Mode bits of the created files, 0..0777; default 0644.",
                          default=0o644, minimum=0, maximum=0o777)

VOLUME_SOURCES = ("emptyDir", "hostPath", "configMap", "secret", "downwardAPI")


def _volume_default_source(out: dict[str, Any]) -> None:
    """Kubernetes: a volume that names no source is an emptyDir."""
    if not any(out.get(k) is not None for k in VOLUME_SOURCES):
        out["emptyDir"] = {}


def _no_pvc(value: Any) -> str | None:
    if isinstance(value, dict) and "persistentVolumeClaim" in value:
        return "persistentVolumeClaim volumes are not supported by corral"
    return None


VOLUME = s.Obj({
    "name": s.string("Name of the volume (a DNS label), unique in the pod.",
                     checks=(meta.dns_label,)),
    "emptyDir": s.Obj({
        "medium": s.string('"" (node disk) or Memory (tmpfs).', enum=("", "Memory")),
        "sizeLimit": quantity_field("Maximum size of the volume."),
    }, doc="A directory that starts empty and lives as long as the pod."),
    "hostPath": s.Obj({
        "path": s.string("Path of the directory or file on the node."),
        "type": s.string("What must be at path.", enum=(
            "", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket",
            "CharDevice", "BlockDevice")),
    }, required=("path",), doc="A file or directory of the node."),
    "configMap": s.Obj({
        "name": s.string("Name of the ConfigMap."),
        "items": s.List(_KEY_TO_PATH, doc="Keys to project; default all."),
        "defaultMode": _DEFAULT_MODE,
        "optional": s.boolean("The ConfigMap may be missing."),
    }, doc="The keys of a ConfigMap as files."),
    "secret": s.Obj({
        "secretName": s.string("Name of the Secret."),
        "items": s.List(_KEY_TO_PATH, doc="Keys to project; default all."),
        "defaultMode": _SECRET_MODE,
        "optional": s.boolean("The Secret may be missing."),
    }, doc="The keys of a Secret as files (tmpfs)."),
    "downwardAPI": s.Obj({
        "items": s.List(s.Obj({
            "path": s.string("Relative file path."),
            "fieldRef": s.Obj({"apiVersion": s.string(default="v1"),
                               "fieldPath": s.string("Path of the pod field.")},
                              required=("fieldPath",), doc="A field of the pod."),
            "resourceFieldRef": s.Obj({
                "containerName": s.string("Container whose resources are read."),
                "resource": s.string("Resource to select, e.g. limits.memory."),
                "divisor": quantity_field("Output unit."),
            }, required=("resource",), doc="A resource of a container."),
            "mode": s.integer("File mode bits.", minimum=0, maximum=0o777),
        }, required=("path",), checks=(s.exactly_one_of("fieldRef", "resourceFieldRef"),)),
            doc="Files and the pod fields they hold."),
        "defaultMode": _DEFAULT_MODE,
    }, doc="Pod fields (labels, annotations, resources) as files."),
}, required=("name",), doc="A named volume containers can mount.",
    checks=(_no_pvc, s.at_most_one_of(*VOLUME_SOURCES, what="volume source")),
    post_defaults=(_volume_default_source,))
# persistentVolumeClaim would be reported by the Obj as an unknown field; _no_pvc says why.
VOLUME.fields["persistentVolumeClaim"] = s.Node(doc="Not supported by corral.")

# ---- scheduling constraints ----------------------------------------------------------


def _node_requirement_ok(value: Any, path: str, errors: s.Errors) -> None:
    op, values = value.get("operator"), value.get("values") or []
    if op in ("In", "NotIn") and not values:
        errors.append(s.FieldError(f"{path}.values", f"must be non-empty for {op}"))
    elif op in ("Exists", "DoesNotExist") and values:
        errors.append(s.FieldError(f"{path}.values", f"must be empty for {op}"))
    elif op in ("Gt", "Lt") and (len(values) != 1 or not values[0].lstrip("-").isdigit()):
        errors.append(s.FieldError(f"{path}.values",
                                   f"must be a single integer for {op}, got {values}"))


NODE_SELECTOR_REQUIREMENT = s.Obj({
    "key": s.string("The label key the requirement applies to."),
    "operator": s.string("How the key relates to the values.",
                         enum=("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")),
    "values": s.List(s.string(), doc="Values; one integer for Gt and Lt."),
}, required=("key", "operator"), validators=(_node_requirement_ok,),
    doc="A requirement on a node label or field.")

NODE_SELECTOR_TERM = s.Obj({
    "matchExpressions": s.List(NODE_SELECTOR_REQUIREMENT, doc="Requirements on labels."),
    "matchFields": s.List(NODE_SELECTOR_REQUIREMENT, doc="Requirements on fields."),
}, doc="Requirements that must all hold (terms are ORed).")

_REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
_PREFERRED = "preferredDuringSchedulingIgnoredDuringExecution"
_WEIGHT = s.integer("Weight of the preference, 1..100.", minimum=1, maximum=100)

NODE_AFFINITY = s.Obj({
    _REQUIRED: s.Obj({"nodeSelectorTerms": s.List(NODE_SELECTOR_TERM,
                                                  doc="Terms, any of which must match.")},
                     required=("nodeSelectorTerms",),
                     doc="Nodes the pod may be scheduled to."),
    _PREFERRED: s.List(s.Obj({"weight": _WEIGHT, "preference": NODE_SELECTOR_TERM},
                             required=("weight", "preference")),
                       doc="Nodes the scheduler prefers, by weight."),
}, doc="Rules on node labels.")

POD_AFFINITY_TERM = s.Obj({
    "labelSelector": label_selector("The pods this term is about."),
    "namespaces": s.List(s.string(), doc="Namespaces of those pods; default the pod's."),
    "namespaceSelector": label_selector("Namespaces of those pods, by label."),
    "topologyKey": s.string("Node label whose equal values make one domain, e.g. "
                            "kubernetes.io/hostname."),
}, required=("topologyKey",), doc="Pods in the same topology domain as matching pods.")


def _pod_affinity(doc: str) -> s.Obj:
    return s.Obj({
        _REQUIRED: s.List(POD_AFFINITY_TERM, doc="Terms that must all hold."),
        _PREFERRED: s.List(s.Obj({"weight": _WEIGHT, "podAffinityTerm": POD_AFFINITY_TERM},
                                 required=("weight", "podAffinityTerm")),
                           doc="Terms the scheduler prefers, by weight."),
    }, doc=doc)


AFFINITY = s.Obj({
    "nodeAffinity": NODE_AFFINITY,
    "podAffinity": _pod_affinity("Co-locate with matching pods."),
    "podAntiAffinity": _pod_affinity("Keep away from matching pods."),
}, doc="Scheduling constraints on nodes and other pods.")


def _toleration_ok(value: Any, path: str, errors: s.Errors) -> None:
    if value.get("operator") == "Exists" and value.get("value"):
        errors.append(s.FieldError(f"{path}.value", "must be empty when operator is Exists"))
    if not value.get("key") and value.get("operator", "Equal") != "Exists":
        errors.append(s.FieldError(f"{path}.operator",
                                   "must be Exists when key is empty"))
    if value.get("tolerationSeconds") is not None and value.get("effect") != "NoExecute":
        errors.append(s.FieldError(f"{path}.effect", "must be NoExecute when "
                                   "tolerationSeconds is set"))


TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")

TOLERATION = s.Obj({
    "key": s.string("Taint key; empty with Exists tolerates everything."),
    "operator": s.string("Equal or Exists.", default="Equal", enum=("Equal", "Exists")),
    "value": s.string("Taint value to match with Equal."),
    "effect": s.string("Effect to match; empty matches all.", enum=("", *TAINT_EFFECTS)),
    "tolerationSeconds": s.integer("How long a NoExecute taint is tolerated."),
}, validators=(_toleration_ok,), doc="Lets the pod be scheduled onto matching taints.")

TOPOLOGY_SPREAD_CONSTRAINT = s.Obj({
    "maxSkew": s.integer("Most the count of matching pods may differ between domains.",
                         minimum=1),
    "topologyKey": s.string("Node label that defines the domains."),
    "whenUnsatisfiable": s.string("DoNotSchedule or ScheduleAnyway.",
                                  enum=("DoNotSchedule", "ScheduleAnyway")),
    "labelSelector": label_selector("The pods that are counted."),
    "minDomains": s.integer("Minimum number of eligible domains.", minimum=1),
    "matchLabelKeys": s.List(s.string(), doc="Keys of the incoming pod's labels whose "
                             "values narrow the pods counted."),
    "nodeAffinityPolicy": s.string("Honor (default) or Ignore the pod's node affinity "
                                   "when counting domains.", enum=("Honor", "Ignore")),
    "nodeTaintsPolicy": s.string("Honor or Ignore (default) node taints when counting "
                                 "domains.", enum=("Honor", "Ignore")),
}, required=("maxSkew", "topologyKey", "whenUnsatisfiable"),
    doc="How matching pods are spread over topology domains.")

POD_SECURITY_CONTEXT = s.Obj({
    "runAsUser": s.integer("UID for every container.", minimum=0),
    "runAsGroup": s.integer("GID for every container.", minimum=0),
    "runAsNonRoot": s.boolean("Refuse containers that would run as UID 0."),
    "fsGroup": s.integer("Group owning the pod's volumes.", minimum=0),
    "supplementalGroups": s.List(s.integer(minimum=0), doc="Extra groups."),
}, doc="Security options for every container of the pod.")

# ---- the pod spec ----------------------------------------------------------------------


def _pod_spec_ok(value: Any, path: str, errors: s.Errors) -> None:
    if not value.get("containers"):
        errors.append(s.FieldError(f"{path}.containers", "must have at least one container"))
    seen: set[str] = set()
    for field in ("initContainers", "containers"):
        for i, c in enumerate(value.get(field) or []):
            if c.get("name") in seen:
                errors.append(s.FieldError(f"{path}.{field}[{i}].name",
                                           f"duplicate container name {c['name']!r}"))
            seen.add(c.get("name"))
    volumes: set[str] = set()
    for i, v in enumerate(value.get("volumes") or []):
        if v.get("name") in volumes:
            errors.append(s.FieldError(f"{path}.volumes[{i}].name",
                                       f"duplicate volume name {v['name']!r}"))
        volumes.add(v.get("name"))
    for field in ("initContainers", "containers"):
        for i, c in enumerate(value.get(field) or []):
            for j, m in enumerate(c.get("volumeMounts") or []):
                if m.get("name") not in volumes:
                    errors.append(s.FieldError(f"{path}.{field}[{i}].volumeMounts[{j}].name",
                                               f"no volume named {m.get('name')!r} in "
                                               f"{path}.volumes"))
    if value.get("shareProcessNamespace") and value.get("hostPID"):  # as Kubernetes
        errors.append(s.FieldError(f"{path}.shareProcessNamespace",
                                   "must not be true when hostPID is true (shareProcessNamespace"
                                   " and hostPID cannot both be enabled)"))


POD_SPEC = s.Obj({
    "containers": s.List(CONTAINER, doc="The containers of the pod; at least one."),
    "initContainers": s.List(CONTAINER, doc="Run to completion in order before the "
                             "containers start."),
    "volumes": s.List(VOLUME, doc="Volumes the containers can mount."),
    "restartPolicy": s.string("Always, OnFailure or Never.", default="Always",
                              enum=("Always", "OnFailure", "Never")),
    "terminationGracePeriodSeconds": s.integer("Seconds between SIGTERM and SIGKILL.",
                                               default=30, minimum=0),
    "activeDeadlineSeconds": s.integer("Seconds the pod may run before it is failed.",
                                       minimum=1),
    "dnsPolicy": s.string("ClusterFirst, Default, ClusterFirstWithHostNet or None.",
                          default="ClusterFirst", enum=("ClusterFirst", "Default",
                                                        "ClusterFirstWithHostNet", "None")),
    "nodeSelector": s.Map(s.string(), doc="Labels a node must have to run the pod."),
    "nodeName": s.string("The node the pod is bound to; set by the scheduler."),
    "serviceAccountName": s.string("Service account the pod runs as."),
    "serviceAccount": s.string("Deprecated alias of serviceAccountName."),
    "automountServiceAccountToken": s.boolean("Mount the service account's token."),
    "hostNetwork": s.boolean("Use the node's network namespace."),
    "hostPID": s.boolean("Use the node's PID namespace."),
    "shareProcessNamespace": s.boolean("One PID namespace for all the pod's containers (a "
                                       "pause container is its init): each sees the "
                                       "others' processes. Not with hostPID."),
    "hostIPC": s.boolean("Use the node's IPC namespace."),
    "hostname": s.string("Hostname of the pod; default its name.",
                         checks=(meta.dns_label,)),
    "subdomain": s.string("Subdomain: <hostname>.<subdomain>.<ns>.svc.",
                          checks=(meta.dns_label,)),
    "affinity": AFFINITY,
    "tolerations": s.List(TOLERATION, doc="Taints the pod tolerates."),
    "topologySpreadConstraints": s.List(TOPOLOGY_SPREAD_CONSTRAINT,
                                        doc="How to spread pods over domains."),
    "priorityClassName": s.string("Name of the pod's priority class."),
    "priority": s.integer("Priority; higher preempts lower. Set from priorityClassName."),
    "preemptionPolicy": s.string("PreemptLowerPriority (default) or Never.",
                                 enum=("PreemptLowerPriority", "Never")),
    "schedulerName": s.string("Scheduler that places the pod.",
                              default="default-scheduler"),
    "securityContext": POD_SECURITY_CONTEXT,
    "imagePullSecrets": s.List(s.Obj({"name": s.string("Name of a Secret.")}),
                               doc="Secrets with registry credentials."),
    "enableServiceLinks": s.boolean("Inject service environment variables."),
}, validators=(_pod_spec_ok,), doc="The desired state of a pod.")

# ---- the pod status ------------------------------------------------------------------

_CONTAINER_STATE = s.Obj({
    "waiting": s.Obj({"reason": s.string("Why it is not running, e.g. ImagePullBackOff."),
                      "message": s.string("Details.")}, doc="Not yet running."),
    "running": s.Obj({"startedAt": s.string("When it started, RFC 3339.")},
                     doc="Running."),
    "terminated": s.Obj({
        "exitCode": s.integer("Exit code of the last run."),
        "signal": s.integer("Signal that killed it."),
        "reason": s.string("Completed, Error or OOMKilled."),
        "message": s.string("Details, e.g. the termination message."),
        "startedAt": s.string("When it started."),
        "finishedAt": s.string("When it ended."),
        "containerID": s.string("The runtime's ID of the container."),
    }, required=("exitCode",), doc="Ended."),
}, checks=(s.at_most_one_of("waiting", "running", "terminated"),),
    doc="One of waiting, running, terminated.")

CONTAINER_STATUS = s.Obj({
    "name": s.string("Name of the container."),
    "state": _CONTAINER_STATE,
    "lastState": _CONTAINER_STATE,
    "ready": s.boolean("The readiness probe passes."),
    "started": s.boolean("The startup probe has passed."),
    "restartCount": s.integer("Times the container has been restarted.", minimum=0),
    "image": s.string("The image it runs."),
    "imageID": s.string("The image's ID (digest)."),
    "containerID": s.string("<runtime>://<id>."),
}, required=("name",), doc="The observed state of one container.")

POD_STATUS = s.Obj({
    "phase": s.string("Pending, Running, Succeeded, Failed or Unknown.",
                      enum=("Pending", "Running", "Succeeded", "Failed", "Unknown")),
    "conditions": s.List(condition(with_probe_time=True),
                         doc="PodScheduled, Initialized, ContainersReady, Ready."),
    "message": s.string("Why the pod is in this state."),
    "reason": s.string("One word: why, e.g. Evicted."),
    "hostIP": s.string("IP of the node the pod runs on."),
    "hostIPs": s.List(s.Obj({"ip": s.string()}), doc="IPs of the node."),
    "podIP": s.string("The pod's IP."),
    "podIPs": s.List(s.Obj({"ip": s.string("An IP of the pod.")}), doc="The pod's IPs."),
    "startTime": s.string("When the agent accepted the pod, RFC 3339."),
    "qosClass": s.string("Guaranteed, Burstable or BestEffort.",
                         enum=("Guaranteed", "Burstable", "BestEffort")),
    "nominatedNodeName": s.string("Node the pod will go to after preemption."),
    "initContainerStatuses": s.List(CONTAINER_STATUS, doc="One per init container."),
    "containerStatuses": s.List(CONTAINER_STATUS, doc="One per container."),
}, doc="The observed state of the pod.")


def pod_template(doc: str = "The pod each replica is made from.") -> s.Obj:
    return s.Obj({
        "metadata": meta.object_meta(),
        "spec": POD_SPEC,
    }, doc=doc)
