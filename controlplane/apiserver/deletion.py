"""The object service's delete path: graceful deletion, finalizers, propagation.

    delete(res, name) ─► read ─► preconditions (uid, resourceVersion) ─► mark_for_deletion:
      a namespace         ─► phase Terminating, deletionTimestamp; kept until spec.finalizers
                             (the namespace controller's) and metadata.finalizers are empty
      Foreground, Orphan  ─► the foregroundDeletion / orphan finalizer added: the garbage
                             collector propagates, then removes it
      a bound, running pod ─► deletionTimestamp = now + grace (the spec's or the request's;
                             a second delete may only shorten it): the agent stops it
      none of these       ─► None: removed now (a delete at the revision read)
    ─► a conflicting write in between: read again (UPDATE_RETRIES times)

    an update of a marked object (objects._write) ─► check_no_new_finalizers; finalized()
      once the last finalizer is gone and no grace is left ─► deleted instead of stored

ObjectService takes delete and delete_collection from here as its methods.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from api import errors as e
from api import jsoncodec
from controlplane.apiserver.resources import Resource
from controlplane.apiserver.stored import (
    UPDATE_RETRIES,
    Obj,
    Objs,
    encode,
    rfc3339,
    same,
    storage_error,
)
from controlplane.storage import errors as se

if TYPE_CHECKING:
    from controlplane.apiserver.objects import ObjectService

TERMINATED_PHASES = ("Succeeded", "Failed")


async def delete(self: ObjectService, res: Resource, *, namespace: str = "", name: str,
                 grace_period: int | None = None, propagation: str = "",
                 preconditions: Obj | None = None, dry_run: bool = False,
                 guard: Callable[[Obj], None] | None = None) -> Obj:
    """Remove the object, or mark it for deletion when something must happen first:
    finalizers, foreground/orphan propagation, or a bound pod's graceful stop. GUARD (the
    gate's, for a node) is called on each read; the delete is a compare-and-swap at it."""
    namespace = self._scope(res, namespace)
    if propagation not in ("", "Background", "Foreground", "Orphan"):
        raise e.bad_request(f"{res.kind} {name}: propagationPolicy {propagation!r}: "
                            "must be Background, Foreground or Orphan")
    if grace_period is not None and grace_period < 0:
        raise e.bad_request(f"{res.kind} {name}: gracePeriodSeconds must be >= 0, got "
                            f"{grace_period}")
    key = self._key(res, namespace, name)
    for _ in range(UPDATE_RETRIES):
        current, rev = await self._read(res, namespace, name)
        if guard is not None:
            guard(current)
        meta = current["metadata"]
        for field, want in (preconditions or {}).items():
            have = meta.get(field)
            if want and str(have) != str(want):
                raise e.conflict(res.kind, name, current=rev, problem=(
                    f"precondition failed: {field} is {have}, not {want}"))
        marked = mark_for_deletion(res, current, grace_period=grace_period,
                                   propagation=propagation, clock=self.clock)
        if dry_run:
            return marked or current
        try:
            if marked is None:
                self._written.pop(key, None)
                await self.store.delete(key, expected_revision=rev)
                return current
            if same(current, marked):
                return current
            value = encode(marked)
            new_rev = await self.store.update(key, value, rev)
            self._remember(key, new_rev, value)
            marked["metadata"]["resourceVersion"] = str(new_rev)
            return marked
        except se.Conflict:
            continue
        except se.StorageError as err:
            raise storage_error(err, res, name, namespace) from None
    raise e.conflict(res.kind, name, current=0, problem="delete kept conflicting")


def mark_for_deletion(res: Resource, obj: Obj, *, grace_period: int | None,
                      propagation: str, clock: Callable[[], float]) -> Obj | None:
    """The object marked for deletion, or None to remove it now."""
    meta = obj["metadata"]
    finalizers = list(meta.get("finalizers") or [])
    want = {"Foreground": "foregroundDeletion", "Orphan": "orphan"}.get(propagation)
    if want and want not in finalizers:
        finalizers.append(want)
    if res.name == "namespaces":
        out = jsoncodec.copy(obj)
        out["status"] = {**(obj.get("status") or {}), "phase": "Terminating"}
        out["metadata"]["finalizers"] = finalizers
        out["metadata"].setdefault("deletionTimestamp", rfc3339(clock()))
        out["metadata"]["deletionGracePeriodSeconds"] = 0
        if not (obj.get("spec") or {}).get("finalizers") and not finalizers:
            return None
        return out
    grace = 0
    if res.name == "pods" and not pod_gone(obj):
        spec_grace = (obj.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        grace = spec_grace if grace_period is None else grace_period
        old = meta.get("deletionGracePeriodSeconds")
        if old is not None and old < grace:
            grace = old  # a second delete may only shorten the grace period
    if not finalizers and grace == 0:
        return None
    out = jsoncodec.copy(obj)
    om = out["metadata"]
    om["finalizers"] = finalizers
    if not finalizers:
        om.pop("finalizers")
    if "deletionTimestamp" not in meta or grace < (meta.get(
            "deletionGracePeriodSeconds") or 0):
        om["deletionTimestamp"] = rfc3339(clock() + grace)
        om["generation"] = int(meta.get("generation") or 1) + 1
    om["deletionGracePeriodSeconds"] = grace
    return out


async def delete_collection(self: ObjectService, res: Resource, *, namespace: str = "",
                            label_selector: str = "", field_selector: str = "",
                            propagation: str = "") -> Objs:
    listed = await self.list(res, namespace=namespace, label_selector=label_selector,
                             field_selector=field_selector)
    out: Objs = []
    for obj in listed["items"]:
        m = obj["metadata"]
        try:
            out.append(await self.delete(res, namespace=m.get("namespace", ""),
                                         name=m["name"], propagation=propagation))
        except e.APIError as err:
            if err.reason is not e.Reason.NOT_FOUND:
                raise
    return out


def check_no_new_finalizers(res: Resource, name: str, old: Obj, new: Obj) -> None:
    """Forbidden when NEW adds finalizers to OLD, an object already marked for deletion."""
    old_meta, meta = old["metadata"], new["metadata"]
    if old_meta.get("deletionTimestamp"):
        added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
        if added:
            raise e.forbidden(f"{res.kind} {name}: no new finalizers can be added "
                              f"while the object is being deleted: {sorted(added)}")


def finalized(res: Resource, obj: Obj) -> bool:
    """Kubernetes' rule: an object marked for deletion with a zero grace period goes
    away once its last finalizer is removed (a namespace's spec.finalizers too)."""
    meta = obj["metadata"]
    if not meta.get("deletionTimestamp") or meta.get("finalizers"):
        return False
    if res.name == "namespaces" and (obj.get("spec") or {}).get("finalizers"):
        return False
    return not meta.get("deletionGracePeriodSeconds")


def pod_gone(pod: Obj) -> bool:
    """A pod that need not wait for a node to stop it: unbound, or already finished."""
    return not (pod.get("spec") or {}).get("nodeName") or (
        (pod.get("status") or {}).get("phase") in TERMINATED_PHASES)
