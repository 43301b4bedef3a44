"""The object service's subresource paths: scale and binding. (status is an update that
keeps the spec: admission.carry_over.)

    get(res, subresource="scale")        ─► scale_of: the object as an autoscaling/v1 Scale
    update(res, scale, subresource="scale") ─► update_scale: spec.replicas checked, written
                                            at the Scale's resourceVersion ─► the new Scale
    create(pods, binding, subresource="binding") ─► bind: spec.nodeName set once (the uid
                                            matches, not bound, not being deleted) and
                                            PodScheduled=True, as the scheduler binds

ObjectService takes bind and _update_scale from here as its methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from api import errors as e
from api import selectors as sel
from controlplane.apiserver.resources import Resource
from controlplane.apiserver.stored import Obj, parse_rv, rfc3339

if TYPE_CHECKING:
    from controlplane.apiserver.objects import ObjectService


def scale_of(res: Resource, obj: Obj) -> Obj:
    """The autoscaling/v1 Scale view of OBJ (Deployment, ReplicaSet, ...)."""
    if not res.scale:
        raise e.bad_request(f"{res.name}: no scale subresource")
    m = obj["metadata"]
    selector = (obj.get("spec") or {}).get("selector") or {}
    return {"apiVersion": "autoscaling/v1", "kind": "Scale",
            "metadata": {"name": m["name"], "namespace": m.get("namespace", ""),
                         "uid": m.get("uid", ""),
                         "resourceVersion": m["resourceVersion"]},
            "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 1)},
            "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                       "selector": str(sel.from_label_selector(selector))}}


async def update_scale(self: ObjectService, res: Resource, scale: Any, *, namespace: str,
                       name: str, dry_run: bool) -> Obj:
    """The Scale's spec.replicas written to the object (at the Scale's resourceVersion,
    if it has one); the new Scale."""
    if not res.scale:
        raise e.bad_request(f"{res.name}: no scale subresource")
    replicas = (scale.get("spec") or {}).get("replicas") if isinstance(scale, dict) \
        else None
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise e.invalid("Scale", name, [("spec.replicas",
                                          f"must be an integer >= 0, got {replicas!r}")])
    expected = parse_rv((scale.get("metadata") or {}).get("resourceVersion"),
                         f"Scale {name}")

    def change(cur: Obj) -> Obj:
        cur.setdefault("spec", {})["replicas"] = replicas
        return cur

    obj = await self._write(res, namespace=namespace, name=name, change=change,
                            expected=expected, dry_run=dry_run)
    obj["metadata"].setdefault("resourceVersion", "0")
    return scale_of(res, obj)


async def bind(self: ObjectService, res: Resource, binding: Any, *, namespace: str) -> Obj:
    """pods/binding: set spec.nodeName once, as the scheduler does."""
    if res.name != "pods" or not isinstance(binding, dict):
        raise e.bad_request(f"{res.name}: binding is a pods subresource")
    name = str((binding.get("metadata") or {}).get("name") or "")
    node = str((binding.get("target") or {}).get("name") or "")
    if not name or not node:
        raise e.bad_request(f"Binding {name}: metadata.name and target.name are required")
    uid = (binding.get("metadata") or {}).get("uid")

    def change(pod: Obj) -> Obj:
        if uid and pod["metadata"].get("uid") != uid:
            raise e.conflict("Pod", name, current=int(pod["metadata"]["resourceVersion"]),
                             problem=f"the pod's uid is not {uid}")
        bound = (pod.get("spec") or {}).get("nodeName")
        if bound:
            raise e.conflict("Pod", name, current=int(pod["metadata"]["resourceVersion"]),
                             problem=f"pod {name} is already assigned to node {bound}")
        if pod["metadata"].get("deletionTimestamp"):
            raise e.conflict("Pod", name, current=int(pod["metadata"]["resourceVersion"]),
                             problem="the pod is being deleted")
        pod.setdefault("spec", {})["nodeName"] = node
        status = pod.setdefault("status", {})
        conds = [c for c in status.get("conditions") or [] if c.get("type") !=
                 "PodScheduled"]
        conds.append({"type": "PodScheduled", "status": "True",
                      "lastTransitionTime": rfc3339(self.clock())})
        status["conditions"] = conds
        return pod

    return await self._write(res, namespace=namespace, name=name, change=change,
                             subresource="binding")
