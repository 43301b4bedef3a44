"""The garbage collector: ownerReferences, with background, foreground and orphan deletion.

    informers of every workload kind (+ pods) ──► owner graph: the informers' "owner"
    index (dependents by owner uid) and a uid -> key map
        object with ownerReferences changed / owner deleted ─► queue "<resource>:ns/name"
    sync(key):
        being deleted with finalizer "orphan"             ─► drop its uid from every
                                                              dependent, then the finalizer
        being deleted with finalizer "foregroundDeletion" ─► delete dependents; once no
                                                              blocking one remains, drop it
        owners all gone (checked live)                     ─► delete it (background)
        some owners gone                                   ─► drop the dangling references
"""

from __future__ import annotations

import copy
from typing import Any

from api import errors as e
from controlplane.apiserver.resources import for_object
from controlplane.controllers import podutil as pu
from controlplane.controllers.controller import Controller
from controlplane.controllers.informer import Handler, Informer, key_of, split_key

Obj = dict[str, Any]
RESOURCES = ("pods", "replicasets", "deployments", "daemonsets", "jobs", "cronjobs",
             "services", "configmaps", "secrets")
ORPHAN, FOREGROUND = "orphan", "foregroundDeletion"


def gc_key(resource: str, obj: Obj) -> str:
    return f"{resource}:{key_of(obj)}"


def _without_owner(obj: Obj, owner_uid: str) -> Obj:
    new = copy.deepcopy(obj)
    refs = [r for r in pu.meta(new).get("ownerReferences") or [] if r.get("uid") != owner_uid]
    new["metadata"]["ownerReferences"] = refs
    return new


def _without_finalizer(obj: Obj, finalizer: str) -> Obj:
    new = copy.deepcopy(obj)
    new["metadata"]["finalizers"] = [f for f in pu.meta(new).get("finalizers") or []
                                     if f != finalizer]
    return new


def blocking(dependents: list[Obj], owner_uid: str) -> list[Obj]:
    """The dependents whose reference to OWNER_UID blocks the owner's foreground deletion."""
    return [d for d in dependents
            if any(r.get("uid") == owner_uid and r.get("blockOwnerDeletion")
                   for r in pu.meta(d).get("ownerReferences") or [])]


