"""The framework (Kubernetes `pkg/scheduler/framework`): statuses, extension points as tiny
Protocols, a per-cycle scratchpad, a registry of plugin factories and a profile built from
config.

    PreFilter -> Filter (each node) -> [PostFilter if none fit] -> PreScore -> Score
    (each feasible node) -> NormalizeScore -> weighted sum -> pick

A plugin that finds a pod does not fit *returns* a `Status`; exceptions are bugs. A PreFilter
or PreScore that returns SKIP takes its plugin out of that cycle's Filter or Score.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from controlplane.scheduler.snapshot import NodeInfo, Snapshot

Pod = Mapping[str, Any]
MAX_NODE_SCORE = 100
MIN_NODE_SCORE = 0


class Code(enum.Enum):
    SUCCESS = "Success"
    UNSCHEDULABLE = "Unschedulable"  # might fit after preemption or a cluster change
    UNSCHEDULABLE_AND_UNRESOLVABLE = "UnschedulableAndUnresolvable"  # preemption won't help
    ERROR = "Error"  # a bug or bad input; the cycle aborts
    SKIP = "Skip"  # from PreFilter / PreScore: this plugin has nothing to do this cycle


@dataclass(frozen=True)
class Status:
    code: Code = Code.SUCCESS
    reasons: list[str] = field(default_factory=list)
    plugin: str = ""

    @property
    def ok(self) -> bool:
        return self.code is Code.SUCCESS

    @property
    def rejected(self) -> bool:
        return self.code in (Code.UNSCHEDULABLE, Code.UNSCHEDULABLE_AND_UNRESOLVABLE)

    def message(self) -> str:
        return ", ".join(self.reasons)


SUCCESS = Status()


def unschedulable(plugin: str, *reasons: str, unresolvable: bool = False) -> Status:
    code = Code.UNSCHEDULABLE_AND_UNRESOLVABLE if unresolvable else Code.UNSCHEDULABLE
    return Status(code, list(reasons), plugin)


def error(plugin: str, reason: str) -> Status:
    return Status(Code.ERROR, [reason], plugin)


def skip(plugin: str) -> Status:
    return Status(Code.SKIP, [], plugin)


def default_normalize(scores: dict[str, int], reverse: bool = False) -> None:
    """Kubernetes' DefaultNormalizeScore: scale so the highest is 100 (integer maths);
    REVERSE turns it around (100 - score). All zero stays zero, or becomes 100 reversed."""
    top = max(scores.values(), default=0)
    for name, value in scores.items():
        if top == 0:
            scores[name] = MAX_NODE_SCORE if reverse else value
            continue
        scaled = MAX_NODE_SCORE * value // top
        scores[name] = MAX_NODE_SCORE - scaled if reverse else scaled


class CycleState(MutableMapping[str, Any]):
    """Scratch data of one scheduling cycle, keyed by plugin-chosen names."""

    def __init__(self, snapshot: Snapshot | None = None, profile: Profile | None = None) -> None:
        self._data: dict[str, Any] = {}
        self.snapshot = snapshot  # the cluster this cycle sees (plugins that look wider)
        self.profile = profile  # the profile running the cycle (PostFilter re-runs filters)
        self.skip_filter: set[str] = set()  # plugins whose PreFilter said SKIP
        self.skip_score: set[str] = set()  # plugins whose PreScore said SKIP

    def copy_from(self, other: CycleState) -> None:
        """Take OTHER's data and skip sets (copies of them: this cycle may add to them)."""
        self._data = dict(other._data)
        self.skip_filter = set(other.skip_filter)
        self.skip_score = set(other.skip_score)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[key] = value

    def __delitem__(self, key: str) -> None:
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


# ---- extension points ------------------------------------------------------------------


@runtime_checkable
class Plugin(Protocol):
    name: str


@runtime_checkable
class PreFilterPlugin(Plugin, Protocol):
    def pre_filter(self, state: CycleState, pod: Pod) -> Status: ...


@runtime_checkable
class FilterPlugin(Plugin, Protocol):
    def filter(self, state: CycleState, pod: Pod, node: NodeInfo) -> Status: ...


@dataclass(frozen=True)
class PostFilterResult:
    """Preemption's answer: the node the pod should wait for, and the pods to evict there."""

    nominated_node: str
    victims: tuple[Mapping[str, Any], ...] = ()


@runtime_checkable
class PostFilterPlugin(Plugin, Protocol):
    """Runs when no node fits; STATUSES are the rejected nodes' filter statuses."""

    def post_filter(self, state: CycleState, pod: Pod,
                    statuses: Mapping[str, Status]) -> tuple[PostFilterResult | None, Status]:
        ...


