"""The ReplicaSet controller: keeps spec.replicas pods of the template running.

    pod/RS events ──► queue "ns/rs" ──► sync: rs + pods of its namespace (caches)
        ──► plan(rs, pods, now, manage)   (pure: adopt, release, create n, delete which,
                                            status)
        ──► apply: adopt/release (owner references), create from the template with
            generateName "<rs>-", delete the pods that rank first, write status

Expectations keep a sync from creating or deleting again while the controller's own
writes have not yet come back through the pod informer.
"""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass, field
from typing import Any

from api import errors as e
from api import selectors as sel
from controlplane.controllers import podutil as pu
from controlplane.controllers.controller import Controller, Expectations
from controlplane.controllers.informer import Handler, key_of, split_key

Obj = dict[str, Any]
BURST = 500  # Kubernetes: at most this many creates or deletes per sync


@dataclass
class Plan:
    create: int = 0
    delete: list[str] = field(default_factory=list)  # pod names
    adopt: list[str] = field(default_factory=list)
    release: list[str] = field(default_factory=list)
    status: Obj = field(default_factory=dict)


def selector_of(obj: Obj) -> sel.Selector:
    """spec.selector; a selector that does not parse matches nothing."""
    try:
        s = sel.from_label_selector((obj.get("spec") or {}).get("selector") or {})
    except sel.SelectorError:
        return sel.Selector([sel.Requirement("corral.invalid/selector", "exists")])
    if s.empty():  # an empty selector would adopt every pod: Kubernetes refuses
        return sel.Selector([sel.Requirement("corral.invalid/selector", "exists")])
    return s


def plan(rs: Obj, pods: list[Obj], *, now: float, manage: bool = True) -> Plan:
    """What to do about RS given the PODS of its namespace. MANAGE false (expectations
    pending): no creates or deletes, only ownership and status."""
    spec = rs.get("spec") or {}
    replicas = int(spec.get("replicas", 1))
    min_ready = int(spec.get("minReadySeconds") or 0)
    selector = selector_of(rs)
    rs_uid, deleting = pu.uid(rs), pu.being_deleted(rs)
    out = Plan()
    owned: list[Obj] = []
    for pod in pods:
        ref = pu.controller_ref(pod)
        matches = selector.matches(pu.labels_of(pod))
        if ref is not None and ref.get("uid") == rs_uid:
            if matches:
                owned.append(pod)
            elif not pu.being_deleted(pod):
                out.release.append(pod["metadata"]["name"])
        elif ref is None and matches and not deleting and not pu.being_deleted(pod):
            out.adopt.append(pod["metadata"]["name"])
            owned.append(pod)
    active = [p for p in owned if pu.is_active(p)]
    if manage and not deleting:
        diff = len(active) - replicas
        if diff < 0:
            out.create = min(-diff, BURST)
        elif diff > 0:
            doomed = sorted(active, key=pu.deletion_rank)[:min(diff, BURST)]
            out.delete = [p["metadata"]["name"] for p in doomed]
    gone = set(out.delete)
    remaining = [p for p in active if p["metadata"]["name"] not in gone]
    template_labels = pu.labels_of(spec.get("template") or {})
    status: Obj = dict(rs.get("status") or {})
    status.update(
        replicas=len(remaining),
        fullyLabeledReplicas=sum(1 for p in remaining if pu.has_labels(p, template_labels)),
        readyReplicas=sum(1 for p in remaining if pu.is_ready(p)),
        availableReplicas=sum(1 for p in remaining if pu.is_available(p, min_ready, now)),
        observedGeneration=int(pu.meta(rs).get("generation") or 0))
    out.status = status
    return out


def pod_from_template(rs: Obj) -> Obj:
    """A new pod of RS: the template, generateName "<rs>-", owned by RS."""
    m = pu.meta(rs)
    template = copy.deepcopy((rs.get("spec") or {}).get("template") or {})
    tmeta = template.get("metadata") or {}
    pmeta: Obj = {"generateName": f"{m['name']}-", "namespace": m.get("namespace", ""),
                  "labels": dict(tmeta.get("labels") or {}),
                  "ownerReferences": [pu.owner_ref(rs)]}
    if tmeta.get("annotations"):
        pmeta["annotations"] = dict(tmeta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pmeta,
            "spec": template.get("spec") or {}}


