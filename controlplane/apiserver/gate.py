"""Who is calling, and may they: the API server's Gate over authn.py and authz.py.

    gRPC context ──► client certificate (verified by TLS against the cluster CA)
                     or `authorization: Bearer <token>` (the --token-file)
                 ──► User(name, groups) ──► Authorizer (roles admin, view, node)
                                               ▲
         for nodes: the stored pod (is it bound to me?) and the pods bound to the
         node (does one of them use this secret/configmap?) are looked up here; a
         node's update or patch of pods/status, and its delete of a pod, are not: the
         write reads the pod and calls the guard the gate returns on it (objects.py
         _write, deletion.delete), so each costs one read, and the compare-and-swap at
         that read means what was checked is what is replaced or deleted; a node must
         name the pod (an empty name would let the body decide)
"""

from __future__ import annotations

from typing import Any

from api import errors as e
from controlplane.apiserver import authn, authz
from controlplane.apiserver.objects import ObjectService
from controlplane.apiserver.resources import RESOURCES, Resource
from controlplane.apiserver.service import Allowed

NODE_CHECKED_VERBS = ("get", "update", "patch", "delete")
# checked on the write's own read: update and patch of pods/status, delete of a pod
DEFERRED = {("update", "status"), ("patch", "status"), ("delete", "")}


def pod_references(pod: dict[str, Any]) -> set[tuple[str, str]]:
    """(resource, name) of every configmap and secret a pod uses: volumes, env, envFrom,
    image pull secrets."""
    spec = pod.get("spec") or {}
    refs: set[tuple[str, str]] = set()
    for v in spec.get("volumes") or []:
        if (v.get("configMap") or {}).get("name"):
            refs.add(("configmaps", v["configMap"]["name"]))
        if (v.get("secret") or {}).get("secretName"):
            refs.add(("secrets", v["secret"]["secretName"]))
    for s in spec.get("imagePullSecrets") or []:
        if s.get("name"):
            refs.add(("secrets", s["name"]))
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for env in c.get("env") or []:
            src = env.get("valueFrom") or {}
            if (src.get("configMapKeyRef") or {}).get("name"):
                refs.add(("configmaps", src["configMapKeyRef"]["name"]))
            if (src.get("secretKeyRef") or {}).get("name"):
                refs.add(("secrets", src["secretKeyRef"]["name"]))
        for env_from in c.get("envFrom") or []:
            if (env_from.get("configMapRef") or {}).get("name"):
                refs.add(("configmaps", env_from["configMapRef"]["name"]))
            if (env_from.get("secretRef") or {}).get("name"):
                refs.add(("secrets", env_from["secretRef"]["name"]))
    return refs


class AuthGate:
    def __init__(self, objects: ObjectService, *, token_file: str = "") -> None:
        self.objects = objects
        try:
            self.tokens = authn.TokenFile.load(token_file) if token_file else None
        except authn.TokenFileError as err:
            raise ValueError(str(err)) from None

    def user(self, context: Any) -> authn.User:
        pems = (context.auth_context() or {}).get("x509_pem_cert") or []
        authorization = None
        if not pems:  # a certificate wins: the metadata is only read without one
            authorization = dict(context.invocation_metadata() or ()).get("authorization")
        try:
            return authn.authenticate(cert_pem=pems[0] if pems else None,
                                      authorization=authorization, tokens=self.tokens)
        except authn.Unauthenticated as err:
            raise e.APIError(e.Reason.UNAUTHORIZED, f"Unauthorized: {err}") from None

    async def check(self, context: Any, *, verb: str, resource: Resource, namespace: str,
                    name: str, subresource: str, obj: dict[str, Any] | None,
                    field_selector: str = "", defer: bool = False) -> Allowed:
        user = self.user(context)
        node = authz.node_name_of(user)
        seen: dict[str, Any] | None = obj
        refs: set[tuple[str, str]] = set()

        def referenced(_node: str, res: str, _ns: str, obj_name: str) -> bool:
            return (res, obj_name) in refs

        def decide(stored: dict[str, Any] | None) -> None:
            decision = authz.Authorizer(referenced_by_node=referenced).authorize(
                authz.Attributes(user=user, verb=verb, resource=resource.name,
                                 namespace=namespace, name=name, subresource=subresource,
                                 obj=stored, field_selector=field_selector))
            if not decision.allowed:
                raise e.forbidden(decision.reason)

        if node and resource.name == "pods" and verb in NODE_CHECKED_VERBS:
            if defer and (verb, subresource) in DEFERRED:
                return Allowed(user.name, guard=decide)  # (on whichever pod is written)
            if not name:  # the body would decide: a node must name the pod
                decide(None)
            seen = await self.objects.get(resource, namespace=namespace, name=name)
        if node and resource.name in ("configmaps", "secrets") and name:
            pods = await self.objects.list(RESOURCES["pods"], namespace=namespace,
                                           field_selector=f"spec.nodeName={node}")
            for p in pods["items"]:
                refs |= pod_references(p)
        decide(seen)
        return Allowed(user.name)
