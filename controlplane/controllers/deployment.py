"""The Deployment controller: rolls a template out through ReplicaSets.

    deployment/RS/pod events ──► queue "ns/deploy" ──► sync:
        its RSes (the RS informer's "owner" index) and the orphans ("orphan"); pods
        only counted per RS in the pod informer's "owner" index, never read
        adopt orphan RSes matching the selector, release RSes that stopped matching
        ──► plan(deploy, its RSes, pods per RS, now)        (pure)
              paused     : scale only, no new RS
              Recreate   : old RSes to 0, wait for their pods to go, then the new RS up
              RollingUpdate: new RS up to replicas+maxSurge, old RSes down while
                             available >= replicas-maxUnavailable
              history    : delete idle old RSes beyond revisionHistoryLimit
              status     : counts and the Available / Progressing conditions
        ──► apply: create RS "<deploy>-<hash>", scale/annotate RSes, delete old ones,
            revision annotation on the Deployment, status

Rollback is the client's (it copies an old RS's template into the Deployment): the
controller follows whatever the template is, and an old RS whose template matches
becomes the new one again with the next revision.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from api import errors as e
from controlplane.controllers import podutil as pu
from controlplane.controllers import rollout as ro
from controlplane.controllers.controller import Controller
from controlplane.controllers.informer import Handler
from controlplane.controllers.replicaset import selector_of

Obj = dict[str, Any]


@dataclass
class Plan:
    create: Obj | None = None  # the new ReplicaSet to create
    scale: dict[str, int] = field(default_factory=dict)  # RS name -> spec.replicas
    annotate: dict[str, dict[str, str]] = field(default_factory=dict)  # RS -> annotations
    delete: list[str] = field(default_factory=list)  # old RSes past the history limit
    revision: str = ""  # the Deployment's revision annotation
    status: Obj = field(default_factory=dict)
    requeue_after: float | None = None


def new_replica_set(deploy: Obj, *, replicas: int, revision: int) -> Obj:
    """The ReplicaSet of DEPLOY's current template: name and labels carry the hash."""
    m, spec = pu.meta(deploy), deploy.get("spec") or {}
    collisions = int((deploy.get("status") or {}).get("collisionCount") or 0)
    h = ro.template_hash(spec.get("template") or {}, collisions)
    template = copy.deepcopy(spec.get("template") or {})
    tmeta = template.setdefault("metadata", {})
    tmeta["labels"] = {**(tmeta.get("labels") or {}), ro.HASH_LABEL: h}
    selector = copy.deepcopy(spec.get("selector") or {})
    selector["matchLabels"] = {**(selector.get("matchLabels") or {}), ro.HASH_LABEL: h}
    rs_spec: Obj = {"replicas": replicas, "selector": selector, "template": template}
    if spec.get("minReadySeconds"):
        rs_spec["minReadySeconds"] = spec["minReadySeconds"]
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": f"{m['name']}-{h}", "namespace": m.get("namespace", ""),
                         "labels": dict(tmeta["labels"]),
                         "annotations": {ro.REVISION: str(revision)},
                         "ownerReferences": [pu.owner_ref(deploy)]},
            "spec": rs_spec}


def _condition(conds: list[Obj], ctype: str) -> Obj | None:
    for c in conds:
        if c.get("type") == ctype:
            return c
    return None


def _set_condition(conds: list[Obj], new: Obj, now: float) -> list[Obj]:
    """Kubernetes' SetDeploymentCondition: lastTransitionTime moves only when the status
    changes; an identical status and reason keeps the old transition time. A condition
    that comes out as it was stays where it was (Kubernetes returns early then): moving
    it to the end would be a status change, and a write, with nothing changed."""
    old = _condition(conds, new["type"])
    stamp = pu.rfc3339(now)
    new = {**new, "lastUpdateTime": new.get("lastUpdateTime") or stamp,
           "lastTransitionTime": stamp}
    if old is not None and old.get("status") == new["status"]:
        new["lastTransitionTime"] = old.get("lastTransitionTime") or stamp
        if old.get("reason") == new["reason"] and old.get("message") == new.get(
                "message") and "keep_update" in new:
            new["lastUpdateTime"] = old.get("lastUpdateTime") or stamp
    new.pop("keep_update", None)
    if new == old:
        return conds
    return [c for c in conds if c.get("type") != new["type"]] + [new]