@runtime_checkable
class PreScorePlugin(Plugin, Protocol):
    """Once per cycle, before Score, with the feasible nodes."""

    def pre_score(self, state: CycleState, pod: Pod, nodes: Sequence[NodeInfo]) -> Status: ...


@runtime_checkable
class ScorePlugin(Plugin, Protocol):
    def score(self, state: CycleState, pod: Pod, node: NodeInfo) -> tuple[int, Status]: ...


@runtime_checkable
class ScoreNormalizer(Protocol):
    """Optional on a ScorePlugin: rescale the raw scores (node name -> score) in place."""

    def normalize_scores(self, state: CycleState, pod: Pod,
                         scores: dict[str, int]) -> Status: ...


@runtime_checkable
class ReservePlugin(Plugin, Protocol):
    def reserve(self, state: CycleState, pod: Pod, node_name: str) -> Status: ...

    def unreserve(self, state: CycleState, pod: Pod, node_name: str) -> None: ...


@runtime_checkable
class PermitPlugin(Plugin, Protocol):
    def permit(self, state: CycleState, pod: Pod, node_name: str) -> Status: ...


@runtime_checkable
class BindPlugin(Plugin, Protocol):
    def bind(self, state: CycleState, pod: Pod, node_name: str) -> Status: ...


EXTENSION_POINTS: dict[str, type] = {
    "preFilter": PreFilterPlugin, "filter": FilterPlugin, "postFilter": PostFilterPlugin,
    "preScore": PreScorePlugin, "score": ScorePlugin,
    "reserve": ReservePlugin, "permit": PermitPlugin, "bind": BindPlugin,
}

# ---- registry and profile --------------------------------------------------------------

Factory = Callable[[Mapping[str, Any]], Plugin]  # plugin args -> plugin


class Registry(dict[str, Factory]):
    """Plugin name -> factory."""

    def register(self, name: str, factory: Factory) -> None:
        if name in self:
            raise ValueError(f"plugin {name!r} is already registered")
        self[name] = factory


@dataclass
class Profile:
    """The plugins of one scheduler profile, per extension point, in run order."""

    name: str = "default-scheduler"
    pre_filter: list[PreFilterPlugin] = field(default_factory=list)
    filter: list[FilterPlugin] = field(default_factory=list)
    post_filter: list[PostFilterPlugin] = field(default_factory=list)
    pre_score: list[PreScorePlugin] = field(default_factory=list)
    score: list[tuple[ScorePlugin, int]] = field(default_factory=list)  # (plugin, weight)
    reserve: list[ReservePlugin] = field(default_factory=list)
    permit: list[PermitPlugin] = field(default_factory=list)
    bind: list[BindPlugin] = field(default_factory=list)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], registry: Mapping[str, Factory]) -> Profile:
        """CONFIG: {"schedulerName": ..., "plugins": {point: [name | {"name", "weight"}]},
        "pluginConfig": {name: args}}. One instance per plugin name, shared by its points."""
        args: Mapping[str, Any] = config.get("pluginConfig") or {}
        instances: dict[str, Plugin] = {}
        profile = cls(name=str(config.get("schedulerName") or "default-scheduler"))
        for point, entries in (config.get("plugins") or {}).items():
            proto = EXTENSION_POINTS.get(point)
            if proto is None:
                raise ValueError(f"unknown extension point {point!r}; known: "
                                 f"{', '.join(EXTENSION_POINTS)}")
            for entry in entries:
                name, weight = (entry, 1) if isinstance(entry, str) else (
                    entry["name"], entry.get("weight", 1))
                if name not in registry:
                    raise ValueError(f"{point}: no plugin named {name!r}")
                if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
                    raise ValueError(f"{point}: weight of {name!r} must be a positive integer")
                if name not in instances:
                    instances[name] = registry[name](args.get(name) or {})
                plugin = instances[name]
                if not isinstance(plugin, proto):
                    raise ValueError(f"plugin {name!r} does not implement {point}")
                if point == "score":
                    profile.score.append((plugin, weight))  # type: ignore[arg-type]
                else:
                    getattr(profile, _FIELD[point]).append(plugin)
        return profile


_FIELD = {"preFilter": "pre_filter", "filter": "filter", "postFilter": "post_filter",
          "preScore": "pre_score", "reserve": "reserve",
          "permit": "permit", "bind": "bind"}
