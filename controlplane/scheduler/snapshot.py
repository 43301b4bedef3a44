"""The scheduler's view of the cluster: one `NodeInfo` per node with the pods bound to it and
what they request, built from plain node and pod dicts. Pure: nothing here does I/O, and
`assume` returns a new snapshot instead of changing this one.

    nodes, pods, namespaces -> Snapshot -> NodeInfo (pods, requested, images, pods with
    affinity) ; per snapshot: image -> number of nodes that have it, namespace labels,
    the nodes that hold pods with (anti-)affinity (so most cycles never look at the rest)

`assume`/`replace` return a new snapshot (O(nodes) pointer copies); the scheduler service,
which owns its snapshot, uses the in-place `assume_in_place`/`put`/`remove` (O(1) unless
a pod with affinity or new images comes or goes).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from api import quantity
from controlplane.scheduler.terms import PodAffinityInfo, parse_or_empty, pod_key

CPU, MEMORY, PODS = "cpu", "memory", "pods"
# Kubernetes' defaults for a container that requests no cpu / memory, used only for scoring
# (so that best-effort pods still spread): 100 millicores and 200 MiB.
DEFAULT_MILLI_CPU_REQUEST = 100
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024
_TERMINAL_PHASES = ("Succeeded", "Failed")


@dataclass(frozen=True)
class Resource:
    """Amounts: cpu in millicores, memory in bytes, a pod count, and every other resource
    (extended resources such as example.com/gpu, ephemeral-storage, hugepages) as integers."""

    milli_cpu: int = 0
    memory: int = 0
    pods: int = 0
    scalar: Mapping[str, int] = field(default_factory=dict)

    def __add__(self, other: Resource) -> Resource:
        scalar = dict(self.scalar)
        for name, v in other.scalar.items():
            scalar[name] = scalar.get(name, 0) + v
        return Resource(self.milli_cpu + other.milli_cpu, self.memory + other.memory,
                        self.pods + other.pods, scalar)

    def max(self, other: Resource) -> Resource:
        names = set(self.scalar) | set(other.scalar)
        return Resource(max(self.milli_cpu, other.milli_cpu), max(self.memory, other.memory),
                        max(self.pods, other.pods),
                        {n: max(self.scalar.get(n, 0), other.scalar.get(n, 0)) for n in names})

    @classmethod
    def from_list(cls, resources: Mapping[str, Any] | None) -> Resource:
        """A ResourceList ({"cpu": "500m", "memory": "1Gi", ...}) as amounts (nodes of one
        shape share their allocatable: parsed once, since quantity parsing is slow)."""
        try:
            key = tuple((k, type(v), v) for k, v in (resources or {}).items())
            cached = _LISTS.get(key)
        except TypeError:  # a value that is not hashable: invalid anyway, parse to say so
            key, cached = None, None
        if cached is None:
            cached = cls._parse_list(resources)
            if key is not None:
                if len(_LISTS) >= _REQUESTS_CACHED:
                    _LISTS.clear()
                _LISTS[key] = cached
        return cached

    @classmethod
    def _parse_list(cls, resources: Mapping[str, Any] | None) -> Resource:
        cpu = mem = pods = 0
        scalar: dict[str, int] = {}
        for name, raw in (resources or {}).items():
            q = quantity.parse(raw)
            if name == CPU:
                cpu = q.milli_value()
            elif name == MEMORY:
                mem = q.value()
            elif name == PODS:
                pods = q.value()
            else:
                scalar[name] = q.value()
        return cls(cpu, mem, pods, scalar)


def _container_requests(container: Mapping[str, Any], non_zero: bool) -> Resource:
    requests = (container.get("resources") or {}).get("requests") or {}
    r = Resource.from_list(requests)
    if non_zero:
        r = replace(r, milli_cpu=r.milli_cpu if CPU in requests else DEFAULT_MILLI_CPU_REQUEST,
                    memory=r.memory if MEMORY in requests else DEFAULT_MEMORY_REQUEST)
    return r


def pod_requests(pod: Mapping[str, Any], non_zero: bool = False) -> Resource:
    """The pod's effective request, as Kubernetes computes it: the sum over its containers,
    raised to the largest init container's request (init containers run one at a time).
    NON_ZERO fills in the scoring defaults for containers without a cpu / memory request.
    The result's `pods` is 0: a pod count is not a container request."""
    return _requests(pod, _requests_key(pod), non_zero)