def _status(deploy: Obj, new_rs: Obj | None, rses: list[Obj], *, now: float,
            changed: bool, created: bool) -> tuple[Obj, float | None]:
    """The Deployment's status and when to look again for the progress deadline."""
    spec, old_status = deploy.get("spec") or {}, dict(deploy.get("status") or {})
    want = ro.replicas(deploy)
    total = sum(ro.status_int(rs, "replicas") for rs in rses)
    avail = sum(ro.status_int(rs, "availableReplicas") for rs in rses)
    updated = ro.status_int(new_rs, "replicas") if new_rs is not None else 0
    status: Obj = {**old_status, "observedGeneration": int(pu.meta(deploy).get(
        "generation") or 0), "replicas": total, "updatedReplicas": updated,
        "readyReplicas": sum(ro.status_int(rs, "readyReplicas") for rs in rses),
        "availableReplicas": avail,
        "unavailableReplicas": max(sum(ro.replicas(rs) for rs in rses) - avail, 0)}
    conds = list(old_status.get("conditions") or [])
    _, max_unavailable = fenceposts_or_zero(deploy)
    if avail >= want - max_unavailable:
        conds = _set_condition(conds, {"type": "Available", "status": "True",
                                       "reason": "MinimumReplicasAvailable",
                                       "message": "Deployment has minimum availability.",
                                       "keep_update": True}, now)
    else:
        conds = _set_condition(conds, {"type": "Available", "status": "False",
                                       "reason": "MinimumReplicasUnavailable",
                                       "message": "Deployment does not have minimum "
                                                  "availability.", "keep_update": True},
                               now)
    rs_name = pu.meta(new_rs)["name"] if new_rs is not None else ""
    deadline = int(spec.get("progressDeadlineSeconds") or 600)
    progressing = _condition(conds, "Progressing")
    requeue: float | None = None
    complete = (new_rs is not None and updated == want and total == want
                and avail >= want and ro.replicas(new_rs) == want)
    old_s = old_status
    progressed = (updated > int(old_s.get("updatedReplicas") or 0)
                  or status["readyReplicas"] > int(old_s.get("readyReplicas") or 0)
                  or avail > int(old_s.get("availableReplicas") or 0)
                  or (total - updated) < (int(old_s.get("replicas") or 0)
                                          - int(old_s.get("updatedReplicas") or 0)))
    if spec.get("paused"):
        conds = _set_condition(conds, {"type": "Progressing", "status": "Unknown",
                                       "reason": "DeploymentPaused",
                                       "message": "Deployment is paused",
                                       "keep_update": True}, now)
    elif complete:
        conds = _set_condition(conds, {"type": "Progressing", "status": "True",
                                       "reason": "NewReplicaSetAvailable",
                                       "message": f'ReplicaSet "{rs_name}" has '
                                                  "successfully progressed.",
                                       "keep_update": True}, now)
    elif created:
        conds = _set_condition(conds, {"type": "Progressing", "status": "True",
                                       "reason": "NewReplicaSetCreated",
                                       "message": f'Created new replica set "{rs_name}"'},
                               now)
    elif progressing is None or progressing.get("reason") == "DeploymentPaused":
        conds = _set_condition(conds, {"type": "Progressing", "status": "True",
                                       "reason": "FoundNewReplicaSet",
                                       "message": f'Found new replica set "{rs_name}"'},
                               now)
    elif changed or progressed:
        conds = _set_condition(conds, {"type": "Progressing", "status": "True",
                                       "reason": "ReplicaSetUpdated",
                                       "message": f'ReplicaSet "{rs_name}" is '
                                                  "progressing."}, now)
    elif progressing.get("reason") != "ProgressDeadlineExceeded":
        since = pu.parse_time(progressing.get("lastUpdateTime")) or now
        if now - since > deadline:
            conds = _set_condition(conds, {"type": "Progressing", "status": "False",
                                           "reason": "ProgressDeadlineExceeded",
                                           "message": f'ReplicaSet "{rs_name}" has timed '
                                                      "out progressing."}, now)
        else:
            requeue = since + deadline - now + 1
    p = _condition(conds, "Progressing")
    if p is not None and requeue is None and not complete and not spec.get("paused") \
            and p.get("reason") != "ProgressDeadlineExceeded":
        requeue = float(deadline) + 1
    status["conditions"] = conds
    return status, requeue


