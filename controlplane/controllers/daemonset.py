"""The DaemonSet controller: one pod on every eligible node (daemonset_plan decides).

    daemonsets informer ──► key ns/name ─┐
    pods informer ──► owning DaemonSet ──┼─► queue ─► sync(key):
    nodes informer ──► every DaemonSet ──┘
        cached ds + nodes + its pods ─► daemonset_plan.plan(now) ─► delete pods,
        create pod + bind it (pods/binding) to its node, write status (daemonsets/status)

Pods are created unbound and then bound through pods/binding: the API server lets only
the binding set spec.nodeName. Each pod also carries a node affinity to its node, so a
pod left unbound (a crash between the two calls) is bound by the next sync, or placed on
the same node by the scheduler.
"""

from __future__ import annotations

import copy
import logging

from api import errors as e
from controlplane.controllers import daemonset_plan
from controlplane.controllers.controller import Controller, Expectations, may_exist
from controlplane.controllers.informer import Handler, key_of, split_key
from controlplane.controllers.plan_util import Obj, deleting, meta, name_of
from controlplane.controllers.podutil import generate_name

log = logging.getLogger("corral.controllers.daemonset")


def _ds_key(pod: Obj) -> str | None:
    m = meta(pod)
    for ref in m.get("ownerReferences") or ():
        if ref.get("controller") and ref.get("kind") == "DaemonSet":
            return f"{m.get('namespace', '')}/{ref.get('name', '')}"
    return None


class DaemonSetController(Controller):
    name = "daemonset"

    def setup(self) -> None:
        self.expectations = Expectations()
        self.daemonsets = self.informer("daemonsets")
        self.nodes = self.informer("nodes")
        self.pods = self.informer("pods")
        self.daemonsets.add_handler(Handler(on_add=self.enqueue,
                                            on_update=lambda _o, new: self.enqueue(new),
                                            on_delete=self.enqueue))
        self.nodes.add_handler(Handler(on_add=self._node_changed,
                                       on_update=self._node_updated,
                                       on_delete=self._node_changed))
        self.pods.add_handler(Handler(on_add=self._pod_added,
                                      on_update=self._pod_updated,
                                      on_delete=self._pod_deleted))

    def _node_changed(self, _node: Obj) -> None:
        for ds in self.daemonsets.list():
            self.queue.add(key_of(ds))

    def _node_updated(self, old: Obj, new: Obj) -> None:
        if (meta(old).get("labels") != meta(new).get("labels")
                or (old.get("spec") or {}) != (new.get("spec") or {})):
            self._node_changed(new)

    def _pod_added(self, pod: Obj) -> None:
        key = _ds_key(pod)
        if key:
            self.expectations.creation_observed(key, name_of(pod))
            self.queue.add(key)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        key = _ds_key(new)
        if key:
            if deleting(new) and not deleting(old):
                self.expectations.deletion_observed(key, name_of(new))
            self.queue.add(key)

    def _pod_deleted(self, pod: Obj) -> None:
        key = _ds_key(pod)
        if key:
            self.expectations.deletion_observed(key, name_of(pod))
            self.queue.add(key)

    async def sync(self, key: str) -> None:
        ds = self.daemonsets.get(key)
        if ds is None:
            self.expectations.forget(key)
            return
        if deleting(ds) or not self.expectations.satisfied(key):
            return
        namespace, _ = split_key(key)
        uid = str(meta(ds).get("uid") or "")
        pods = [p for p in self.pods.by_index("owner", uid)
                if any(r.get("uid") == uid and r.get("controller")
                       for r in meta(p).get("ownerReferences") or ())]
        plan = daemonset_plan.plan(ds, self.nodes.list(), pods, self.clock())
        self.expectations.expect(key, deletes=plan.delete)
        for pod_name in plan.delete:
            try:
                await self.cluster.delete("pods", pod_name, namespace=namespace)
            except e.APIError as err:
                self.expectations.deletion_observed(key, pod_name)
                if err.reason is not e.Reason.NOT_FOUND:
                    raise
        for pod_name, node in plan.bind:
            await self._bind(namespace, pod_name, "", node)
        for node in plan.create:  # each expected by name (see Expectations)
            new = daemonset_plan.new_pod(ds, node)
            pod_name = new["metadata"]["name"] = generate_name(
                new["metadata"]["generateName"])
            self.expectations.expect_creation(key, pod_name)
            try:
                pod = await self.cluster.create("pods", new, namespace=namespace)
            except e.APIError as err:
                if await may_exist(self.cluster, "pods", namespace=namespace,
                                   name=pod_name, err=err) is False:
                    self.expectations.creation_observed(key, pod_name)
                raise
            await self._bind(namespace, name_of(pod), str(meta(pod).get("uid") or ""), node)
        if (ds.get("status") or {}) != plan.status:
            out = copy.deepcopy(ds)
            out["status"] = plan.status
            await self.cluster.update("daemonsets", out, namespace=namespace,
                                      subresource="status")
        if plan.requeue_after is not None:
            self.queue.add_after(key, max(plan.requeue_after, 0.001))

    async def _bind(self, namespace: str, pod_name: str, uid: str, node: str) -> None:
        binding: Obj = {"apiVersion": "v1", "kind": "Binding",
                        "metadata": {"name": pod_name, "namespace": namespace},
                        "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        if uid:
            binding["metadata"]["uid"] = uid
        try:
            await self.cluster.create("pods", binding, namespace=namespace,
                                      subresource="binding")
        except e.APIError as err:
            # already bound (by the scheduler, to the only node its affinity allows),
            # or gone: the informer brings the outcome back to the next sync
            if err.reason not in (e.Reason.CONFLICT, e.Reason.NOT_FOUND):
                raise
