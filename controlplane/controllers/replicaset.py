"""The ReplicaSet controller: keeps spec.replicas pods of the template running.

    pod/RS events ──► queue "ns/rs" ──► sync: rs + its pods (the pod informer's "owner"
        │                                index) + the namespace's orphans ("orphan")
        │  (a pod update that cannot change the plan, e.g. a binding, enqueues nothing)
        ──► plan(rs, pods, now, manage)   (pure: adopt, release, create n, delete which,
                                            status; linear, and a per-ReplicaSet memo
                                            of each pod's facts by object identity
                                            spares re-reading the unchanged pods)
        ──► apply: adopt/release (owner references), create from the template under
            names chosen here ("<rs>-" + 5 characters, as generateName would), delete
            the pods that rank first, write status

Expectations keep a sync from creating or deleting again while the controller's own
writes have not yet come back through the pod informer. Creates are expected by name: a
create that timed out after etcd committed it is looked up, and if the pod exists it
stays expected until the informer sees it (counting it as failed would let the next
sync create it again: the overshoot of issue 5); if the lookup fails too, the next sync
looks again. A sync reads only the ReplicaSet's own pods and the orphans, so its cost
does not grow with the namespace; while its own writes are in flight it can only
refresh the status, and such syncs are spaced (STATUS_SHARE) instead of one per event.
"""

from __future__ import annotations

import asyncio
import copy
import heapq
from dataclasses import dataclass, field
from typing import Any

from api import errors as e
from api import selectors as sel
from controlplane.controllers import podutil as pu
from controlplane.controllers.controller import Controller, Expectations, may_exist
from controlplane.controllers.informer import Handler, key_of, split_key

Obj = dict[str, Any]
BURST = 500  # Kubernetes: at most this many creates or deletes per sync
# While its own creates or deletes are in flight, a sync can only refresh the status:
# such syncs (O(pods) each) take at most this share of the time, at most one per
# MIN_STATUS_INTERVAL. Without it, a sync per observed create is quadratic at scale.
STATUS_SHARE = 0.1
MIN_STATUS_INTERVAL = 0.05
VERIFY_DELAY = 1.0  # look again for a pod whose create and lookup both failed
NAME_TRIES = 8  # a random pod name already taken: try another (as the API server does)


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


@dataclass(slots=True)
class _Facts:
    """What plan() reads of one pod, for one ReplicaSet (its uid, selector, template)."""

    name: str
    owned: bool  # its controller reference is the ReplicaSet's
    orphan: bool  # it has no controller reference
    matches: bool  # the selector matches its labels
    deleting: bool
    active: bool
    labeled: bool  # it has every label of the template
    ready: bool
    ready_time: str | None  # the Ready condition's lastTransitionTime, when ready


class PlanMemo:
    """The facts plan() found for each pod of one ReplicaSet, by the pod object's
    identity: the informer replaces an object that changes and never changes one in
    place, so a sync in a burst of pod events reads only the pods that changed (each
    entry holds its pod, so an id is not reused while it is here). Entries of pods no
    longer given, or of another selector or template, are dropped by the next plan."""

    __slots__ = ("context", "facts")

    def __init__(self) -> None:
        self.context: tuple[Any, ...] | None = None
        self.facts: dict[tuple[Any, Any], _Facts] = {}


_NO_REF = object()


def _facts(pod: Obj, *, rs_uid: str, selector: sel.Selector,
           template_labels: dict[str, str]) -> _Facts:
    m = pod.get("metadata") or {}
    labels = m.get("labels") or {}
    ref_uid: Any = _NO_REF  # (the first controller reference's uid, as pu.controller_ref)
    for ref in m.get("ownerReferences") or ():
        if ref.get("controller"):
            ref_uid = ref.get("uid")
            break
    status = pod.get("status") or {}
    ready, ready_time = False, None
    for c in status.get("conditions") or ():  # the first Ready condition, as pu.is_ready
        if c.get("type") == "Ready":
            if c.get("status") == "True":
                ready, ready_time = True, c.get("lastTransitionTime")
            break
    labeled = True  # pu.has_labels
    for k, v in template_labels.items():
        if labels.get(k) != v:
            labeled = False
            break
    deleting = bool(m.get("deletionTimestamp"))
    return _Facts(m.get("name") or "", ref_uid is not _NO_REF and ref_uid == rs_uid,
                  ref_uid is _NO_REF, selector.matches(labels), deleting,
                  not deleting and status.get("phase") not in pu.TERMINATED, labeled,
                  ready, ready_time)