def fenceposts_or_zero(deploy: Obj) -> tuple[int, int]:
    strategy = ((deploy.get("spec") or {}).get("strategy") or {}).get("type")
    return (0, 0) if strategy == "Recreate" else ro.fenceposts(deploy)


def plan(deploy: Obj, rses: list[Obj], *, pods_per_rs: dict[str, int], now: float) -> Plan:
    """What to do about DEPLOY given the RSES it controls and how many pods each RS
    still has (by RS uid; Recreate waits for the old ones to reach 0)."""
    spec = deploy.get("spec") or {}
    out = Plan()
    matching = sorted((rs for rs in rses if ro.same_template(rs, deploy)),
                      key=lambda rs: pu.meta(rs).get("creationTimestamp") or "")
    new_rs = matching[0] if matching else None
    old = [rs for rs in rses if rs is not new_rs]
    max_old = max((ro.revision(rs) for rs in old), default=0)
    want = ro.replicas(deploy)
    deleting, paused = pu.being_deleted(deploy), bool(spec.get("paused"))
    recreate = (spec.get("strategy") or {}).get("type") == "Recreate"
    created = False
    rev = max(ro.revision(new_rs), max_old + 1) if new_rs is not None else max_old + 1

    def scale(rs: Obj, n: int) -> None:
        if n != ro.replicas(rs):
            out.scale[pu.meta(rs)["name"]] = n

    if deleting:
        pass
    elif paused:
        active = [rs for rs in rses if ro.replicas(rs) > 0]
        if new_rs is not None and all(rs is new_rs for rs in active):
            scale(new_rs, want)
        elif len(active) == 1:
            scale(active[0], want)
    elif recreate:
        for rs in old:
            scale(rs, 0)
        old_pods = sum(pods_per_rs.get(pu.uid(rs), 0) for rs in old)
        if not out.scale and old_pods == 0:
            if new_rs is None:
                out.create = new_replica_set(deploy, replicas=want, revision=rev)
                created = True
            else:
                scale(new_rs, want)
    else:
        new_spec = ro.replicas(new_rs) if new_rs is not None else 0
        target = ro.new_rs_replicas(deploy, new_spec, old)
        if new_rs is None:
            out.create = new_replica_set(deploy, replicas=target, revision=rev)
            created = True
        else:
            scale(new_rs, target)
        if not created and not (new_rs is not None and target > new_spec):
            new_avail = ro.available(new_rs) if new_rs is not None else 0
            out.scale.update(ro.old_rs_scale_down(deploy, new_spec=target,
                                                  new_available=new_avail, old=old))
    if new_rs is not None and not deleting and ro.revision(new_rs) != rev:
        out.annotate[pu.meta(new_rs)["name"]] = {ro.REVISION: str(rev)}
    if new_rs is not None or out.create is not None:
        out.revision = str(rev)
    if not deleting:
        limit = int(spec.get("revisionHistoryLimit", 10))
        out.delete = ro.history_to_delete(old, limit)
    out.status, out.requeue_after = _status(
        deploy, new_rs, rses, now=now, changed=bool(out.scale) and not paused,
        created=created)
    return out


