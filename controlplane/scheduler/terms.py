"""Pod affinity terms, parsed once per pod: the label selector, the namespaces it covers
(a list, a namespace selector, or the pod's own namespace) and the topology key.

    pod spec.affinity.podAffinity / podAntiAffinity
        -> PodAffinityInfo(required_affinity, required_anti, preferred_affinity,
                           preferred_anti)   each a tuple of AffinityTerm
    AffinityTerm.matches(other_pod, namespace_labels) -> bool

Kubernetes' meanings: a missing labelSelector matches no pod, an empty one every pod; a
missing namespaceSelector adds no namespace, an empty one adds every namespace; with neither
namespaces nor namespaceSelector the term covers the pod's own namespace.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from api.selectors import Selector, SelectorError, from_label_selector

NamespaceLabels = Callable[[str], Mapping[str, str]]
REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
PREFERRED = "preferredDuringSchedulingIgnoredDuringExecution"


def pod_labels(pod: Mapping[str, Any]) -> Mapping[str, str]:
    return (pod.get("metadata") or {}).get("labels") or {}


def pod_namespace(pod: Mapping[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("namespace") or "default")


def pod_key(pod: Mapping[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name') or ''}"


def pod_priority(pod: Mapping[str, Any]) -> int:
    return int((pod.get("spec") or {}).get("priority") or 0)


def selector_or_none(raw: Mapping[str, Any] | None, field: str) -> Selector | None:
    """None for a missing selector (matches nothing); raises SelectorError naming FIELD."""
    return None if raw is None else from_label_selector(raw, field)


def no_labels(_namespace: str) -> Mapping[str, str]:
    return {}


@dataclass(frozen=True)
class AffinityTerm:
    selector: Selector | None  # None: matches no pod
    namespaces: frozenset[str]
    namespace_selector: Selector | None  # None: adds no namespace
    topology_key: str
    weight: int = 1

    def matches(self, pod: Mapping[str, Any], ns_labels: NamespaceLabels = no_labels) -> bool:
        if self.selector is None:
            return False
        ns = pod_namespace(pod)
        if ns not in self.namespaces and (self.namespace_selector is None
                                          or not self.namespace_selector.matches(ns_labels(ns))):
            return False
        return self.selector.matches(pod_labels(pod))

    @classmethod
    def parse(cls, raw: Mapping[str, Any], *, owner_namespace: str, field: str,
              weight: int = 1) -> AffinityTerm:
        ns_raw = raw.get("namespaceSelector")
        namespaces = frozenset(raw.get("namespaces") or ())
        if not namespaces and ns_raw is None:
            namespaces = frozenset((owner_namespace,))
        return cls(selector_or_none(raw.get("labelSelector"), f"{field}.labelSelector"),
                   namespaces, selector_or_none(ns_raw, f"{field}.namespaceSelector"),
                   str(raw.get("topologyKey") or ""), weight)


@dataclass(frozen=True)
class PodAffinityInfo:
    pod: Mapping[str, Any]
    required_affinity: tuple[AffinityTerm, ...] = ()
    required_anti: tuple[AffinityTerm, ...] = ()
    preferred_affinity: tuple[AffinityTerm, ...] = ()
    preferred_anti: tuple[AffinityTerm, ...] = ()

    @property
    def has_any(self) -> bool:
        return bool(self.required_affinity or self.required_anti or self.preferred_affinity
                    or self.preferred_anti)

    def matches_all_required(self, pod: Mapping[str, Any],
                             ns_labels: NamespaceLabels = no_labels) -> bool:
        """POD matches every required affinity term (and there is at least one)."""
        return bool(self.required_affinity) and all(
            t.matches(pod, ns_labels) for t in self.required_affinity)


def _terms(block: Mapping[str, Any], *, ns: str, field: str,
           preferred: bool) -> tuple[AffinityTerm, ...]:
    if not preferred:
        return tuple(AffinityTerm.parse(t, owner_namespace=ns, field=f"{field}.{REQUIRED}[{i}]")
                     for i, t in enumerate(block.get(REQUIRED) or ()))
    return tuple(
        AffinityTerm.parse(w.get("podAffinityTerm") or {}, owner_namespace=ns,
                           field=f"{field}.{PREFERRED}[{i}].podAffinityTerm",
                           weight=int(w.get("weight") or 0))
        for i, w in enumerate(block.get(PREFERRED) or ()))


def parse_pod_affinity(pod: Mapping[str, Any]) -> PodAffinityInfo:
    """Raises SelectorError naming the pod and the field when a selector is invalid."""
    affinity = (pod.get("spec") or {}).get("affinity") or {}
    pa = affinity.get("podAffinity") or {}
    anti = affinity.get("podAntiAffinity") or {}
    if not pa and not anti:
        return PodAffinityInfo(pod)
    ns = pod_namespace(pod)
    a_field, n_field = "spec.affinity.podAffinity", "spec.affinity.podAntiAffinity"
    try:
        return PodAffinityInfo(
            pod,
            _terms(pa, ns=ns, field=a_field, preferred=False),
            _terms(anti, ns=ns, field=n_field, preferred=False),
            _terms(pa, ns=ns, field=a_field, preferred=True),
            _terms(anti, ns=ns, field=n_field, preferred=True))
    except SelectorError as e:
        raise SelectorError(f"Pod {pod_key(pod)}: {e}") from None


def parse_or_empty(pod: Mapping[str, Any]) -> PodAffinityInfo:
    """For pods already bound: a term that does not parse matches nothing."""
    try:
        return parse_pod_affinity(pod)
    except SelectorError:
        return PodAffinityInfo(pod)
