"""The Endpoints controller's decision, pure: endpoints_for(service, pods) -> subsets.

    Service (selector, ports) + the pods of its namespace
      ├─ selected, has status.podIP, not finished, not being deleted
      ├─ each service port's targetPort: a number, or the name of a container port
      ├─ Ready=True (or publishNotReadyAddresses) ─► addresses, else notReadyAddresses
      └─ pods with the same resolved ports share a subset (sorted: stable output)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from api.selectors import Selector, from_label_selector
from controlplane.controllers.plan_util import (
    Obj,
    deleting,
    is_ready,
    meta,
    name_of,
    phase,
)


def service_selector(service: Mapping[str, Any]) -> Selector | None:
    """The service's pod selector; None for a service without one (its Endpoints are
    someone else's to write)."""
    selector = (service.get("spec") or {}).get("selector")
    if not selector:
        return None
    return from_label_selector({"matchLabels": dict(selector)},
                               field=f"Service {name_of(service)}: spec.selector")


def resolve_port(pod: Mapping[str, Any], port: Mapping[str, Any]) -> int | None:
    """The number PORT's targetPort means on POD: a number as it is, a name looked up
    among the pod's container ports (same protocol); None if the pod has no such port."""
    target = port.get("targetPort", port.get("port"))
    if isinstance(target, int) and not isinstance(target, bool):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    protocol = port.get("protocol") or "TCP"
    for c in (pod.get("spec") or {}).get("containers") or ():
        for cp in c.get("ports") or ():
            if cp.get("name") == target and (cp.get("protocol") or "TCP") == protocol:
                return int(cp["containerPort"])
    return None


def _address(pod: Mapping[str, Any]) -> Obj:
    m = meta(pod)
    addr: Obj = {"ip": (pod.get("status") or {})["podIP"],
                 "targetRef": {"kind": "Pod", "namespace": m.get("namespace", ""),
                               "name": m.get("name", ""), "uid": m.get("uid", "")}}
    node = (pod.get("spec") or {}).get("nodeName")
    if node:
        addr["nodeName"] = node
    return addr


def endpoints_for(service: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> list[Obj]:
    """The subsets of SERVICE's Endpoints given the pods of its namespace."""
    selector = service_selector(service)
    if selector is None:
        return []
    spec = service.get("spec") or {}
    publish = bool(spec.get("publishNotReadyAddresses"))
    ports = list(spec.get("ports") or ())
    groups: dict[tuple[tuple[str, int, str], ...], tuple[list[Obj], list[Obj]]] = {}
    for pod in pods:
        if not selector.matches(meta(pod).get("labels") or {}):
            continue
        if deleting(pod) or phase(pod) in ("Succeeded", "Failed"):
            continue
        if not (pod.get("status") or {}).get("podIP"):
            continue
        resolved: list[tuple[str, int, str]] = []
        for p in ports:
            number = resolve_port(pod, p)
            if number is not None:
                resolved.append((str(p.get("name") or ""), number,
                                 str(p.get("protocol") or "TCP")))
        if ports and not resolved:
            continue
        ready, not_ready = groups.setdefault(tuple(sorted(resolved)), ([], []))
        (ready if publish or is_ready(pod) else not_ready).append(_address(pod))
    subsets: list[Obj] = []
    for key in sorted(groups):
        ready, not_ready = groups[key]
        subset: Obj = {}
        if ready:
            subset["addresses"] = sorted(ready, key=_ip_key)
        if not_ready:
            subset["notReadyAddresses"] = sorted(not_ready, key=_ip_key)
        subset["ports"] = [{**({"name": n} if n else {}), "port": num, "protocol": proto}
                           for n, num, proto in key]
        if not subset["ports"]:
            del subset["ports"]
        subsets.append(subset)
    return subsets


def _ip_key(addr: Mapping[str, Any]) -> tuple[str, str]:
    return str(addr.get("ip")), str((addr.get("targetRef") or {}).get("name"))


def endpoints_object(service: Mapping[str, Any], subsets: list[Obj]) -> Obj:
    """The Endpoints object of SERVICE with SUBSETS (same name, namespace and labels)."""
    m = meta(service)
    out: Obj = {"apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": m.get("name", ""), "namespace": m.get("namespace", "")},
                "subsets": subsets}
    if m.get("labels"):
        out["metadata"]["labels"] = dict(m["labels"])
    return out
