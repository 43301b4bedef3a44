"""One scheduling cycle, top to bottom: PreFilter, Filter every node, PostFilter (preemption)
when none fits, PreScore and Score the feasible ones, pick the best. Pure: it reads a
snapshot and returns a Decision; reserving, permitting and binding the decision (and undoing
the reservation on failure), evicting preemption victims and writing the pod's
status.nominatedNodeName belong to the caller.

Like kube-scheduler, Filter stops once it has found `num_feasible_nodes_to_find` nodes
(all of them under 100 nodes; 50% at 100 falling by 1% per 125 nodes to 5%, never fewer
than 100), starting where the previous cycle stopped (`start`; the Decision's `evaluated`
says how far this one went), so every node gets its turn."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from controlplane.scheduler.framework import (
    MAX_NODE_SCORE,
    MIN_NODE_SCORE,
    SUCCESS,
    Code,
    CycleState,
    Pod,
    PostFilterResult,
    Profile,
    ScoreNormalizer,
    Status,
    error,
)
from controlplane.scheduler.snapshot import NodeInfo, Snapshot

NO_NODES = "no nodes available to schedule pods"
MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_FEASIBLE_NODES_PERCENTAGE = 5
BASE_PERCENTAGE_OF_NODES_TO_SCORE = 50


def num_feasible_nodes_to_find(num_nodes: int, percentage: int = 0) -> int:
    """Kubernetes' numFeasibleNodesToFind; PERCENTAGE 0 is the adaptive default."""
    if num_nodes < MIN_FEASIBLE_NODES_TO_FIND or percentage >= 100:
        return num_nodes
    if percentage <= 0:
        percentage = max(BASE_PERCENTAGE_OF_NODES_TO_SCORE - num_nodes // 125,
                         MIN_FEASIBLE_NODES_PERCENTAGE)
    return max(num_nodes * percentage // 100, MIN_FEASIBLE_NODES_TO_FIND)


@dataclass(frozen=True)
class Decision:
    """NODE is the chosen node, or None with STATUS saying why and MESSAGE the text a user
    sees (`0/5 nodes are available: 3 Insufficient cpu, ...`). When preemption found room,
    NOMINATED names the node and VICTIMS the pods to evict there first."""

    node: str | None
    status: Status = SUCCESS
    message: str = ""
    node_statuses: dict[str, Status] = field(default_factory=dict)  # rejected nodes only
    scores: Mapping[str, int] = field(default_factory=dict)  # weighted totals, feasible nodes
    state: CycleState = field(default_factory=CycleState)
    nominated: PostFilterResult | None = None
    evaluated: int = 0  # nodes run through Filter (advance the next cycle's start by it)


def fit_message(num_nodes: int, statuses: dict[str, Status], pre_filter: str = "") -> str:
    """Kubernetes' FitError text: every reason counted over the nodes, each rendered as
    "<count> <reason>", and those strings sorted (Go's sort.Strings, byte order)."""
    msg = f"0/{num_nodes} nodes are available:"
    if pre_filter:
        return f"{msg} {pre_filter}."
    counts = Counter(r for s in statuses.values() for r in s.reasons)
    histogram = sorted(f"{n} {reason}" for reason, n in counts.items())
    return f"{msg} {', '.join(histogram)}." if histogram else msg


def _fail(status: Status, message: str, state: CycleState,
          node_statuses: dict[str, Status] | None = None,
          nominated: PostFilterResult | None = None) -> Decision:
    return Decision(None, status, message, node_statuses or {}, state=state,
                    nominated=nominated)


def run_filters(profile: Profile, state: CycleState, pod: Pod, node: NodeInfo) -> Status:
    """The first plugin that rejects the node decides (Kubernetes stops there too)."""
    skipped = state.skip_filter
    for plugin in profile.filter:
        if skipped and plugin.name in skipped:
            continue
        status = plugin.filter(state, pod, node)
        if not status.ok:
            return status
    return SUCCESS


def _score(profile: Profile, state: CycleState, pod: Pod,
           feasible: list[NodeInfo]) -> tuple[dict[str, int], Status]:
    totals = dict.fromkeys((n.name for n in feasible), 0)
    for pre in profile.pre_score:
        status = pre.pre_score(state, pod, feasible)
        if status.code is Code.SKIP:
            state.skip_score.add(pre.name)
        elif not status.ok:
            return totals, status
    for plugin, weight in profile.score:
        if plugin.name in state.skip_score:
            continue
        scores: dict[str, int] = {}
        for node in feasible:
            scores[node.name], status = plugin.score(state, pod, node)
            if not status.ok:
                return totals, status
        if isinstance(plugin, ScoreNormalizer):
            status = plugin.normalize_scores(state, pod, scores)
            if not status.ok:
                return totals, status
        for name, score in scores.items():
            if not MIN_NODE_SCORE <= score <= MAX_NODE_SCORE:
                return totals, error(plugin.name, f"score {score} for node {name} is outside "
                                     f"{MIN_NODE_SCORE}..{MAX_NODE_SCORE}")
            totals[name] += score * weight
    return totals, SUCCESS


def _select(scores: dict[str, int], rng: random.Random | None) -> str:
    best = max(scores.values())
    tied = sorted(name for name, score in scores.items() if score == best)
    return rng.choice(tied) if rng is not None else tied[0]


def schedule_one(pod: Pod, snapshot: Snapshot, profile: Profile,
                 rng: random.Random | None = None, *, start: int = 0,
                 percentage: int = 0) -> Decision:
    """Ties between the best nodes go to the first by name, or to RNG's choice (seed it for
    a repeatable spread). START: the node index Filter begins at; PERCENTAGE: of nodes to
    find feasible before scoring (0: adaptive, 100: all)."""
    state = CycleState(snapshot, profile)
    if len(snapshot) == 0:
        return _fail(Status(Code.UNSCHEDULABLE, [NO_NODES]), NO_NODES, state)

    for pre in profile.pre_filter:
        status = pre.pre_filter(state, pod)
        if status.code is Code.SKIP:
            state.skip_filter.add(pre.name)
            continue
        if status.code is Code.ERROR:
            return _fail(status, status.message(), state)
        if not status.ok:
            return _fail(status, fit_message(len(snapshot), {}, status.message()), state)

    feasible: list[NodeInfo] = []
    rejected: dict[str, Status] = {}
    infos = snapshot.infos
    total = len(infos)
    to_find = num_feasible_nodes_to_find(total, percentage)
    evaluated = 0
    for i in range(total):
        node = infos[(start + i) % total]
        evaluated += 1
        status = run_filters(profile, state, pod, node)
        if status.code is Code.ERROR:
            return _fail(status, status.message(), state)
        if status.ok:
            feasible.append(node)
            if len(feasible) >= to_find:
                break
        else:
            rejected[node.name] = status

    if not feasible:
        unresolvable = all(s.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE
                           for s in rejected.values())
        code = Code.UNSCHEDULABLE_AND_UNRESOLVABLE if unresolvable else Code.UNSCHEDULABLE
        message = fit_message(len(snapshot), rejected)
        nominated = None
        if code is Code.UNSCHEDULABLE:
            for post in profile.post_filter:
                result, post_status = post.post_filter(state, pod, rejected)
                if post_status.code is Code.ERROR:
                    return _fail(post_status, post_status.message(), state, rejected)
                if result is not None and post_status.ok:
                    nominated = result
                    break
        return _fail(Status(code, [message]), message, state, rejected, nominated)
    if len(feasible) == 1:  # nothing to compare: Kubernetes skips scoring too
        return Decision(feasible[0].name, node_statuses=rejected, state=state,
                        evaluated=evaluated)

    scores, status = _score(profile, state, pod, feasible)
    if not status.ok:
        return _fail(status, status.message(), state, rejected)
    return Decision(_select(scores, rng), node_statuses=rejected, scores=scores, state=state,
                    evaluated=evaluated)