async def create_in_batches(n: int, create: Any) -> list[BaseException]:
    """Kubernetes' slow start: batches of 1, 2, 4, ... creates; stop at the first batch
    with a failure. The errors (one per create not done, first the real ones)."""
    done, batch = 0, 1
    while done < n:
        size = min(batch, n - done)
        results = await asyncio.gather(*(create() for _ in range(size)),
                                       return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        done += size
        if errors:
            skipped = n - done
            return errors + [errors[0]] * skipped
        batch *= 2
    return []


class ReplicaSetController(Controller):
    name = "replicaset"
    workers = 4

    def setup(self) -> None:
        self.expectations = Expectations()
        self.rs_informer = self.informer("replicasets")
        self.pods = self.informer("pods")
        self.rs_informer.add_handler(Handler(on_add=self.enqueue,
                                             on_update=lambda o, n: self.enqueue(n),
                                             on_delete=self._rs_deleted))
        self.pods.add_handler(Handler(on_add=self._pod_added, on_update=self._pod_updated,
                                      on_delete=self._pod_deleted))

    # -- handlers: only enqueue -----------------------------------------------------------

    def _rs_deleted(self, rs: Obj) -> None:
        self.expectations.forget(key_of(rs))
        self.enqueue(rs)

    def _owner_key(self, pod: Obj) -> str | None:
        ref = pu.controller_ref(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return None
        return f"{pu.meta(pod).get('namespace', '')}/{ref.get('name')}"

    def _enqueue_matching(self, pod: Obj) -> None:
        """An orphan: every ReplicaSet of its namespace whose selector matches it."""
        ns, labels = pu.meta(pod).get("namespace", ""), pu.labels_of(pod)
        for rs in self.rs_informer.by_index("namespace", ns):
            if selector_of(rs).matches(labels):
                self.enqueue(rs)

    def _pod_added(self, pod: Obj) -> None:
        owner = self._owner_key(pod)
        if owner is not None:
            self.expectations.creation_observed(owner)
            self.queue.add(owner)
        elif pu.controller_ref(pod) is None:
            self._enqueue_matching(pod)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if pu.being_deleted(new) and not pu.being_deleted(old):
            owner = self._owner_key(new)
            if owner is not None:
                self.expectations.deletion_observed(owner, key_of(new))
        for pod in (old, new):
            owner = self._owner_key(pod)
            if owner is not None:
                self.queue.add(owner)
        if pu.controller_ref(new) is None:
            self._enqueue_matching(new)

    def _pod_deleted(self, pod: Obj) -> None:
        owner = self._owner_key(pod)
        if owner is not None:
            self.expectations.deletion_observed(owner, key_of(pod))
            self.queue.add(owner)

    # -- sync -----------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        rs = self.rs_informer.get(key)
        if rs is None:
            self.expectations.forget(key)
            return
        ns, _name = split_key(key)
        pods = self.pods.by_index("namespace", ns)
        now = self.clock()
        p = plan(rs, pods, now=now, manage=self.expectations.satisfied(key))
        by_name = {pu.meta(pod)["name"]: pod for pod in pods}
        for pod_name in p.adopt:
            await self._set_owner(by_name[pod_name], rs, adopt=True)
        for pod_name in p.release:
            await self._set_owner(by_name[pod_name], rs, adopt=False)
        if p.create:
            await self._create(key, rs, p.create)
        if p.delete:
            await self._delete(key, ns, p.delete)
        if p.status != (rs.get("status") or {}):
            new = copy.deepcopy(rs)
            new["status"] = p.status
            await self.cluster.update("replicasets", new, namespace=ns, subresource="status")
        min_ready = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
        if min_ready and p.status["readyReplicas"] > p.status["availableReplicas"]:
            self.queue.add_after(key, min_ready)  # check availability again then

    async def _set_owner(self, pod: Obj, rs: Obj, *, adopt: bool) -> None:
        new = copy.deepcopy(pod)
        refs = [r for r in pu.meta(new).get("ownerReferences") or []
                if r.get("uid") != pu.uid(rs)]
        if adopt:
            refs.append(pu.owner_ref(rs))
        new["metadata"]["ownerReferences"] = refs
        try:
            await self.cluster.update("pods", new, namespace=pu.meta(pod)["namespace"])
        except e.APIError as err:
            if err.reason is not e.Reason.NOT_FOUND:
                raise

    async def _create(self, key: str, rs: Obj, n: int) -> None:
        self.expectations.expect(key, adds=n)
        ns = pu.meta(rs)["namespace"]

        async def one() -> None:
            await self.cluster.create("pods", pod_from_template(rs), namespace=ns)

        errors = await create_in_batches(n, one)
        for _ in errors:
            self.expectations.creation_observed(key)
        if errors:
            err = errors[0]
            if isinstance(err, e.APIError) and err.reason is e.Reason.FORBIDDEN:
                return  # the namespace is being deleted: nothing to do
            raise err

    async def _delete(self, key: str, ns: str, names: list[str]) -> None:
        self.expectations.expect(key, deletes=[f"{ns}/{n}" for n in names])

        async def one(pod_name: str) -> None:
            try:
                await self.cluster.delete("pods", pod_name, namespace=ns)
            except e.APIError as err:
                self.expectations.deletion_observed(key, f"{ns}/{pod_name}")
                if err.reason is not e.Reason.NOT_FOUND:
                    raise

        results = await asyncio.gather(*(one(n) for n in names), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
