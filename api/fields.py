"""Schema pieces many kinds share: quantities, label selectors, conditions, ports."""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from api import meta
from api import schema as s
from api.quantity import non_negative_quantity, quantity
from api.selectors import SelectorError, from_label_selector


def quantity_field(doc: str = "", *, non_negative: bool = True) -> s.Scalar:
    """A resource.Quantity: a string like 500m or 1Gi, or a plain YAML number."""
    check = non_negative_quantity if non_negative else quantity
    return s.Scalar(str, int, float, type_name="a quantity", doc=doc, checks=(check,))


def resource_list(doc: str) -> s.Map:
    """A ResourceList: resource name (cpu, memory, pods, ...) to quantity."""
    return s.Map(quantity_field(), doc=doc)


def _selector_ok(value: Any, path: str, errors: s.Errors) -> None:
    try:
        from_label_selector(value, field=path)
    except SelectorError as e:
        errors.append(s.FieldError("", str(e)))


def label_selector(doc: str = "A label query over objects.") -> s.Obj:
    return s.Obj({
        "matchLabels": s.Map(s.string(), doc="Labels that must all be present with "
                             "these values."),
        "matchExpressions": s.List(s.Obj({
            "key": s.string("The label key the requirement applies to."),
            "operator": s.string("How the key relates to the values.",
                                 enum=("In", "NotIn", "Exists", "DoesNotExist")),
            "values": s.List(s.string(), doc="Values for In and NotIn; empty otherwise."),
        }, required=("key", "operator")), doc="Requirements that must all hold."),
    }, doc=doc, validators=(_selector_ok,))


def _iana_svc_name(value: str) -> str | None:
    if (len(value) > 15 or not re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", value)
            or "--" in value or not any(c.isalpha() for c in value)):
        return (f"{value!r} is not a valid port name (1-15 lowercase letters, digits "
                "and '-', with at least one letter)")
    return None


def port_name(value: Any) -> str | None:
    """An IANA service name: what a named port must be."""
    return _iana_svc_name(value)


def port_number(value: Any) -> str | None:
    if isinstance(value, int) and not 1 <= value <= 65535:
        return f"must be between 1 and 65535, got {value}"
    return None


def int_or_name_port(value: Any) -> str | None:
    """An int-or-string port: 1..65535 or the name of a container port."""
    return port_number(value) if isinstance(value, int) else _iana_svc_name(value)


def port_field(doc: str, *, minimum: int = 1) -> s.Scalar:
    return s.integer(doc, minimum=minimum, maximum=65535)


def int_or_percent(value: Any) -> str | None:
    """maxSurge / maxUnavailable: a non-negative integer or a percentage like 25%."""
    if isinstance(value, int):
        return f"must be >= 0, got {value}" if value < 0 else None
    if not re.fullmatch(r"\d+%", value):
        return f"must be an integer or a percentage like 25%, got {value!r}"
    return None


def condition(doc: str = "A condition of the object's current state.", *,
              with_update_time: bool = False, with_probe_time: bool = False,
              with_heartbeat: bool = False) -> s.Obj:
    fields: dict[str, s.Node] = {
        "type": s.string("Type of the condition, e.g. Ready or Available."),
        "status": s.string("True, False or Unknown.", enum=("True", "False", "Unknown")),
        "reason": s.string("One CamelCase word: why the condition last changed."),
        "message": s.string("Human-readable details of the last change."),
        "lastTransitionTime": s.string("When status last changed, RFC 3339."),
    }
    if with_update_time:
        fields["lastUpdateTime"] = s.string("When the condition was last updated.")
    if with_probe_time:
        fields["lastProbeTime"] = s.string("When the condition was last probed.")
    if with_heartbeat:
        fields["lastHeartbeatTime"] = s.string("When the condition was last reported.")
    return s.Obj(fields, required=("type", "status"), doc=doc)


OBJECT_REFERENCE = s.Obj({
    "apiVersion": s.string("API version of the referent."),
    "kind": s.string("Kind of the referent."),
    "namespace": s.string("Namespace of the referent."),
    "name": s.string("Name of the referent."),
    "uid": s.string("UID of the referent."),
    "resourceVersion": s.string("The referent's resourceVersion the reference was made at."),
    "fieldPath": s.string("A field within the referent, e.g. spec.containers{web}."),
}, doc="A reference to another object.")


def template_metadata() -> s.Obj:
    """The metadata of a pod template (labels and annotations matter)."""
    return meta.object_meta()


class KindDef(NamedTuple):
    """What kinds.py registers a kind from (kinds.Kind's arguments)."""

    api_version: str
    kind: str
    resource: str
    namespaced: bool
    doc: str
    fields: dict[str, s.Node]
    name_check: s.Check = meta.dns_subdomain
