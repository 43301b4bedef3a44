"""The namespace controller: empties a namespace being deleted, then lets it go.

    namespace with deletionTimestamp and "kubernetes" in spec.finalizers
        ──► every namespaced resource: list in the namespace, delete what is not
            already being deleted
        ──► something left: look again shortly (backing off to MAX_RECHECK)
        ──► nothing left: update spec.finalizers without "kubernetes"; the API server
            then removes the namespace
"""

from __future__ import annotations

import copy
from typing import Any

from api import errors as e
from controlplane.apiserver.resources import RESOURCES
from controlplane.controllers import podutil as pu
from controlplane.controllers.controller import Controller
from controlplane.controllers.informer import Handler

Obj = dict[str, Any]
FINALIZER = "kubernetes"
FIRST_RECHECK = 0.05
MAX_RECHECK = 5.0


def namespaced_resources() -> list[str]:
    return sorted(r.name for r in RESOURCES.values() if r.namespaced)


def needs_emptying(ns: Obj) -> bool:
    return pu.being_deleted(ns) and FINALIZER in ((ns.get("spec") or {}).get("finalizers")
                                                  or [])


class NamespaceController(Controller):
    name = "namespace"
    workers = 2

    def setup(self) -> None:
        self.namespaces = self.informer("namespaces")
        self.namespaces.add_handler(Handler(on_add=self.enqueue,
                                            on_update=lambda o, n: self.enqueue(n)))
        self._rechecks: dict[str, int] = {}

    async def sync(self, key: str) -> None:
        ns = self.namespaces.get(key)
        if ns is None or not needs_emptying(ns):
            self._rechecks.pop(key, None)
            return
        left = 0
        for res in namespaced_resources():
            listed = await self.cluster.list(res, namespace=key)
            for obj in listed["items"]:
                left += 1
                if pu.being_deleted(obj):
                    continue
                try:
                    await self.cluster.delete(res, pu.meta(obj)["name"], namespace=key)
                except e.APIError as err:
                    if err.reason is not e.Reason.NOT_FOUND:
                        raise
        if left:
            n = self._rechecks.get(key, 0)
            self._rechecks[key] = n + 1
            self.queue.add_after(key, min(FIRST_RECHECK * 2 ** n, MAX_RECHECK))
            return
        self._rechecks.pop(key, None)
        new = copy.deepcopy(ns)
        new["spec"]["finalizers"] = [f for f in new["spec"]["finalizers"] if f != FINALIZER]
        try:
            await self.cluster.update("namespaces", new)
        except e.APIError as err:
            if err.reason is not e.Reason.NOT_FOUND:
                raise