class GarbageCollector(Controller):
    name = "garbagecollector"
    workers = 4

    def setup(self) -> None:
        self.watched: dict[str, Informer] = {}
        for res in RESOURCES:
            inf = self.watched[res] = self.informer(res)
            inf.add_handler(Handler(
                on_add=lambda o, r=res: self._added(r, o),  # type: ignore[misc]
                on_update=lambda o, n, r=res: self._updated(r, o, n),  # type: ignore[misc]
                on_delete=lambda o, r=res: self._deleted(r, o)))  # type: ignore[misc]

    # -- the graph ------------------------------------------------------------------------

    def dependents(self, owner_uid: str) -> list[tuple[str, Obj]]:
        """(resource, object) of everything that names OWNER_UID as an owner."""
        return [(res, obj) for res, inf in self.watched.items()
                for obj in inf.by_index("owner", owner_uid)]

    def _interesting(self, obj: Obj) -> bool:
        m = pu.meta(obj)
        return bool(m.get("ownerReferences")) or (pu.being_deleted(obj) and bool(
            {ORPHAN, FOREGROUND} & set(m.get("finalizers") or [])))

    def _enqueue_owners(self, obj: Obj) -> None:
        ns = pu.meta(obj).get("namespace", "")
        for ref in pu.meta(obj).get("ownerReferences") or []:
            res = for_object(str(ref.get("apiVersion")), str(ref.get("kind")))
            if res is not None and res.name in self.watched:
                self.queue.add(f"{res.name}:{ns + '/' if res.namespaced else ''}"
                               f"{ref.get('name')}")

    def _added(self, res: str, obj: Obj) -> None:
        if self._interesting(obj):
            self.queue.add(gc_key(res, obj))

    def _updated(self, res: str, old: Obj, new: Obj) -> None:
        om, nm = pu.meta(old), pu.meta(new)
        refs_changed = om.get("ownerReferences") != nm.get("ownerReferences")
        deletion_changed = pu.being_deleted(new) and (
            not pu.being_deleted(old) or om.get("finalizers") != nm.get("finalizers"))
        # a status write is not news; a resync (old is new) is a re-check
        if (old is new or refs_changed or deletion_changed) and self._interesting(new):
            self.queue.add(gc_key(res, new))
        if refs_changed or (pu.being_deleted(new) and not pu.being_deleted(old)):
            self._enqueue_owners(old)
            self._enqueue_owners(new)

    def _deleted(self, res: str, obj: Obj) -> None:
        for dep_res, dep in self.dependents(pu.uid(obj)):
            self.queue.add(gc_key(dep_res, dep))
        self._enqueue_owners(obj)

    # -- sync -----------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        res, _, obj_key = key.partition(":")
        inf = self.watched.get(res)
        obj = inf.get(obj_key) if inf is not None else None
        if obj is None:
            return
        finalizers = pu.meta(obj).get("finalizers") or []
        if pu.being_deleted(obj) and ORPHAN in finalizers:
            await self._orphan(res, obj)
        elif pu.being_deleted(obj) and FOREGROUND in finalizers:
            await self._foreground(res, obj)
        elif pu.meta(obj).get("ownerReferences") and not pu.being_deleted(obj):
            await self._check_owners(res, obj)

    async def _write(self, res: str, obj: Obj) -> None:
        try:
            await self.cluster.update(res, obj, namespace=pu.meta(obj).get("namespace", ""))
        except e.APIError as err:
            if err.reason is not e.Reason.NOT_FOUND:
                raise

    async def _delete(self, res: str, obj: Obj, *, propagation: str = "") -> None:
        m = pu.meta(obj)
        try:
            await self.cluster.delete(res, m["name"], namespace=m.get("namespace", ""),
                                      propagation=propagation, uid=pu.uid(obj))
        except e.APIError as err:
            if err.reason not in (e.Reason.NOT_FOUND, e.Reason.CONFLICT):
                raise

    async def _orphan(self, res: str, owner: Obj) -> None:
        owner_uid = pu.uid(owner)
        for dep_res, dep in self.dependents(owner_uid):
            await self._write(dep_res, _without_owner(dep, owner_uid))
        await self._write(res, _without_finalizer(owner, ORPHAN))

    async def _foreground(self, res: str, owner: Obj) -> None:
        owner_uid = pu.uid(owner)
        deps = self.dependents(owner_uid)
        for dep_res, dep in deps:
            if pu.being_deleted(dep):
                continue
            has_own = bool(self.dependents(pu.uid(dep)))
            await self._delete(dep_res, dep, propagation="Foreground" if has_own else "")
        if not blocking([d for _, d in deps], owner_uid):
            await self._write(res, _without_finalizer(owner, FOREGROUND))

    async def _owner_state(self, obj: Obj, ref: Obj) -> str:
        """"gone", "deleting" (in foreground) or "present", asked of the API server."""
        res = for_object(str(ref.get("apiVersion")), str(ref.get("kind")))
        if res is None:
            return "present"  # a kind we do not serve: leave it alone
        ns = pu.meta(obj).get("namespace", "") if res.namespaced else ""
        inf = self.watched.get(res.name)
        cached = inf.get(f"{ns}/{ref.get('name')}" if ns else str(ref.get("name"))) \
            if inf is not None else None
        if cached is not None and pu.uid(cached) == ref.get("uid") and not \
                pu.being_deleted(cached):
            return "present"  # seen alive; only absence is confirmed with the server
        try:
            owner = await self.cluster.get(res.name, str(ref.get("name")), namespace=ns)
        except e.APIError as err:
            if err.reason is e.Reason.NOT_FOUND:
                return "gone"
            raise
        if pu.uid(owner) != ref.get("uid"):
            return "gone"  # a new object with the old name
        if pu.being_deleted(owner) and FOREGROUND in (pu.meta(owner).get("finalizers") or []):
            return "deleting"
        return "present"

    async def _check_owners(self, res: str, obj: Obj) -> None:
        refs = pu.meta(obj).get("ownerReferences") or []
        states = {str(r.get("uid")): await self._owner_state(obj, r) for r in refs}
        if all(s == "gone" for s in states.values()):
            await self._delete(res, obj)
            return
        gone = [u for u, s in states.items() if s == "gone"]
        if gone:
            new = copy.deepcopy(obj)
            new["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") not in gone]
            await self._write(res, new)


def parse_key(key: str) -> tuple[str, str, str]:
    """(resource, namespace, name) of a garbage-collector key."""
    res, _, rest = key.partition(":")
    ns, name = split_key(rest)
    return res, ns, name
