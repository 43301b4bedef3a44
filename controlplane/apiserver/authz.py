"""Authorization: may this user do this verb on this resource?

::

    authorize(Attributes) ──► roles bound to the user's groups (ROLE_BINDINGS)
                                 │ for each Rule: verb matches? resource[/subresource] matches?
                                 │   └── its condition (node restriction) holds?
                                 ▼
                              Decision(allowed, reason)

Roles are tables of data, as Kubernetes' default cluster roles are:

    ADMIN  (system:masters)  every verb on every resource and subresource
    VIEW   (corral:view)     get/list/watch everything but secrets; pods/log and
                             nodes/stats (logs, top), not pods/exec (create: admin only)
    NODE   (system:nodes)    Kubernetes' node authorizer + NodeRestriction: a node reads
                             what it needs, and writes only its own Node, its own Lease,
                             and the pods bound to it

A rule's condition is a small named function returning None when it holds or the reason
it does not; the first such reason is appended to the denial, so a node sees
``...: pod "web-1" is bound to node "n2"`` rather than a bare "forbidden".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from controlplane.apiserver.authn import AUTHENTICATED_GROUP, User

NODES_GROUP = "system:nodes"
NODE_USER_PREFIX = "system:node:"
NODE_LEASE_NAMESPACE = "corral-node-lease"

READ = frozenset({"get", "list", "watch"})
ALL_VERBS = frozenset({"get", "list", "watch", "create", "update", "patch", "delete",
                       "deletecollection"})

ReferencedByNode = Callable[[str, str, str, str], bool]


@dataclass(frozen=True)
class Attributes:
    user: User
    verb: str
    resource: str
    namespace: str = ""
    name: str = ""
    subresource: str = ""
    obj: Mapping[str, Any] | None = None
    field_selector: str = ""

    @property
    def target(self) -> str:
        """``resource`` or ``resource/subresource``, as rules name them."""
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str


@dataclass(frozen=True)
class Context:
    """What a condition may consult beyond the request itself."""

    node: str  # the node name of a node user, else ""
    referenced_by_node: ReferencedByNode | None


Condition = Callable[[Attributes, Context], str | None]


@dataclass(frozen=True)
class Rule:
    """VERBS on RESOURCES (``pods``, ``pods/status``; ``*`` any resource, ``*/x`` any
    resource's subresource x, ``*/*`` any subresource), minus EXCEPT, when WHEN holds."""

    verbs: frozenset[str]
    resources: frozenset[str]
    except_resources: frozenset[str] = frozenset()
    when: Condition | None = None

    def matches(self, attrs: Attributes) -> bool:
        if "*" not in self.verbs and attrs.verb not in self.verbs:
            return False
        return (_matches(self.resources, attrs.resource, attrs.subresource)
                and not _matches(self.except_resources, attrs.resource, attrs.subresource))


def _matches(patterns: frozenset[str], resource: str, subresource: str) -> bool:
    if not subresource:
        return resource in patterns or "*" in patterns
    return bool({f"{resource}/{subresource}", f"{resource}/*", f"*/{subresource}", "*/*"}
                & patterns)


@dataclass(frozen=True)
class Role:
    name: str
    rules: tuple[Rule, ...]


# --- conditions of the node role -------------------------------------------------------------


def _object_name(attrs: Attributes) -> str:
    if attrs.name:
        return attrs.name
    meta = (attrs.obj or {}).get("metadata")
    return str(meta.get("name") or "") if isinstance(meta, Mapping) else ""


def _bound_node(obj: Mapping[str, Any] | None) -> str:
    spec = (obj or {}).get("spec")
    return str(spec.get("nodeName") or "") if isinstance(spec, Mapping) else ""


def pod_bound_to_node(attrs: Attributes, ctx: Context) -> str | None:
    """The pod (the stored object) has spec.nodeName equal to the node's name."""
    pod = f'pod "{_object_name(attrs)}"'
    if attrs.obj is None:
        return f"{pod} is not known to be bound to node \"{ctx.node}\""
    bound = _bound_node(attrs.obj)
    if not bound:
        return f"{pod} is not bound to a node"
    if bound != ctx.node:
        return f'{pod} is bound to node "{bound}"'
    return None


def selects_own_pods(attrs: Attributes, ctx: Context) -> str | None:
    """A list/watch restricted by the field selector spec.nodeName=<node>."""
    for requirement in attrs.field_selector.split(","):
        field, op, value = requirement.partition("=")
        value = value[1:] if value.startswith("=") else value  # "==" means "="
        if op and field.strip() == "spec.nodeName" and value.strip() == ctx.node:
            return None  # "spec.nodeName!=x" leaves "spec.nodeName!" as the field
    return f'can only list and watch pods with field selector "spec.nodeName={ctx.node}"'


def own_node(attrs: Attributes, ctx: Context) -> str | None:
    """The Node is the node's own, by the name in the request and in the object."""
    meta = (attrs.obj or {}).get("metadata")
    obj_name = str(meta.get("name") or "") if isinstance(meta, Mapping) else ""
    names = {attrs.name, obj_name} - {""}
    if names == {ctx.node}:
        return None
    other = ", ".join(f'"{n}"' for n in sorted(names - {ctx.node})) or "an unnamed node"
    return f'can only modify its own node "{ctx.node}", not {other}'


def own_lease(attrs: Attributes, ctx: Context) -> str | None:
    """The Lease is the node's heartbeat: corral-node-lease/<node>."""
    name = _object_name(attrs)
    if attrs.namespace == NODE_LEASE_NAMESPACE and name == ctx.node:
        return None
    return (f'can only use its own lease "{NODE_LEASE_NAMESPACE}/{ctx.node}", '
            f'not "{attrs.namespace}/{name}"')


def used_by_pod_on_node(attrs: Attributes, ctx: Context) -> str | None:
    """A configmap, secret or claim that a pod bound to the node uses."""
    what = f'{attrs.resource} "{attrs.namespace}/{attrs.name}"'
    if ctx.referenced_by_node is None:
        return f"no pod-reference check is configured to allow {what}"
    if not attrs.name:
        return f"can only get a named object of {attrs.resource}"
    try:
        used = ctx.referenced_by_node(ctx.node, attrs.resource, attrs.namespace, attrs.name)
    except Exception as e:  # fail closed
        return f"could not check which pods use {what}: {e}"
    return None if used else f'no pod bound to node "{ctx.node}" uses {what}'


# --- the roles -------------------------------------------------------------------------------


def _r(verbs: Iterable[str], resources: Iterable[str], *, except_: Iterable[str] = (),
       when: Condition | None = None) -> Rule:
    return Rule(frozenset(verbs), frozenset(resources), frozenset(except_), when)


ADMIN = Role("admin", (
    _r({"*"}, {"*", "*/*"}),
))

VIEW = Role("view", (
    _r(READ, {"*", "*/status", "*/scale", "pods/log", "nodes/stats"},
       except_={"secrets", "secrets/*"}),
))

NODE = Role("node", (
    _r(READ, {"nodes", "nodes/status", "services", "endpoints", "namespaces"}),
    _r({"list", "watch"}, {"pods"}, when=selects_own_pods),
    _r({"get"}, {"pods", "pods/status"}, when=pod_bound_to_node),
    _r({"create", "update", "patch"}, {"nodes", "nodes/status"}, when=own_node),
    _r({"create", "update", "get", "delete"}, {"leases"}, when=own_lease),
    _r({"update", "patch"}, {"pods/status"}, when=pod_bound_to_node),
    _r({"delete"}, {"pods"}, when=pod_bound_to_node),
    _r({"create", "patch"}, {"events"}),
    _r({"get"}, {"configmaps", "secrets", "persistentvolumeclaims"}, when=used_by_pod_on_node),
))

ROLE_BINDINGS: Mapping[str, Role] = {
    "system:masters": ADMIN,
    "corral:view": VIEW,
    NODES_GROUP: NODE,
}


# --- the authorizer --------------------------------------------------------------------------


def node_name_of(user: User) -> str:
    """The node a user speaks for: ``system:node:<name>`` in group system:nodes, else ""."""
    if NODES_GROUP in user.groups and user.name.startswith(NODE_USER_PREFIX):
        return user.name[len(NODE_USER_PREFIX):]
    return ""


def _denial(attrs: Attributes, detail: str | None) -> str:
    user = f'user "{attrs.user.name}"'
    groups = [g for g in attrs.user.groups if g != AUTHENTICATED_GROUP]
    if detail is None and groups:
        user += " (groups " + ", ".join(f'"{g}"' for g in groups) + ")"
    scope = f'in namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
    message = f'{user} cannot {attrs.verb} resource "{attrs.target}" {scope}'
    return f"{message}: {detail}" if detail else message


class Authorizer:
    """Decides from ROLE_BINDINGS; REFERENCED_BY_NODE answers (node, resource, namespace,
    name) -> whether a pod bound to that node uses the object (Kubernetes' node graph)."""

    def __init__(self, *, referenced_by_node: ReferencedByNode | None = None) -> None:
        self._referenced_by_node = referenced_by_node

    def authorize(self, attrs: Attributes) -> Decision:
        node = node_name_of(attrs.user)
        ctx = Context(node=node, referenced_by_node=self._referenced_by_node)
        detail: str | None = None
        for group in attrs.user.groups:
            role = ROLE_BINDINGS.get(group)
            if role is None:
                continue
            if role is NODE and not node:
                detail = detail or (f'group "{NODES_GROUP}" requires the user name '
                                    f'"{NODE_USER_PREFIX}<node name>"')
                continue
            for rule in role.rules:
                if not rule.matches(attrs):
                    continue
                failed = rule.when(attrs, ctx) if rule.when is not None else None
                if failed is None:
                    return Decision(True, f'allowed by role "{role.name}" bound to group '
                                          f'"{group}"')
                detail = detail or failed
        return Decision(False, _denial(attrs, detail))