def both_requests(pod: Mapping[str, Any]) -> tuple[Resource, Resource]:
    """(pod_requests(pod), pod_requests(pod, non_zero=True)), the pod read once."""
    text = _requests_key(pod)
    return _requests(pod, text, False), _requests(pod, text, True)


def _requests_key(pod: Mapping[str, Any]) -> str:
    spec = pod.get("spec") or {}
    return repr(([c.get("resources") for c in spec.get("containers") or ()],
                 [c.get("resources") for c in spec.get("initContainers") or ()]))


def _requests(pod: Mapping[str, Any], text: str, non_zero: bool) -> Resource:
    spec = pod.get("spec") or {}
    key = (text, non_zero)
    total = _REQUESTS.get(key)
    if total is None:  # quantity parsing is slow, and pods of one template share requests
        total = Resource()
        for c in spec.get("containers") or []:
            total = total + _container_requests(c, non_zero)
        for c in spec.get("initContainers") or []:
            total = total.max(_container_requests(c, non_zero))
        if len(_REQUESTS) >= _REQUESTS_CACHED:
            _REQUESTS.clear()
        _REQUESTS[key] = total
    return total


# (the containers' and init containers' resources as text, non_zero) -> the pod's request
_REQUESTS: dict[tuple[str, bool], Resource] = {}
# a ResourceList's items -> its amounts
_LISTS: dict[tuple[tuple[str, type, Any], ...], Resource] = {}
_REQUESTS_CACHED = 4096


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def normalize_image(name: str) -> str:
    """One spelling per image: `:latest` when there is no tag or digest (as Kubernetes'
    ImageLocality does), and Docker Hub's implied `docker.io/` and `library/` spelled out,
    so `busybox` on a pod matches `docker.io/library/busybox:latest` in node status."""
    if "@" not in name and ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    first, slash, _ = name.partition("/")
    if not slash:
        return "docker.io/library/" + name
    if "." not in first and ":" not in first and first != "localhost":
        return "docker.io/" + name
    return name


