"""The local cluster's entry in the user's client config, as kubectl (and kind) do it:
a cluster, a user and a context named after the cluster, merged by name into the
clusters/users/contexts lists of the config; `up` makes it the current context, `down`
takes the three entries out again (and the current context, if it was ours)."""

from __future__ import annotations

import copy
from typing import Any

KINDS = ("clusters", "users", "contexts")


def entries(admin: dict[str, Any], name: str) -> dict[str, Any]:
    """ADMIN (the controlplane's admin.conf) renamed: cluster NAME, user NAME-admin,
    context NAME, which is also the current context."""
    cluster = dict(admin["clusters"][0]["cluster"])
    user = dict(admin["users"][0]["user"])
    ctx = dict(admin["contexts"][0]["context"]) if admin.get("contexts") else {}
    return {"apiVersion": "v1", "kind": "Config", "current-context": name,
            "clusters": [{"name": name, "cluster": cluster}],
            "users": [{"name": f"{name}-admin", "user": user}],
            "contexts": [{"name": name, "context": {
                "cluster": name, "user": f"{name}-admin",
                "namespace": ctx.get("namespace", "default")}}]}


def _names(doc: dict[str, Any], kind: str) -> set[str]:
    return {str(e.get("name")) for e in doc.get(kind) or [] if isinstance(e, dict)}


def merge(config: dict[str, Any] | None, ours: dict[str, Any]) -> dict[str, Any]:
    """CONFIG with OURS' entries added, replacing those of the same name; OURS' context
    becomes current. CONFIG is not changed."""
    out: dict[str, Any] = copy.deepcopy(config) if config else {"apiVersion": "v1",
                                                                  "kind": "Config"}
    for kind in KINDS:
        mine = _names(ours, kind)
        kept = [e for e in out.get(kind) or [] if not (isinstance(e, dict)
                                                       and e.get("name") in mine)]
        out[kind] = kept + copy.deepcopy(ours.get(kind) or [])
    out["current-context"] = ours["current-context"]
    return out


def unmerge(config: dict[str, Any], name: str) -> dict[str, Any]:
    """CONFIG without the entries `entries(_, NAME)` made."""
    out = copy.deepcopy(config)
    theirs = {"clusters": name, "users": f"{name}-admin", "contexts": name}
    for kind, entry in theirs.items():
        if kind in out:
            out[kind] = [e for e in out[kind] or []
                         if not (isinstance(e, dict) and e.get("name") == entry)]
    if out.get("current-context") == name:
        out["current-context"] = ""
    return out
