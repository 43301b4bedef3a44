"""The Endpoints controller: each Service with a selector gets an Endpoints object of the
same name listing its pods' addresses and ports (endpoints_plan decides).

    services informer ───────────────► key ns/name ─┐
    pods informer ──► services selecting the pod ───┼─► queue ─► sync(key):
    endpoints informer ──► same name ───────────────┘
        service gone ─► delete its Endpoints
        else endpoints_for(service, candidate pods) ─► create or update

Candidate pods come from the pod informer's "label" index ("ns/key=value"): the pods
carrying the rarest of the selector's pairs, so a sync reads about the pods it selects,
not the whole namespace.
"""

from __future__ import annotations

import copy
import logging

from api import errors as e
from api.selectors import SelectorError
from controlplane.controllers import endpoints_plan
from controlplane.controllers.controller import Controller
from controlplane.controllers.informer import Handler, key_of, split_key
from controlplane.controllers.plan_util import Obj, meta

log = logging.getLogger("corral.controllers.endpoints")
LABEL_INDEX = "label"


def by_label(obj: Obj) -> list[str]:
    """One index value per label: "namespace/key=value"."""
    ns = meta(obj).get("namespace") or ""
    return [f"{ns}/{k}={v}" for k, v in (meta(obj).get("labels") or {}).items()]


class EndpointsController(Controller):
    name = "endpoints"

    def setup(self) -> None:
        self.services = self.informer("services")
        self.pods = self.informer("pods")
        self.pods.add_index(LABEL_INDEX, by_label)
        self.endpoints = self.informer("endpoints")
        self.services.add_handler(Handler(on_add=self.enqueue,
                                          on_update=lambda _o, new: self.enqueue(new),
                                          on_delete=self.enqueue))
        self.pods.add_handler(Handler(on_add=self._pod, on_update=self._pod_updated,
                                      on_delete=self._pod))
        self.endpoints.add_handler(Handler(on_update=lambda _o, new: self.enqueue(new),
                                           on_delete=self.enqueue))

    def _pod(self, pod: Obj) -> None:
        self._services_of(pod, meta(pod).get("labels") or {})

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        self._services_of(new, meta(old).get("labels") or {}, meta(new).get("labels") or {})

    def _services_of(self, pod: Obj, *label_sets: dict[str, str]) -> None:
        """Enqueue the services of POD's namespace that select any of LABEL_SETS."""
        namespace = str(meta(pod).get("namespace") or "")
        for svc in self.services.by_index("namespace", namespace):
            try:
                selector = endpoints_plan.service_selector(svc)
            except SelectorError:
                continue
            if selector is not None and any(selector.matches(ls) for ls in label_sets):
                self.queue.add(key_of(svc))

    def candidates(self, namespace: str, selector: dict[str, str]) -> list[Obj]:
        """The pods of NAMESPACE carrying the selector's least common key=value pair (a
        superset of those it selects; endpoints_for matches them exactly)."""
        rarest = min((f"{namespace}/{k}={v}" for k, v in selector.items()),
                     key=lambda value: self.pods.index_count(LABEL_INDEX, value))
        return self.pods.by_index(LABEL_INDEX, rarest)

    async def sync(self, key: str) -> None:
        namespace, name = split_key(key)
        service = self.services.get(key)
        existing = self.endpoints.get(key)
        if service is None:
            if existing is not None:
                try:
                    await self.cluster.delete("endpoints", name, namespace=namespace)
                except e.APIError as err:
                    if err.reason is not e.Reason.NOT_FOUND:
                        raise
            return
        if not (service.get("spec") or {}).get("selector"):
            return  # endpoints of a selector-less service are written by hand
        pods = self.candidates(namespace, dict((service.get("spec") or {})["selector"]))
        subsets = endpoints_plan.endpoints_for(service, pods)
        want = endpoints_plan.endpoints_object(service, subsets)
        if existing is None:
            try:
                await self.cluster.create("endpoints", want, namespace=namespace)
            except e.APIError as err:
                if err.reason is not e.Reason.ALREADY_EXISTS:
                    raise
                self.queue.add_after(key, 0.05)  # our cache is behind: look again
            return
        if (existing.get("subsets") or []) == subsets and \
                meta(existing).get("labels") == meta(want).get("labels"):
            return
        out = copy.deepcopy(existing)
        out["subsets"] = subsets
        if meta(want).get("labels"):
            out["metadata"]["labels"] = dict(meta(want)["labels"])
        else:
            out["metadata"].pop("labels", None)
        await self.cluster.update("endpoints", out, namespace=namespace)