def _image_sizes(node: Mapping[str, Any]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for image in (node.get("status") or {}).get("images") or ():
        size = int(image.get("sizeBytes") or 0)
        for n in image.get("names") or ():
            sizes[normalize_image(str(n))] = size
    return sizes


def _plus_pod(total: Resource, request: Resource) -> Resource:
    """TOTAL + REQUEST + one pod (Resource.__add__ without copying an empty scalar map)."""
    if request.scalar:
        total = total + Resource(scalar=request.scalar)
    return Resource(total.milli_cpu + request.milli_cpu, total.memory + request.memory,
                    total.pods + request.pods + 1, total.scalar)


@dataclass(frozen=True)
class NodeInfo:
    node: Mapping[str, Any]
    pods: tuple[Mapping[str, Any], ...] = ()
    allocatable: Resource = field(default_factory=Resource)
    requested: Resource = field(default_factory=Resource)  # pods = number of pods
    non_zero_requested: Resource = field(default_factory=Resource)  # for scoring
    image_sizes: Mapping[str, int] = field(default_factory=dict)  # normalized name -> bytes
    affinity_pods: tuple[PodAffinityInfo, ...] = ()  # pods with pod (anti-)affinity
    required_anti_affinity_pods: tuple[PodAffinityInfo, ...] = ()

    # plain properties: functools.cached_property takes a lock on every read (3.11), and
    # the scheduling cycle reads these for each node it touches
    @property
    def name(self) -> str:
        return _name(self.node)

    @property
    def labels(self) -> Mapping[str, str]:
        return (self.node.get("metadata") or {}).get("labels") or {}

    @classmethod
    def from_node(cls, node: Mapping[str, Any],
                  pods: Iterable[Mapping[str, Any]] = ()) -> NodeInfo:
        """Allocatable from status.allocatable, else status.capacity (the kubelet reports
        allocatable; capacity stands in for nodes registered without it)."""
        status = node.get("status") or {}
        alloc = status.get("allocatable") or status.get("capacity")
        info = cls(node, allocatable=Resource.from_list(alloc), image_sizes=_image_sizes(node))
        for pod in pods:
            info = info.with_pod(pod)
        return info

    def with_pod(self, pod: Mapping[str, Any],
                 requests: tuple[Resource, Resource] | None = None) -> NodeInfo:
        """This node with POD bound to it. REQUESTS, when the caller knows them, are
        (pod_requests(pod), pod_requests(pod, non_zero=True))."""
        request, non_zero = requests or both_requests(pod)
        affinity, anti = self.affinity_pods, self.required_anti_affinity_pods
        if (pod.get("spec") or {}).get("affinity"):
            terms = parse_or_empty(pod)
            if terms.has_any:
                affinity = (*affinity, terms)
            if terms.required_anti:
                anti = (*anti, terms)
        return NodeInfo(self.node, (*self.pods, pod), self.allocatable,
                        _plus_pod(self.requested, request),
                        _plus_pod(self.non_zero_requested, non_zero),
                        self.image_sizes, affinity, anti)

    def without_pods(self, keys: set[str]) -> NodeInfo:
        """This node without the pods whose namespace/name is in KEYS (for preemption)."""
        base = replace(self, pods=(), requested=Resource(), non_zero_requested=Resource(),
                       affinity_pods=(), required_anti_affinity_pods=())
        for pod in self.pods:
            if pod_key(pod) not in keys:
                base = base.with_pod(pod)
        return base


class Snapshot:
    """Node infos in a fixed order (the order filters run in), with lookup by name."""

    def __init__(self, infos: Iterable[NodeInfo] = (),
                 namespaces: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self._infos = list(infos)
        self._index = {i.name: n for n, i in enumerate(self._infos)}
        if len(self._index) != len(self._infos):
            raise ValueError("two nodes with one name in a snapshot")
        self.namespaces: Mapping[str, Mapping[str, str]] = namespaces or {}
        self._image_nodes: dict[str, int] | None = None
        self._affinity_lists()
        self._reset_log()

    def _reset_log(self) -> None:
        # Change log for caches over this snapshot (fastpath.FastPath): `changes` lists the
        # indexes of nodes replaced in place since `epoch` began; a new epoch (nodes added,
        # removed or reordered, images changed, or the log grown long) means "rebuild".
        self.epoch = getattr(self, "epoch", -1) + 1
        self.changes: list[int] = []

    def _affinity_lists(self) -> None:
        self.have_pods_with_affinity = [i for i in self._infos if i.affinity_pods]
        self.have_pods_with_required_anti_affinity = [
            i for i in self._infos if i.required_anti_affinity_pods]

    @property
    def infos(self) -> Sequence[NodeInfo]:
        """The nodes in filter order (index them to sample from a rotating start)."""
        return self._infos

    def namespace_labels(self, namespace: str) -> Mapping[str, str]:
        return self.namespaces.get(namespace) or {}

    def image_nodes(self, image: str) -> int:
        """How many nodes hold IMAGE (a normalized name)."""
        if self._image_nodes is None:
            counts: dict[str, int] = {}
            for info in self._infos:
                for name in info.image_sizes:
                    counts[name] = counts.get(name, 0) + 1
            self._image_nodes = counts
        return self._image_nodes.get(image, 0)

    @classmethod
    def from_objects(cls, nodes: Iterable[Mapping[str, Any]],
                     pods: Iterable[Mapping[str, Any]] = (),
                     namespaces: Iterable[Mapping[str, Any]] = ()) -> Snapshot:
        """Pods count against the node in spec.nodeName; unbound pods, pods of unknown nodes
        and finished pods (Succeeded, Failed) hold nothing. NAMESPACES (Namespace objects)
        give the labels that namespaceSelectors match."""
        by_node: dict[str, list[Mapping[str, Any]]] = {}
        for pod in pods:
            node_name = (pod.get("spec") or {}).get("nodeName")
            phase = (pod.get("status") or {}).get("phase")
            if node_name and phase not in _TERMINAL_PHASES:
                by_node.setdefault(node_name, []).append(pod)
        labels = {_name(ns): dict((ns.get("metadata") or {}).get("labels") or {})
                  for ns in namespaces}
        return cls((NodeInfo.from_node(n, by_node.get(_name(n), ())) for n in nodes), labels)

    def get(self, name: str) -> NodeInfo | None:
        i = self._index.get(name)
        return self._infos[i] if i is not None else None

    def assume(self, pod: Mapping[str, Any], node_name: str) -> Snapshot:
        """A new snapshot in which POD is bound to NODE_NAME."""
        info = self.get(node_name)
        return self.replace(info.with_pod(pod)) if info is not None else self

    def replace(self, info: NodeInfo) -> Snapshot:
        """A new snapshot with INFO in place of the node of the same name."""
        out = Snapshot.__new__(Snapshot)
        out._infos = list(self._infos)
        out._index = dict(self._index)
        out.namespaces = self.namespaces
        out._image_nodes = self._image_nodes
        out.have_pods_with_affinity = self.have_pods_with_affinity
        out.have_pods_with_required_anti_affinity = self.have_pods_with_required_anti_affinity
        out._reset_log()
        if info.name in out._index:
            out.put(info)
        return out

    # ---- in place, for the owner of a long-lived snapshot ---------------------------

    def assume_in_place(self, pod: Mapping[str, Any], node_name: str,
                        requests: tuple[Resource, Resource] | None = None) -> None:
        """Count POD against NODE_NAME in this snapshot (a no-op for an unknown node);
        REQUESTS as NodeInfo.with_pod takes them."""
        info = self.get(node_name)
        if info is not None:
            self.put(info.with_pod(pod, requests))

    def put(self, info: NodeInfo) -> None:
        """Set INFO in place of the node of the same name, or add it at the end."""
        i = self._index.get(info.name)
        old = self._infos[i] if i is not None else None
        if i is None:
            self._index[info.name] = len(self._infos)
            self._infos.append(info)
        else:
            self._infos[i] = info
        if old is None or (old.image_sizes is not info.image_sizes
                           and old.image_sizes != info.image_sizes):
            self._image_nodes = None
            self._reset_log()
        elif i is not None and len(self.changes) <= 4 * len(self._infos) + 1024:
            self.changes.append(i)
        else:
            self._reset_log()
        if old is None or old.affinity_pods != info.affinity_pods or \
                old.required_anti_affinity_pods != info.required_anti_affinity_pods:
            self._affinity_lists()
        elif info.affinity_pods or info.required_anti_affinity_pods:
            self._affinity_lists()  # the lists hold the old NodeInfo object

    def remove(self, name: str) -> None:
        """Take the node out (O(nodes): nodes leave rarely)."""
        if name not in self._index:
            return
        self._infos = [i for i in self._infos if i.name != name]
        self._index = {i.name: n for n, i in enumerate(self._infos)}
        self._image_nodes = None
        self._affinity_lists()
        self._reset_log()

    def __iter__(self) -> Iterator[NodeInfo]:
        return iter(self._infos)

    def __len__(self) -> int:
        return len(self._infos)
