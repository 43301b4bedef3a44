"""ObjectMeta, and the name rules Kubernetes applies to it."""

from __future__ import annotations

from typing import Any

from api import schema as s
from api.selectors import SelectorError, check_key, check_value

MAX_ANNOTATIONS_BYTES = 256 * 1024


def dns_subdomain(value: Any) -> str | None:
    """RFC 1123 subdomain: what most object names must be."""
    if not value or len(value) > 253:
        return f"must be 1-253 characters, got {len(value)}"
    for part in value.split("."):
        problem = _label_problem(part)
        if problem:
            return f"{value!r} is not a lowercase RFC 1123 subdomain ({problem})"
    return None


def dns_label(value: Any) -> str | None:
    """RFC 1123 label: namespace names and other single-word names."""
    problem = _label_problem(value)
    return f"{value!r} is not a lowercase RFC 1123 label ({problem})" if problem else None


def _label_problem(part: str) -> str | None:
    if not part or len(part) > 63:
        return "each part 1-63 characters"
    if not (part[0].isalnum() and part[-1].isalnum()):
        return "must start and end with a letter or digit"
    if not all(c.isascii() and (c.isdigit() or c.islower() or c == "-") for c in part):
        return "only lowercase letters, digits and '-'"
    return None


def _labels(value: Any) -> str | None:
    try:
        for k, v in value.items():
            check_key(k)
            check_value(v)
    except SelectorError as e:
        return str(e)
    return None


def _annotations(value: Any) -> str | None:
    try:
        for k in value:
            check_key(k)
    except SelectorError as e:
        return str(e).replace("label key", "annotation key")
    size = sum(len(k) + len(v) for k, v in value.items() if isinstance(v, str))
    if size > MAX_ANNOTATIONS_BYTES:
        return f"may not be more than {MAX_ANNOTATIONS_BYTES} bytes in total, got {size}"
    return None


def _finalizer(value: Any) -> str | None:
    try:
        check_key(value)
    except SelectorError as e:
        return str(e).replace("label key", "finalizer")
    return None


OWNER_REFERENCE = s.Obj({
    "apiVersion": s.string("API version of the owner."),
    "kind": s.string("Kind of the owner."),
    "name": s.string("Name of the owner."),
    "uid": s.string("UID of the owner."),
    "controller": s.boolean("The owner is the managing controller."),
    "blockOwnerDeletion": s.boolean("Foreground deletion of the owner waits for this."),
}, required=("apiVersion", "kind", "name", "uid"),
    doc="An object this one belongs to; the garbage collector deletes it with its owner.")


def object_meta(*, name_check: s.Check = dns_subdomain) -> s.Obj:
    """ObjectMeta; NAME_CHECK is the kind's rule for metadata.name."""
    return s.Obj({
        "name": s.string("Unique within a namespace (per kind).", checks=(name_check,)),
        "generateName": s.string("Prefix for a server-generated name when name is empty."),
        "namespace": s.string("The namespace the object lives in.", checks=(dns_label,)),
        "labels": s.Map(s.string(), checks=(_labels,),
                        doc="Key/value pairs that selectors match on."),
        "annotations": s.Map(s.string(), checks=(_annotations,),
                             doc="Key/value pairs for tools; not selectable."),
        "uid": s.string("Set by the server: unique in time and space."),
        "resourceVersion": s.string("Set by the server: the version for optimistic "
                                    "concurrency (etcd's revision)."),
        "generation": s.integer("Set by the server: bumped on every spec change.", minimum=0),
        "creationTimestamp": s.string("Set by the server, RFC 3339."),
        "deletionTimestamp": s.string("Set by the server when deletion was requested."),
        "deletionGracePeriodSeconds": s.integer(minimum=0),
        "finalizers": s.List(s.string(checks=(_finalizer,)),
                             doc="Must be empty before the object is removed."),
        "ownerReferences": s.List(OWNER_REFERENCE),
        "managedFields": s.List(s.Map(s.Node()), doc="Set by the server: field managers "
                                "of server-side apply."),
    }, doc="Standard object metadata.")