def plan(rs: Obj, pods: list[Obj], *, now: float, manage: bool = True,
         memo: PlanMemo | None = None) -> Plan:
    """What to do about RS given PODS (its own and any orphans; others are ignored).
    MANAGE false (expectations pending): no creates or deletes, only ownership and
    status. MEMO (the controller's, one per ReplicaSet) spares reading again the pods
    that have not changed since the last plan. Linear in the pods; the pods to delete
    are the first by pu.deletion_rank (Kubernetes' order), picked without sorting all."""
    spec = rs.get("spec") or {}
    replicas = int(spec.get("replicas", 1))
    min_ready = int(spec.get("minReadySeconds") or 0)
    selector = selector_of(rs)
    template_labels = pu.labels_of(spec.get("template") or {})
    rs_uid, deleting = pu.uid(rs), pu.being_deleted(rs)
    known: dict[tuple[Any, Any], _Facts] = {}
    if memo is not None:
        context = (rs_uid, spec.get("selector"), template_labels)
        if memo.context != context:
            memo.context, memo.facts = context, {}
        known = memo.facts
    seen: dict[tuple[Any, Any], _Facts] = {}
    out = Plan()
    active: list[tuple[Obj, _Facts]] = []
    for pod in pods:
        pm = pod.get("metadata") or {}
        version = (pm.get("uid"), pm.get("resourceVersion"))
        facts = known.get(version) if version[1] else None
        if facts is None:
            facts = _facts(pod, rs_uid=rs_uid, selector=selector,
                           template_labels=template_labels)
        entry = (pod, facts)
        if memo is not None and version[1]:
            seen[version] = facts
        f = entry[1]
        if f.owned:
            if not f.matches:
                if not f.deleting:
                    out.release.append(f.name)
                continue
        elif f.orphan and f.matches and not deleting and not f.deleting:
            out.adopt.append(f.name)
        else:
            continue
        if f.active:
            active.append(entry)
    if memo is not None:
        memo.facts = seen
    remaining = active
    if manage and not deleting:
        diff = len(active) - replicas
        if diff < 0:
            out.create = min(-diff, BURST)
        elif diff > 0:
            doomed = heapq.nsmallest(min(diff, BURST), active,
                                     key=lambda e: pu.deletion_rank(e[0]))
            out.delete = [f.name for _, f in doomed]
            gone = {id(p) for p, _ in doomed}
            remaining = [e for e in active if id(e[0]) not in gone]
    labeled = ready = available = 0
    for _, f in remaining:
        labeled += f.labeled
        if f.ready:
            ready += 1
            if min_ready <= 0:
                available += 1
            else:
                since = pu.parse_time(f.ready_time)
                available += since is not None and since + min_ready <= now
    status: Obj = dict(rs.get("status") or {})
    status.update(
        replicas=len(remaining), fullyLabeledReplicas=labeled, readyReplicas=ready,
        availableReplicas=available,
        observedGeneration=int(pu.meta(rs).get("generation") or 0))
    out.status = status
    return out


def pod_from_template(rs: Obj, name: str = "") -> Obj:
    """A new pod of RS: the template, generateName "<rs>-" (and NAME if given, one the
    controller chose from that prefix), owned by RS."""
    m = pu.meta(rs)
    template = copy.deepcopy((rs.get("spec") or {}).get("template") or {})
    tmeta = template.get("metadata") or {}
    pmeta: Obj = {"generateName": f"{m['name']}-", "namespace": m.get("namespace", ""),
                  "labels": dict(tmeta.get("labels") or {}),
                  "ownerReferences": [pu.owner_ref(rs)]}
    if name:
        pmeta["name"] = name
    if tmeta.get("annotations"):
        pmeta["annotations"] = dict(tmeta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pmeta,
            "spec": template.get("spec") or {}}


