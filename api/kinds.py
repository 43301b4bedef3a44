"""The kinds the API serves, each with its schema, and object-level validation.

    KINDS[(apiVersion, kind)] -> Kind(resource, namespaced, schema)
    validate(obj)             Invalid listing every problem: `ConfigMap app: data: ...`
    defaults(obj)             a copy with every default applied (the admission step)

Field names, meanings and defaults follow Kubernetes `v1`, `apps/v1`, `batch/v1` for the
supported subset, so manifests written for Kubernetes apply unchanged.
"""

from __future__ import annotations

from typing import Any

from api import apps, batch, core, discovery, meta
from api import schema as s


class Invalid(ValueError):
    """An object failed validation; `errors` has every problem, each with its path."""

    def __init__(self, kind: str, name: str, errors: s.Errors) -> None:
        self.kind = kind
        self.name = name
        self.errors = errors
        who = f"{kind} {name}".strip() if kind else "object"
        super().__init__(f"{who}: " + "; ".join(str(e) for e in errors))


class Kind:
    def __init__(self, *, api_version: str, kind: str, resource: str, namespaced: bool,
                 fields: dict[str, s.Node], doc: str,
                 name_check: s.Check = meta.dns_subdomain) -> None:
        self.api_version = api_version
        self.kind = kind
        self.resource = resource
        self.namespaced = namespaced
        self.schema = s.Obj({
            "apiVersion": s.string("Versioned schema of this object."),
            "kind": s.string("The object's kind."),
            "metadata": meta.object_meta(name_check=name_check),
            **fields,
        }, required=("apiVersion", "kind", "metadata"), doc=doc)


def _kinds(*kinds: Kind) -> dict[tuple[str, str], Kind]:
    return {(k.api_version, k.kind): k for k in kinds}


KINDS = _kinds(
    Kind(api_version="v1", kind="Namespace", resource="namespaces", namespaced=False,
         name_check=meta.dns_label, doc="A scope for names; deleting it deletes what is in it.",
         fields={
             "spec": s.Obj({"finalizers": s.List(s.string())}),
             "status": s.Obj({"phase": s.string(enum=("Active", "Terminating"))}),
         }),
    Kind(api_version="v1", kind="ConfigMap", resource="configmaps", namespaced=True,
         doc="Non-secret configuration data for pods.",
         fields={
             "data": s.Map(s.string(), doc="UTF-8 values."),
             "binaryData": s.Map(s.string(), doc="Base64-encoded binary values."),
             "immutable": s.boolean("Data cannot change once set."),
         }),
    *(Kind(**d._asdict()) for d in (*core.KIND_DEFS, *apps.KIND_DEFS, *batch.KIND_DEFS)),
    *(Kind(**d._asdict()) for d in discovery.KIND_DEFS),
)


def lookup(api_version: str, kind: str) -> Kind | None:
    return KINDS.get((api_version, kind))


def defaults(obj: Any) -> Any:
    """A copy of OBJ with every Kubernetes default applied (field defaults, then the
    defaults that depend on other fields); OBJ itself is not changed. Unknown kinds and
    non-objects come back as they are: validate() reports them."""
    if not isinstance(obj, dict):
        return obj
    k = lookup(str(obj.get("apiVersion")), str(obj.get("kind")))
    return k.schema.with_defaults(obj) if k else obj


def validate(obj: Any) -> Kind:
    """The object's Kind, or Invalid naming the kind, the name and every bad field."""
    if not isinstance(obj, dict):
        raise Invalid("", "", [s.FieldError("", "an object must be a map")])
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    name = str((obj.get("metadata") or {}).get("name") or "") if isinstance(
        obj.get("metadata"), dict) else ""
    k = lookup(str(api_version), str(kind))
    if k is None:
        known = sorted({kk for _, kk in KINDS})
        raise Invalid(str(kind or ""), name, [s.FieldError(
            "kind", f"no kind {kind!r} in {api_version!r}; this server knows "
                    f"{', '.join(known)}")])
    errors: s.Errors = []
    k.schema.validate(obj, "", errors)
    if not errors:
        md = obj["metadata"]
        if not md.get("name") and not md.get("generateName"):
            errors.append(s.FieldError("metadata.name", "is required (or generateName)"))
        if k.namespaced is False and md.get("namespace"):
            errors.append(s.FieldError("metadata.namespace",
                                       f"{kind} is cluster-scoped; no namespace allowed"))
    if errors:
        raise Invalid(str(kind), name, errors)
    return k
