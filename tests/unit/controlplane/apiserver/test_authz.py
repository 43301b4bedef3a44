"""Authorization: one table of requests per role, each allowed or denied with its reason."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.apiserver.authn import User
from controlplane.apiserver.authz import ALL_VERBS, ROLE_BINDINGS, Attributes, Authorizer

AUTH = "system:authenticated"
ROOT = User("root", ("system:masters", AUTH))
ALICE = User("alice", ("corral:view", AUTH))
N1 = User("system:node:n1", ("system:nodes", AUTH))
BOB = User("bob", ("dev", AUTH))
NOT_A_NODE = User("system:node:n1", (AUTH,))  # the name alone is not a node identity
BAD_NODE_NAME = User("kubelet", ("system:nodes", AUTH))

USES = {("n1", "secrets", "default", "db"), ("n1", "configmaps", "default", "cfg"),
        ("n1", "persistentvolumeclaims", "default", "data")}


def pod(name: str, node: str = "") -> dict[str, Any]:
    spec = {"nodeName": node} if node else {}
    return {"metadata": {"name": name, "namespace": "default"}, "spec": spec}


def node_obj(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}}


def req(user: User, verb: str, resource: str, namespace: str = "", name: str = "",
        sub: str = "", obj: dict[str, Any] | None = None, fs: str = "") -> Attributes:
    return Attributes(user=user, verb=verb, resource=resource, namespace=namespace,
                      name=name, subresource=sub, obj=obj, field_selector=fs)


def allowed(role: str, group: str) -> str:
    return f'allowed by role "{role}" bound to group "{group}"'


def check(attrs: Attributes, want_allowed: bool, want_reason: str) -> None:
    authorizer = Authorizer(referenced_by_node=lambda *key: key in USES)
    decision = authorizer.authorize(attrs)
    assert (decision.allowed, decision.reason) == (want_allowed, want_reason)


ADMIN_OK = allowed("admin", "system:masters")


@pytest.mark.parametrize(("attrs", "ok", "reason"), [
    pytest.param(req(ROOT, "delete", "secrets", "default", "db"), True, ADMIN_OK,
                 id="delete-secret"),
    pytest.param(req(ROOT, "deletecollection", "pods", "default"), True, ADMIN_OK,
                 id="deletecollection"),
    pytest.param(req(ROOT, "create", "pods", "default", "web", sub="exec"), True, ADMIN_OK,
                 id="exec"),
    pytest.param(req(ROOT, "update", "nodes", name="n7", sub="status"), True, ADMIN_OK,
                 id="any-node-status"),
    pytest.param(req(ROOT, "patch", "widgets", "x", "w"), True, ADMIN_OK,
                 id="unknown-resource"),
])
def test_admin(attrs: Attributes, ok: bool, reason: str) -> None:
    check(attrs, ok, reason)


VIEW_OK = allowed("view", "corral:view")


def view_denied(verb: str, target: str, scope: str = 'in namespace "default"') -> str:
    return f'user "alice" (groups "corral:view") cannot {verb} resource "{target}" {scope}'


@pytest.mark.parametrize(("attrs", "ok", "reason"), [
    pytest.param(req(ALICE, "get", "pods", "default", "web"), True, VIEW_OK, id="get-pod"),
    pytest.param(req(ALICE, "list", "deployments", "default"), True, VIEW_OK,
                 id="list-deployments"),
    pytest.param(req(ALICE, "watch", "nodes"), True, VIEW_OK, id="watch-nodes"),
    pytest.param(req(ALICE, "get", "configmaps", "default", "cfg"), True, VIEW_OK,
                 id="get-configmap"),
    pytest.param(req(ALICE, "get", "pods", "default", "web", sub="log"), True, VIEW_OK,
                 id="pod-log"),
    pytest.param(req(ALICE, "get", "deployments", "default", "web", sub="status"), True,
                 VIEW_OK, id="status"),
    pytest.param(req(ALICE, "get", "deployments", "default", "web", sub="scale"), True,
                 VIEW_OK, id="scale"),
    pytest.param(req(ALICE, "delete", "pods", "default", "web"), False,
                 view_denied("delete", "pods"), id="delete"),
    pytest.param(req(ALICE, "create", "deployments", "default"), False,
                 view_denied("create", "deployments"), id="create"),
    pytest.param(req(ALICE, "update", "deployments", "default", "web", sub="scale"), False,
                 view_denied("update", "deployments/scale"), id="update-scale"),
    pytest.param(req(ALICE, "get", "secrets", "default", "db"), False,
                 view_denied("get", "secrets"), id="get-secret"),
    pytest.param(req(ALICE, "list", "secrets"), False,
                 view_denied("list", "secrets", "at the cluster scope"), id="list-secrets"),
    pytest.param(req(ALICE, "get", "pods", "default", "web", sub="exec"), False,
                 view_denied("get", "pods/exec"), id="exec-get"),
    pytest.param(req(ALICE, "create", "pods", "default", "web", sub="exec"), False,
                 view_denied("create", "pods/exec"), id="exec-create"),
    pytest.param(req(ALICE, "get", "nodes", name="n1", sub="stats"), True, VIEW_OK,
                 id="top"),
    pytest.param(req(ALICE, "update", "nodes", name="n1", sub="stats"), False,
                 view_denied("update", "nodes/stats", "at the cluster scope"),
                 id="stats-update"),
])
def test_view(attrs: Attributes, ok: bool, reason: str) -> None:
    check(attrs, ok, reason)


NODE_OK = allowed("node", "system:nodes")
NODE = 'user "system:node:n1"'
NODE_WITH_GROUP = 'user "system:node:n1" (groups "system:nodes")'


@pytest.mark.parametrize(("attrs", "ok", "reason"), [
    # reads of cluster-wide objects
    pytest.param(req(N1, "get", "nodes", name="n2"), True, NODE_OK, id="get-other-node"),
    pytest.param(req(N1, "watch", "services"), True, NODE_OK, id="watch-services"),
    pytest.param(req(N1, "list", "endpoints", "default"), True, NODE_OK, id="list-endpoints"),
    pytest.param(req(N1, "get", "namespaces", name="default"), True, NODE_OK, id="get-ns"),
    # its pods, by field selector and by binding
    pytest.param(req(N1, "list", "pods", fs="spec.nodeName=n1"), True, NODE_OK,
                 id="list-own-pods"),
    pytest.param(req(N1, "watch", "pods", fs="status.phase=Running,spec.nodeName==n1"),
                 True, NODE_OK, id="watch-own-pods-with-more-selectors"),
    pytest.param(req(N1, "list", "pods"), False,
                 f'{NODE} cannot list resource "pods" at the cluster scope: can only list '
                 'and watch pods with field selector "spec.nodeName=n1"', id="list-all-pods"),
    pytest.param(req(N1, "watch", "pods", "default", fs="spec.nodeName=n2"), False,
                 f'{NODE} cannot watch resource "pods" in namespace "default": can only list '
                 'and watch pods with field selector "spec.nodeName=n1"', id="watch-n2-pods"),
    pytest.param(req(N1, "list", "pods", fs="spec.nodeName!=n1"), False,
                 f'{NODE} cannot list resource "pods" at the cluster scope: can only list '
                 'and watch pods with field selector "spec.nodeName=n1"', id="not-equal"),
    pytest.param(req(N1, "get", "pods", "default", "web-1", obj=pod("web-1", "n1")), True,
                 NODE_OK, id="get-own-pod"),
    pytest.param(req(N1, "get", "pods", "default", "web-1", obj=pod("web-1", "n2")), False,
                 f'{NODE} cannot get resource "pods" in namespace "default": pod "web-1" is '
                 'bound to node "n2"', id="get-other-pod"),
    pytest.param(req(N1, "get", "pods", "default", "web-1", obj=pod("web-1")), False,
                 f'{NODE} cannot get resource "pods" in namespace "default": pod "web-1" is '
                 'not bound to a node', id="get-unbound-pod"),
    pytest.param(req(N1, "get", "pods", "default", "web-1"), False,
                 f'{NODE} cannot get resource "pods" in namespace "default": pod "web-1" is '
                 'not known to be bound to node "n1"', id="get-pod-without-object"),
    pytest.param(req(N1, "update", "pods", "default", "web-1", "status", pod("web-1", "n1")),
                 True, NODE_OK, id="update-own-pod-status"),
    pytest.param(req(N1, "patch", "pods", "default", "web-1", "status", pod("web-1", "n1")),
                 True, NODE_OK, id="patch-own-pod-status"),
    pytest.param(req(N1, "update", "pods", "default", "web-1", "status", pod("web-1", "n2")),
                 False, f'{NODE} cannot update resource "pods/status" in namespace "default":'
                 ' pod "web-1" is bound to node "n2"', id="update-other-pod-status"),
    pytest.param(req(N1, "delete", "pods", "default", "web-1", obj=pod("web-1", "n1")), True,
                 NODE_OK, id="delete-own-pod"),
    pytest.param(req(N1, "delete", "pods", "default", "web-1", obj=pod("web-1", "n2")),
                 False, f'{NODE} cannot delete resource "pods" in namespace "default": '
                 'pod "web-1" is bound to node "n2"', id="delete-other-pod"),
    pytest.param(req(N1, "update", "pods", "default", "web-1", obj=pod("web-1", "n1")),
                 False, f'{NODE_WITH_GROUP} cannot update resource "pods" in namespace '
                 '"default"', id="update-pod-spec"),
    pytest.param(req(N1, "create", "pods", "default", obj=pod("web-9", "n1")), False,
                 f'{NODE_WITH_GROUP} cannot create resource "pods" in namespace "default"',
                 id="create-pod"),
    # its Node object
    pytest.param(req(N1, "create", "nodes", obj=node_obj("n1")), True, NODE_OK,
                 id="register-self"),
    pytest.param(req(N1, "update", "nodes", name="n1", obj=node_obj("n1")), True, NODE_OK,
                 id="update-self"),
    pytest.param(req(N1, "patch", "nodes", name="n1", sub="status"), True, NODE_OK,
                 id="patch-own-status"),
    pytest.param(req(N1, "create", "nodes", obj=node_obj("n2")), False,
                 f'{NODE} cannot create resource "nodes" at the cluster scope: can only '
                 'modify its own node "n1", not "n2"', id="register-other"),
    pytest.param(req(N1, "update", "nodes", name="n2", sub="status"), False,
                 f'{NODE} cannot update resource "nodes/status" at the cluster scope: can '
                 'only modify its own node "n1", not "n2"', id="update-other-status"),
    pytest.param(req(N1, "update", "nodes", name="n1", obj=node_obj("n2")), False,
                 f'{NODE} cannot update resource "nodes" at the cluster scope: can only '
                 'modify its own node "n1", not "n2"', id="rename-self-to-other"),
    pytest.param(req(N1, "delete", "nodes", name="n1"), False,
                 f'{NODE_WITH_GROUP} cannot delete resource "nodes" at the cluster scope',
                 id="delete-self"),
    # its Lease
    pytest.param(req(N1, "create", "leases", "corral-node-lease", obj=node_obj("n1")), True,
                 NODE_OK, id="create-own-lease"),
    pytest.param(req(N1, "update", "leases", "corral-node-lease", "n1"), True, NODE_OK,
                 id="renew-own-lease"),
    pytest.param(req(N1, "get", "leases", "corral-node-lease", "n1"), True, NODE_OK,
                 id="get-own-lease"),
    pytest.param(req(N1, "delete", "leases", "corral-node-lease", "n1"), True, NODE_OK,
                 id="delete-own-lease"),
    pytest.param(req(N1, "update", "leases", "corral-node-lease", "n2"), False,
                 f'{NODE} cannot update resource "leases" in namespace "corral-node-lease": '
                 'can only use its own lease "corral-node-lease/n1", not '
                 '"corral-node-lease/n2"', id="renew-other-lease"),
    pytest.param(req(N1, "update", "leases", "kube-system", "n1"), False,
                 f'{NODE} cannot update resource "leases" in namespace "kube-system": can '
                 'only use its own lease "corral-node-lease/n1", not "kube-system/n1"',
                 id="lease-elsewhere"),
    pytest.param(req(N1, "list", "leases", "corral-node-lease"), False,
                 f'{NODE_WITH_GROUP} cannot list resource "leases" in namespace '
                 '"corral-node-lease"', id="list-leases"),
    # events
    pytest.param(req(N1, "create", "events", "default"), True, NODE_OK, id="create-event"),
    pytest.param(req(N1, "patch", "events", "default", "e1"), True, NODE_OK,
                 id="patch-event"),
    pytest.param(req(N1, "delete", "events", "default", "e1"), False,
                 f'{NODE_WITH_GROUP} cannot delete resource "events" in namespace "default"',
                 id="delete-event"),
    # what its pods use
    pytest.param(req(N1, "get", "secrets", "default", "db"), True, NODE_OK,
                 id="get-used-secret"),
    pytest.param(req(N1, "get", "configmaps", "default", "cfg"), True, NODE_OK,
                 id="get-used-configmap"),
    pytest.param(req(N1, "get", "persistentvolumeclaims", "default", "data"), True, NODE_OK,
                 id="get-used-claim"),
    pytest.param(req(N1, "get", "secrets", "default", "other"), False,
                 f'{NODE} cannot get resource "secrets" in namespace "default": no pod bound '
                 'to node "n1" uses secrets "default/other"', id="get-unused-secret"),
    pytest.param(req(N1, "list", "secrets", "default"), False,
                 f'{NODE_WITH_GROUP} cannot list resource "secrets" in namespace "default"',
                 id="list-secrets"),
    pytest.param(req(N1, "update", "configmaps", "default", "cfg"), False,
                 f'{NODE_WITH_GROUP} cannot update resource "configmaps" in namespace '
                 '"default"', id="update-used-configmap"),
    pytest.param(req(N1, "get", "deployments", "default", "web"), False,
                 f'{NODE_WITH_GROUP} cannot get resource "deployments" in namespace "default"',
                 id="get-deployment"),
    # logs, exec and top go to nodes through the controlplane: not for nodes themselves
    pytest.param(req(N1, "get", "pods", "default", "web", sub="log", obj=pod("web", "n1")),
                 False, f'{NODE_WITH_GROUP} cannot get resource "pods/log" in namespace '
                 '"default"', id="own-pod-logs"),
    pytest.param(req(N1, "create", "pods", "default", "web", sub="exec",
                     obj=pod("web", "n1")), False,
                 f'{NODE_WITH_GROUP} cannot create resource "pods/exec" in namespace '
                 '"default"', id="own-pod-exec"),
    pytest.param(req(N1, "get", "nodes", name="n1", sub="stats"), False,
                 f'{NODE_WITH_GROUP} cannot get resource "nodes/stats" at the cluster scope',
                 id="own-node-stats"),
])
def test_node(attrs: Attributes, ok: bool, reason: str) -> None:
    check(attrs, ok, reason)


@pytest.mark.parametrize(("attrs", "reason"), [
    pytest.param(req(BOB, "get", "pods", "default", "web"),
                 'user "bob" (groups "dev") cannot get resource "pods" in namespace "default"',
                 id="unbound-group"),
    pytest.param(req(User("anon", (AUTH,)), "list", "nodes"),
                 'user "anon" cannot list resource "nodes" at the cluster scope',
                 id="authenticated-only"),
    pytest.param(req(NOT_A_NODE, "get", "nodes", name="n1"),
                 'user "system:node:n1" cannot get resource "nodes" at the cluster scope',
                 id="node-name-without-group"),
    pytest.param(req(BAD_NODE_NAME, "get", "nodes", name="n1"),
                 'user "kubelet" cannot get resource "nodes" at the cluster scope: group '
                 '"system:nodes" requires the user name "system:node:<node name>"',
                 id="node-group-without-name"),
])
def test_everyone_else_is_denied(attrs: Attributes, reason: str) -> None:
    check(attrs, False, reason)


def test_any_role_of_the_user_may_allow() -> None:
    both = User("system:node:n1", ("system:nodes", "system:masters", AUTH))
    check(req(both, "delete", "nodes", name="n2"), True, ADMIN_OK)


def test_secret_access_fails_closed_without_or_with_a_broken_reference_check() -> None:
    attrs = req(N1, "get", "secrets", "default", "db")
    denied = Authorizer().authorize(attrs)
    assert not denied.allowed
    assert denied.reason.endswith(
        'no pod-reference check is configured to allow secrets "default/db"')

    def broken(node: str, resource: str, namespace: str, name: str) -> bool:
        raise RuntimeError("graph not synced")

    denied = Authorizer(referenced_by_node=broken).authorize(attrs)
    assert not denied.allowed
    assert denied.reason.endswith('could not check which pods use secrets "default/db": '
                                  "graph not synced")


def test_the_reference_check_is_asked_about_the_exact_object() -> None:
    asked: list[tuple[str, str, str, str]] = []

    def graph(node: str, resource: str, namespace: str, name: str) -> bool:
        asked.append((node, resource, namespace, name))
        return True

    assert Authorizer(referenced_by_node=graph).authorize(
        req(N1, "get", "configmaps", "prod", "cfg")).allowed
    assert asked == [("n1", "configmaps", "prod", "cfg")]


@pytest.mark.parametrize("verb", sorted(ALL_VERBS))
def test_every_verb_is_known_to_the_admin_and_denied_to_nobody_roles(verb: str) -> None:
    assert Authorizer().authorize(req(ROOT, verb, "pods", "default")).allowed
    assert not Authorizer().authorize(req(BOB, verb, "pods", "default")).allowed


def test_roles_are_bound_to_kubernetes_groups() -> None:
    assert {g: r.name for g, r in ROLE_BINDINGS.items()} == {
        "system:masters": "admin", "corral:view": "view", "system:nodes": "node"}