def _plan_view(pod: Obj) -> tuple[Any, ...]:
    """What of POD a ReplicaSet sync reads (ownership, labels, state, readiness); an
    update that leaves it alone needs no sync."""
    m = pod.get("metadata") or {}
    status = pod.get("status") or {}
    ready = next((c for c in status.get("conditions") or () if c.get("type") == "Ready"),
                 None)
    return (m.get("labels"), m.get("ownerReferences"), m.get("deletionTimestamp"),
            status.get("phase"), ready)


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
        self._status_due: dict[str, float] = {}  # key -> no status-only sync before
        self._memos: dict[str, PlanMemo] = {}  # key -> what plan() knows of its pods
        # key -> pods whose create failed ambiguously and could not be looked up
        self._unverified: dict[str, set[str]] = {}
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
        self._status_due.pop(key_of(rs), None)
        self._unverified.pop(key_of(rs), None)
        self._memos.pop(key_of(rs), None)
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
            self.expectations.creation_observed(owner, key_of(pod))
            self.queue.add(owner)
        elif pu.controller_ref(pod) is None:
            self._enqueue_matching(pod)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if old is not new and _plan_view(old) == _plan_view(new):
            return  # e.g. bound to a node: nothing a sync would count changed
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

    def pods_of(self, rs: Obj) -> list[Obj]:
        """RS's pods and its namespace's orphans, from the informer's indexes."""
        ns = pu.meta(rs).get("namespace", "")
        own = self.pods.by_index("owner", pu.uid(rs))
        orphans = self.pods.by_index("orphan", ns)
        if not orphans:
            return own
        seen = {id(p) for p in own}
        return own + [p for p in orphans if id(p) not in seen]

    async def sync(self, key: str) -> None:
        rs = self.rs_informer.get(key)
        if rs is None:
            self.expectations.forget(key)
            self._status_due.pop(key, None)
            self._unverified.pop(key, None)
            self._memos.pop(key, None)
            return
        ns, _name = split_key(key)
        if key in self._unverified:
            await self._verify(key, ns)
        manage = self.expectations.satisfied(key)
        started = self.queue.clock()
        if not manage and started < self._status_due.get(key, 0.0):
            self.queue.add_after(key, self._status_due[key] - started)
            return  # only the status could change: refresh it a little later
        pods = self.pods_of(rs)
        now = self.clock()
        p = plan(rs, pods, now=now, manage=manage,
                 memo=self._memos.setdefault(key, PlanMemo()))
        took = self.queue.clock() - started
        self._status_due[key] = started + max(MIN_STATUS_INTERVAL, took / STATUS_SHARE)
        by_name = {pu.meta(pod)["name"]: pod for pod in pods} if p.adopt or p.release \
            else {}
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

    async def _verify(self, key: str, ns: str) -> None:
        """Look up the pods of KEY whose creates failed ambiguously: one that exists
        stays expected (the informer will show it), one that does not is expected no
        more; if a look fails again, look again in VERIFY_DELAY (not in 5 minutes)."""
        unknown = self._unverified.pop(key)
        if self.expectations.satisfied(key):
            return
        for dependent in unknown:
            try:
                await self.cluster.get("pods", split_key(dependent)[1], namespace=ns)
            except e.APIError as err:
                if err.reason is e.Reason.NOT_FOUND:
                    self.expectations.creation_observed(key, dependent)
                else:
                    self._unverified.setdefault(key, set()).add(dependent)
        if key in self._unverified:
            self.queue.add_after(key, VERIFY_DELAY)

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
        """N pods of RS, in growing batches, each under a name chosen here and expected
        by that name until the informer shows it or it surely does not exist."""
        ns = pu.meta(rs)["namespace"]
        prefix = f"{pu.meta(rs)['name']}-"
        names = [f"{ns}/{pu.generate_name(prefix)}" for _ in range(n)]
        self.expectations.expect(key, creates=names)
        untried = iter(names)

        async def one() -> None:
            dependent = next(untried)
            for attempt in range(NAME_TRIES):
                name = split_key(dependent)[1]
                try:
                    await self.cluster.create("pods", pod_from_template(rs, name),
                                              namespace=ns)
                    return
                except e.APIError as err:
                    if err.reason is e.Reason.ALREADY_EXISTS and attempt + 1 < NAME_TRIES:
                        dependent = f"{ns}/{pu.generate_name(prefix)}"  # name taken
                        self.expectations.expect_creation(key, dependent)
                        self.expectations.creation_observed(key, f"{ns}/{name}")
                        continue
                    found = await may_exist(self.cluster, "pods", namespace=ns,
                                            name=name, err=err)
                    if found is False:
                        self.expectations.creation_observed(key, dependent)
                    elif found is None:  # look again before the next sync plans
                        self._unverified.setdefault(key, set()).add(dependent)
                    raise
                except Exception:
                    self.expectations.creation_observed(key, dependent)
                    raise

        errors = await create_in_batches(n, one)
        for dependent in untried:  # skipped after a failed batch
            self.expectations.creation_observed(key, dependent)
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