class DeploymentController(Controller):
    name = "deployment"
    workers = 4

    def setup(self) -> None:
        self.deploys = self.informer("deployments")
        self.rses = self.informer("replicasets")
        self.pods = self.informer("pods")
        self.deploys.add_handler(Handler(on_add=self.enqueue,
                                         on_update=lambda o, n: self.enqueue(n),
                                         on_delete=self.enqueue))
        self.rses.add_handler(Handler(on_add=self._rs_event,
                                      on_update=self._rs_updated,
                                      on_delete=self._rs_event))
        self.pods.add_handler(Handler(on_delete=self._pod_deleted))

    def _rs_event(self, rs: Obj) -> None:
        ref = pu.controller_ref(rs)
        ns = pu.meta(rs).get("namespace", "")
        if ref is not None:
            if ref.get("kind") == "Deployment":
                self.queue.add(f"{ns}/{ref.get('name')}")
            return
        labels = pu.labels_of(rs)
        for d in self.deploys.by_index("namespace", ns):
            if selector_of(d).matches(labels):
                self.enqueue(d)

    def _rs_updated(self, old: Obj, new: Obj) -> None:
        self._rs_event(old)
        self._rs_event(new)

    def _pod_deleted(self, pod: Obj) -> None:
        ref = pu.controller_ref(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return
        rs = self.rses.get(f"{pu.meta(pod).get('namespace', '')}/{ref.get('name')}")
        if rs is not None:
            self._rs_event(rs)

    async def sync(self, key: str) -> None:
        deploy = self.deploys.get(key)
        if deploy is None:
            return
        selector = selector_of(deploy)
        owned: list[Obj] = []
        for rs in self._rses_of(deploy):
            ref = pu.controller_ref(rs)
            matches = selector.matches(pu.labels_of(rs))
            if ref is not None and ref.get("uid") == pu.uid(deploy):
                if matches:
                    owned.append(rs)
                elif not pu.being_deleted(rs):
                    await self._set_owner(rs, deploy, adopt=False)
            elif ref is None and matches and not pu.being_deleted(deploy) \
                    and not pu.being_deleted(rs):
                owned.append(await self._set_owner(rs, deploy, adopt=True))
        pods_per_rs = {pu.uid(rs): self.pods.index_count("owner", pu.uid(rs))
                       for rs in owned}  # counted in the index: no pod is read
        p = plan(deploy, owned, pods_per_rs=pods_per_rs, now=self.clock())
        await self._apply(deploy, owned, p)
        if p.requeue_after is not None:
            self.queue.add_after(key, p.requeue_after)

    def _rses_of(self, deploy: Obj) -> list[Obj]:
        """DEPLOY's ReplicaSets and its namespace's orphan ones (the "owner" and "orphan"
        indexes: a sync reads neither other Deployments' ReplicaSets nor any pod)."""
        own = self.rses.by_index("owner", pu.uid(deploy))
        orphans = self.rses.by_index("orphan", pu.meta(deploy).get("namespace", ""))
        seen = {id(rs) for rs in own}
        return own + [rs for rs in orphans if id(rs) not in seen]

    async def _set_owner(self, rs: Obj, deploy: Obj, *, adopt: bool) -> Obj:
        new = copy.deepcopy(rs)
        refs = [r for r in pu.meta(new).get("ownerReferences") or []
                if r.get("uid") != pu.uid(deploy)]
        if adopt:
            refs.append(pu.owner_ref(deploy))
        new["metadata"]["ownerReferences"] = refs
        return await self.cluster.update("replicasets", new,
                                         namespace=pu.meta(rs)["namespace"])

    async def _apply(self, deploy: Obj, rses: list[Obj], p: Plan) -> None:
        ns = pu.meta(deploy)["namespace"]
        by_name = {pu.meta(rs)["name"]: rs for rs in rses}
        status = p.status
        if p.create is not None:
            try:
                await self.cluster.create("replicasets", p.create, namespace=ns)
            except e.APIError as err:
                if err.reason is not e.Reason.ALREADY_EXISTS:
                    raise
                existing = await self.cluster.get("replicasets", p.create["metadata"][
                    "name"], namespace=ns)
                if not pu.is_controlled_by(existing, deploy) or not ro.same_template(
                        existing, deploy):  # a hash collision: the next name
                    status = {**status, "collisionCount": int(status.get(
                        "collisionCount") or 0) + 1}
        for name in set(p.scale) | set(p.annotate):
            rs = copy.deepcopy(by_name[name])
            if name in p.scale:
                rs["spec"]["replicas"] = p.scale[name]
            if name in p.annotate:
                rs["metadata"]["annotations"] = {
                    **(rs["metadata"].get("annotations") or {}), **p.annotate[name]}
            await self.cluster.update("replicasets", rs, namespace=ns)
        for name in p.delete:
            try:
                await self.cluster.delete("replicasets", name, namespace=ns)
            except e.APIError as err:
                if err.reason is not e.Reason.NOT_FOUND:
                    raise
        annotations = pu.meta(deploy).get("annotations") or {}
        if p.revision and annotations.get(ro.REVISION) != p.revision:
            new = copy.deepcopy(deploy)
            new["metadata"]["annotations"] = {**annotations, ro.REVISION: p.revision}
            deploy = await self.cluster.update("deployments", new, namespace=ns)
        if status != (deploy.get("status") or {}):
            new = copy.deepcopy(deploy)
            new["status"] = status
            await self.cluster.update("deployments", new, namespace=ns,
                                      subresource="status")
