"""The resources the server serves: one row per kind, derived from api.kinds.

    RESOURCES["deployments"] -> Resource(kind "Deployment", apps/v1, namespaced,
                                         short names ("deploy",), subresources, ...)

`resolve("deploy")` accepts what kubectl accepts: plural, singular, kind and short name,
case-insensitively. Discovery hands this table to clients.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from api import kinds, names


@dataclass(frozen=True)
class Resource:
    name: str  # plural, the etcd key segment: "deployments"
    kind: str
    api_version: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    status: bool = False  # has a status subresource (main-resource writes keep status)
    scale: bool = False  # has a scale subresource (spec.replicas)
    # field selectors beyond metadata.name/metadata.namespace, as Kubernetes allows them
    fields: frozenset[str] = field(default_factory=frozenset)

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def allowed_fields(self) -> frozenset[str]:
        base = {"metadata.name"} | ({"metadata.namespace"} if self.namespaced else set())
        return frozenset(base) | self.fields


# What Kubernetes gives each kind beyond its schema: subresources and field selectors (its
# short names are api/names.py's, which clusterctl reads too).
_EXTRAS: Mapping[str, dict[str, object]] = {
    "namespaces": {"status": True, "fields": frozenset({"status.phase"})},
    "secrets": {"fields": frozenset({"type"})},
    "pods": {"status": True,
             "fields": frozenset({"spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
                                  "spec.serviceAccountName", "status.phase", "status.podIP",
                                  "status.nominatedNodeName"})},
    "services": {"status": True},
    "nodes": {"status": True, "fields": frozenset({"spec.unschedulable"})},
    "events": {"fields": frozenset({"involvedObject.kind", "involvedObject.name",
                                    "involvedObject.namespace", "involvedObject.uid",
                                    "reason", "type", "source"})},
    "deployments": {"status": True, "scale": True},
    "replicasets": {"status": True, "scale": True},
    "daemonsets": {"status": True},
    "jobs": {"status": True},
    "cronjobs": {"status": True},
}


def _build() -> dict[str, Resource]:
    out = {}
    for k in kinds.KINDS.values():
        extra = dict(_EXTRAS.get(k.resource, {}))
        out[k.resource] = Resource(name=k.resource, kind=k.kind, api_version=k.api_version,
                                   namespaced=k.namespaced,
                                   short_names=names.short_names(k.resource),
                                   **extra)  # type: ignore[arg-type]
    return out


RESOURCES: dict[str, Resource] = _build()
BY_KIND: dict[tuple[str, str], Resource] = {(r.api_version, r.kind): r
                                             for r in RESOURCES.values()}


def resolve(name: str) -> Resource | None:
    """A resource by plural, singular, kind or short name (any case), like kubectl."""
    n = name.lower()
    if "." in n:  # "deployments.apps"
        n = n.split(".", 1)[0]
    for r in RESOURCES.values():
        if n in (r.name, r.singular, *r.short_names):
            return r
    return None


def for_object(api_version: str, kind: str) -> Resource | None:
    return BY_KIND.get((api_version, kind))
