"""Kubernetes' short names of the resources corral serves: one table, read by the API
server (discovery hands it to clients) and by clusterctl's offline resolver (explain and
completion, which must work without a server).

    short_names("deployments") -> ("deploy",)        a resource without one -> ()
"""

from __future__ import annotations

from collections.abc import Mapping

SHORT_NAMES: Mapping[str, tuple[str, ...]] = {
    "namespaces": ("ns",),
    "configmaps": ("cm",),
    "pods": ("po",),
    "services": ("svc",),
    "endpoints": ("ep",),
    "nodes": ("no",),
    "events": ("ev",),
    "deployments": ("deploy",),
    "replicasets": ("rs",),
    "daemonsets": ("ds",),
    "cronjobs": ("cj",),
}


def short_names(resource: str) -> tuple[str, ...]:
    """RESOURCE's short names (its plural, as in SHORT_NAMES)."""
    return SHORT_NAMES.get(resource, ())
