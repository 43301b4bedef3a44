"""The fast path: `schedule_one`'s decision for common pods without re-running every plugin
on every node each cycle. Same inputs, same Decision (node, rejected statuses, scores,
evaluated, random choice) as schedule.schedule_one; anything it does not cover falls back.

    pod ─► class key (what the plugins read: requests, images, nodeName, nodeSelector,
    │      node affinity, tolerations; None for pod (anti-)affinity or spread constraints)
    │      the snapshot holds pods with pod affinity, or is new ─► schedule_one
    ▼
    equivalence class (pods of one template share it; LRU of MAX_CLASSES)
        built once: PreFilter run for real; every one must be SKIP or node-local (the
        resources fit); PreScore run for real: SKIP, node-local (LeastAllocated,
        BalancedAllocation, ImageLocality: cached raw * weight), or TaintToleration (its
        raw must be 0 on every scored node, which normalizes to a constant)
        per node, cached: the real Filter plugins' Status, the weighted total of the real
        Score plugins; recomputed only for nodes the snapshot's change log names
    ▼
    per cycle, in C-level list operations: the first num_feasible_nodes_to_find feasible
    nodes from START (hopping over infeasible ones), max, the tied set by name rank, the
    same rng.choice as the full path ─► Decision (nodes in name order, as listed from
    etcd: max and the k-th tie read per block of BLOCK nodes its max and count, kept up to
    date for the blocks whose nodes changed, and node by node only the window's ends)

Falls back (returns schedule_one's Decision) when: the profile holds a plugin or an
extension point this module does not know; a scored node's cached score needs the full
normalization (a PreferNoSchedule taint, a score out of range); a Filter errs; no node fits
(the full path writes the message and runs preemption).
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from itertools import compress
from typing import Any

from controlplane.scheduler.framework import (
    Code,
    CycleState,
    Pod,
    Profile,
    ScoreNormalizer,
    ScorePlugin,
    Status,
)
from controlplane.scheduler.plugins.default_preemption import NODE_LOCAL_PRE_FILTERS
from controlplane.scheduler.plugins.image_locality import ImageLocality
from controlplane.scheduler.plugins.inter_pod_affinity import InterPodAffinity
from controlplane.scheduler.plugins.node_affinity import NodeAffinity
from controlplane.scheduler.plugins.node_name import NodeName
from controlplane.scheduler.plugins.node_resources_fit import NodeResourcesFit
from controlplane.scheduler.plugins.node_unschedulable import NodeUnschedulable
from controlplane.scheduler.plugins.pod_topology_spread import PodTopologySpread
from controlplane.scheduler.plugins.resource_allocation import BalancedAllocation, LeastAllocated
from controlplane.scheduler.plugins.taint_toleration import TaintToleration
from controlplane.scheduler.schedule import (
    Decision,
    num_feasible_nodes_to_find,
    run_filters,
    schedule_one,
)
from controlplane.scheduler.snapshot import NodeInfo, Snapshot

MAX_CLASSES = 128
BLOCK = 64  # nodes per block of the per-class max-score index
# Score plugins whose raw score depends on the pod and the node alone, with no normalizer.
NODE_LOCAL_SCORES: tuple[type, ...] = (LeastAllocated, BalancedAllocation, ImageLocality)
# Score plugins whose normalizer maps "every raw score 0" to one constant.
ZERO_CONSTANT_SCORES: tuple[type, ...] = (TaintToleration,)
# The plugins whose PreFilter, Filter, PreScore and Score this module can stand in for.
KNOWN_TYPES: tuple[type, ...] = (
    NodeUnschedulable, NodeName, TaintToleration, NodeAffinity, NodeResourcesFit,
    PodTopologySpread, InterPodAffinity, *NODE_LOCAL_SCORES)
INFEASIBLE = -1


def class_key(pod: Pod) -> str | None:
    """What the plugins the fast path serves read from a pod, as text; None when the pod
    has pod (anti-)affinity or topology spread constraints (they read other pods)."""
    spec = pod.get("spec") or {}
    affinity = spec.get("affinity") or {}
    if affinity.get("podAffinity") or affinity.get("podAntiAffinity") or \
            spec.get("topologySpreadConstraints"):
        return None
    return repr(([(c.get("image"), c.get("resources")) for c in spec.get("containers") or ()],
                 [(c.get("image"), c.get("resources"))
                  for c in spec.get("initContainers") or ()],
                 spec.get("nodeName"), spec.get("nodeSelector"), affinity or None,
                 spec.get("tolerations") or None))


def _unknown(profile: Profile) -> str | None:
    """The first plugin of PROFILE that the fast path cannot stand in for (None: none).
    Reserve, Permit, Bind and PostFilter run only around or after a found node: any go."""
    for plugin in [*profile.pre_filter, *profile.filter, *profile.pre_score,
                   *(p for p, _ in profile.score)]:
        if type(plugin) not in KNOWN_TYPES:
            return plugin.name
    # these read other pods; their Filter / Score without the PreFilter / PreScore that
    # sets their cycle state up would compute it lazily, per cycle
    for plugin in profile.filter:
        if isinstance(plugin, (InterPodAffinity, PodTopologySpread)) and \
                plugin not in profile.pre_filter:
            return plugin.name
    for plugin, _ in profile.score:
        if isinstance(plugin, (InterPodAffinity, PodTopologySpread)) and \
                plugin not in profile.pre_score:
            return plugin.name
    return None


class _Class:
    """One equivalence class over one snapshot epoch: per node index, the Filter status
    (None: fits) and the weighted score total (INFEASIBLE when it does not fit)."""

    def __init__(self, pod: Pod, state: CycleState, epoch: int, pos: int) -> None:
        self.pod, self.state, self.epoch, self.pos = pod, state, epoch, pos
        self.constant = 0  # the normalized weights of the all-zero normalizers
        self.scorers: list[tuple[ScorePlugin, int, int]] = []  # plugin, weight, zero slot
        self.zeros: list[tuple[ScorePlugin, int, int]] = []  # plugin, weight, value of 0
        self.zraw: list[list[int]] = []  # per zero slot, per node: the raw score
        self.pref = bytearray()  # 1: fits, and some zero-slot raw score is not 0
        self.status: list[Status | None] = []
        self.total: list[int] = []
        self.bad = bytearray()  # 1: does not fit
        self.odd = bytearray()  # 1: fits, but its score is an error: the full path says so
        self.broken = False  # a Filter erred: the full path reports it
        # per block of `block` nodes: the highest total and how many nodes have it, so a
        # window's max and its k-th tie read a few blocks, not every node; `dirty`: the
        # blocks whose nodes changed since
        self.bmax: list[int] = []
        self.bcount: list[int] = []
        self.dirty: set[int] = set()


class FastPath:
    """schedule_one with equivalence-class caches over one long-lived snapshot (the
    scheduler service's, changed in place). `hits` / `fallbacks` count the cycles."""

    def __init__(self, profile: Profile, *, max_classes: int = MAX_CLASSES,
                 block: int = BLOCK) -> None:
        self.profile = profile
        self.block = block
        self.enabled = _unknown(profile) is None
        self.max_classes = max_classes
        self.classes: OrderedDict[str, _Class | None] = OrderedDict()  # None: ineligible
        self.hits = 0
        self.fallbacks = 0
        self._snap: Snapshot | None = None
        self._epoch = -1
        self._names: list[str] = []
        self._rank: list[int] = []  # node index -> position of its name in name order
        self._by_rank: list[int] = []  # that position -> node index
        self._ordered = False  # the snapshot's nodes are in name order

    def schedule_one(self, pod: Pod, snapshot: Snapshot, rng: random.Random | None = None,
                     *, start: int = 0, percentage: int = 0) -> Decision:
        """Exactly schedule.schedule_one(pod, snapshot, profile, rng, start=, percentage=)."""
        decision = self._fast(pod, snapshot, rng, start, percentage)
        if decision is not None:
            self.hits += 1
            return decision
        self.fallbacks += 1
        return schedule_one(pod, snapshot, self.profile, rng, start=start,
                            percentage=percentage)

    # ---- the cache ---------------------------------------------------------------------

    def _fast(self, pod: Pod, snap: Snapshot, rng: random.Random | None, start: int,
              percentage: int) -> Decision | None:
        n = len(snap)
        if not self.enabled or n == 0:
            return None
        if snap is not self._snap:  # only a snapshot seen twice is long-lived enough
            self._snap, self._epoch = snap, -1
            self.classes.clear()
            return None
        key = class_key(pod)
        if key is None or (snap.have_pods_with_affinity and not self._no_pod_affinity(pod,
                                                                                     snap)):
            return None
        if self._epoch != snap.epoch:
            self._index_names(snap)
        cls = self._class(key, pod, snap)
        if cls is None or cls.broken or cls.bad.find(0) < 0:  # nothing fits
            return None
        return self._decide(cls, snap, rng, start % n,
                            num_feasible_nodes_to_find(n, percentage))

    def _no_pod_affinity(self, pod: Pod, snap: Snapshot) -> bool:
        """InterPodAffinity's PreFilter and PreScore, run for real, both SKIP for POD: no
        existing pod's terms match it. Asked for every pod while pods with terms exist
        (the answer depends on the pod's labels, which are not in its class key)."""
        state = CycleState(snap, self.profile)
        for pre in self.profile.pre_filter:
            if isinstance(pre, InterPodAffinity) and \
                    pre.pre_filter(state, pod).code is not Code.SKIP:
                return False
        for prs in self.profile.pre_score:
            if isinstance(prs, InterPodAffinity) and \
                    prs.pre_score(state, pod, ()).code is not Code.SKIP:
                return False
        return True

    def _index_names(self, snap: Snapshot) -> None:
        self._epoch = snap.epoch
        self._names = [info.name for info in snap.infos]
        self._by_rank = sorted(range(len(self._names)), key=self._names.__getitem__)
        self._ordered = self._by_rank == list(range(len(self._names)))
        self._rank = [0] * len(self._names)
        for r, i in enumerate(self._by_rank):
            self._rank[i] = r
        self.classes.clear()

    def _class(self, key: str, pod: Pod, snap: Snapshot) -> _Class | None:
        if key in self.classes:
            self.classes.move_to_end(key)
            cls = self.classes[key]
            if cls is None:
                return None
            pending = len(snap.changes) - cls.pos
            if cls.epoch == snap.epoch and pending <= len(snap) // 2:
                if pending:
                    infos = snap.infos
                    for i in set(snap.changes[cls.pos:]):
                        self._node(cls, i, infos[i])
                    cls.pos = len(snap.changes)
                return cls
        cls = self._build(pod, snap)
        self.classes[key] = cls
        while len(self.classes) > self.max_classes:
            self.classes.popitem(last=False)
        return cls

    def _build(self, pod: Pod, snap: Snapshot) -> _Class | None:
        """Run PreFilter and PreScore for real; None when they leave a plugin the per-node
        cache cannot stand in for."""
        state = CycleState(snap, self.profile)
        for pre in self.profile.pre_filter:
            status = pre.pre_filter(state, pod)
            if status.code is Code.SKIP:
                state.skip_filter.add(pre.name)
            elif not status.ok or pre.name not in NODE_LOCAL_PRE_FILTERS:
                return None
        for prs in self.profile.pre_score:
            status = prs.pre_score(state, pod, ())
            if status.code is Code.SKIP:
                state.skip_score.add(prs.name)
            elif not status.ok:
                return None
        cls = _Class(pod, state, snap.epoch, len(snap.changes))
        for plugin, weight in self.profile.score:
            if plugin.name in state.skip_score:
                continue
            if isinstance(plugin, NODE_LOCAL_SCORES) and not isinstance(plugin,
                                                                        ScoreNormalizer):
                cls.scorers.append((plugin, weight, -1))
            elif isinstance(plugin, ZERO_CONSTANT_SCORES) and isinstance(plugin,
                                                                         ScoreNormalizer):
                zeros = {"": 0}
                if not plugin.normalize_scores(state, pod, zeros).ok:
                    return None
                cls.constant += zeros[""] * weight
                cls.scorers.append((plugin, weight, len(cls.zeros)))
                cls.zeros.append((plugin, weight, zeros[""]))
            else:
                return None  # a score that depends on more than the pod and one node
        n = len(snap)
        cls.status = [None] * n
        cls.total = [INFEASIBLE] * n
        cls.bad = bytearray(n)
        cls.odd = bytearray(n)
        cls.pref = bytearray(n)
        cls.zraw = [[0] * n for _ in cls.zeros]
        for i, info in enumerate(snap.infos):
            self._node(cls, i, info)
        blocks = -(-n // self.block)
        cls.bmax, cls.bcount = [0] * blocks, [0] * blocks
        cls.dirty = set(range(blocks))
        return cls

    def _node(self, cls: _Class, i: int, info: NodeInfo) -> None:
        status = run_filters(self.profile, cls.state, cls.pod, info)
        if status.code is Code.ERROR:
            cls.broken = True
        if not status.ok:
            cls.status[i], cls.total[i] = status, INFEASIBLE
            cls.bad[i] = 1
            cls.odd[i] = cls.pref[i] = 0
            cls.dirty.add(i // self.block)
            return
        total, odd, pref = cls.constant, 0, 0
        for plugin, weight, slot in cls.scorers:
            raw, s = plugin.score(cls.state, cls.pod, info)
            if not s.ok or not 0 <= raw <= 100:
                odd = 1
            elif slot >= 0:
                cls.zraw[slot][i] = raw
                pref |= raw != 0
            else:
                total += raw * weight
        cls.status[i], cls.total[i] = None, total
        cls.bad[i], cls.odd[i], cls.pref[i] = 0, odd, pref
        cls.dirty.add(i // self.block)

    # ---- the cycle ---------------------------------------------------------------------

    def _decide(self, cls: _Class, snap: Snapshot, rng: random.Random | None, s0: int,
                to_find: int) -> Decision | None:
        n = len(cls.total)
        names, bad = self._names, cls.bad
        rejected: dict[str, Status] = {}
        if bad.find(1) < 0:
            window = min(to_find, n)
        else:  # hop over the infeasible nodes in rotated order until TO_FIND fit
            seen = 0
            window = -1
            for lo, hi, shift in ((s0, n, -s0), (0, s0, n - s0)):
                i = bad.find(1, lo, hi)
                while i >= 0:
                    q = i + shift  # rotated position
                    if q - seen >= to_find:
                        window = to_find + seen
                        break
                    rejected[names[i]] = cls.status[i]  # type: ignore[assignment]
                    seen += 1
                    i = bad.find(1, i + 1, hi)
                if window >= 0:
                    break
            if window < 0:
                window = min(n, to_find + seen)
        end = s0 + window
        segs = [(s0, end)] if end <= n else [(s0, n), (0, end - n)]
        fits = window - len(rejected)
        state = CycleState(snap, self.profile)
        state.copy_from(cls.state)
        if fits == 1:  # nothing to compare: the full path skips scoring too
            only = next(i for a, b in segs for i in range(a, b) if not bad[i])
            state.skip_score = set()
            return Decision(names[only], node_statuses=rejected, state=state,
                            evaluated=window)
        if any(cls.odd.find(1, a, b) >= 0 for a, b in segs):
            return None
        total = cls.total
        if len(segs) == 1:
            a, b = segs[0]
            vals = total[a:b]
        else:
            (a, b), (c, d) = segs
            vals = total[a:b] + total[c:d]
        scores = WindowScores(names, segs, vals, bool(rejected))
        if any(cls.pref.find(1, a, b) >= 0 for a, b in segs):
            if not self._normalize(cls, segs, vals):
                return None
        elif self._ordered:  # the totals as they are: the block index finds max and tie
            index = self._by_blocks(cls, segs, rng)
            return Decision(names[index], node_statuses=rejected, scores=scores, state=state,
                            evaluated=window)
        best = max(vals)
        count = vals.count(best)
        if self._ordered and count > 1:  # name order is index order: no sort needed
            k = rng.choice(range(count)) if rng is not None else 0
            first = segs[0][1] - segs[0][0]
            seq = vals if len(segs) == 1 else vals[first:] + vals[:first]
            off = nth(seq, best, k)
            if len(segs) == 1:
                index = segs[0][0] + off
            else:
                second = len(seq) - first
                index = off if off < second else segs[0][0] + off - second
            return Decision(names[index], node_statuses=rejected, scores=scores, state=state,
                            evaluated=window)
        rank = self._rank
        ranks = rank[a:b] if len(segs) == 1 else rank[a:b] + rank[c:d]
        if count == 1:
            tied = [ranks[vals.index(best)]]
        elif count == len(vals):
            tied = sorted(ranks)
        else:
            tied = sorted(compress(ranks, map(best.__eq__, vals)))
        pick = tied[rng.choice(range(len(tied)))] if rng is not None else tied[0]
        return Decision(names[self._by_rank[pick]], node_statuses=rejected, scores=scores,
                        state=state, evaluated=window)


    def _by_blocks(self, cls: _Class, segs: list[tuple[int, int]],
                   rng: random.Random | None) -> int:
        """The node the full path picks in the window SEGS when name order is index
        order: among the nodes with the highest total, the k-th in index order, k drawn
        as the full path draws it (rng.choice over the tied). Whole blocks are read
        through their max and count; only the window's ragged ends node by node."""
        total, size = cls.total, self.block
        bmax, bcount = cls.bmax, cls.bcount
        for blk in cls.dirty:
            members = total[blk * size:blk * size + size]
            bmax[blk] = top = max(members)
            bcount[blk] = members.count(top)
        cls.dirty.clear()
        pieces: list[tuple[int, int, list[int] | None]] = []  # lo, hi; nodes, or blocks
        for a, b in sorted(segs):  # index order: ties are broken by name rank
            first, last = -(-a // size), b // size
            if first >= last:  # within one block
                pieces.append((a, b, total[a:b]))
                continue
            if a < first * size:
                pieces.append((a, first * size, total[a:first * size]))
            pieces.append((first, last, None))
            if last * size < b:
                pieces.append((last * size, b, total[last * size:b]))
        best = max(max(bmax[lo:hi]) if part is None else max(part)
                   for lo, hi, part in pieces)
        counts = [sum(c for m, c in zip(bmax[lo:hi], bcount[lo:hi], strict=True)
                      if m == best) if part is None else part.count(best)
                  for lo, hi, part in pieces]
        count = sum(counts)
        k = rng.choice(range(count)) if rng is not None else 0  # drawn even for one tie
        for (lo, hi, part), here in zip(pieces, counts, strict=True):
            if k >= here:
                k -= here
            elif part is not None:
                return lo + nth(part, best, k)
            else:
                for blk in range(lo, hi):
                    if bmax[blk] != best:
                        continue
                    if k < bcount[blk]:
                        return blk * size + nth(total[blk * size:blk * size + size], best, k)
                    k -= bcount[blk]
        raise AssertionError("the k-th tie lies past the window")  # counts say otherwise

    def _normalize(self, cls: _Class, segs: list[tuple[int, int]], vals: list[int]) -> bool:
        """Correct VALS (the window's totals, which count every zero-slot score as if all
        were 0) for the nodes with a non-zero raw score, through the plugin's own
        normalizer over them and one 0 (which must still normalize to the constant)."""
        where: list[tuple[int, int]] = []  # node index, offset in VALS
        base = 0
        for a, b in segs:
            i = cls.pref.find(1, a, b)
            while i >= 0:
                where.append((i, base + i - a))
                i = cls.pref.find(1, i + 1, b)
            base += b - a
        names = self._names
        for slot, (plugin, weight, zero) in enumerate(cls.zeros):
            raws = {names[i]: cls.zraw[slot][i] for i, _ in where}
            raws[""] = 0  # node names are never empty
            if not isinstance(plugin, ScoreNormalizer) or \
                    not plugin.normalize_scores(cls.state, cls.pod, raws).ok or raws[""] != zero:
                return False
            for i, off in where:
                score = raws[names[i]]
                if not 0 <= score <= 100:
                    return False
                vals[off] += (score - zero) * weight
        return True


def nth(seq: list[int], value: int, k: int, chunk: int = 64) -> int:
    """The index of the K-th (from 0) occurrence of VALUE in SEQ, which holds more than K:
    counted a chunk at a time, then found by hops."""
    pos = 0
    while True:
        here = seq[pos:pos + chunk].count(value)
        if k < here:
            i = pos - 1
            for _ in range(k + 1):
                i = seq.index(value, i + 1)
            return i
        k -= here
        pos += chunk
        if pos >= len(seq):
            raise ValueError(f"nth: occurrence {k} of {value} is past the end")


class WindowScores(Mapping[str, int]):
    """The Decision's scores (node -> weighted total, the feasible nodes of the window),
    made into a dict only when read: the scheduler service never reads them."""

    def __init__(self, names: list[str], segs: list[tuple[int, int]], totals: list[int],
                 holes: bool) -> None:
        # NAMES: every node's; SEGS: the window's index ranges in it; TOTALS: the window's
        self._names, self._segs, self._totals, self._holes = names, segs, totals, holes
        self._dict: dict[str, int] | None = None

    def _get(self) -> dict[str, int]:
        if self._dict is None:
            window = [n for a, b in self._segs for n in self._names[a:b]]
            pairs = zip(window, self._totals, strict=True)
            self._dict = {k: v for k, v in pairs if v != INFEASIBLE} if self._holes \
                else dict(pairs)
        return self._dict

    def __getitem__(self, name: str) -> int:
        return self._get()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())

    def __eq__(self, other: object) -> bool:
        return self._get() == (dict(other) if isinstance(other, Mapping) else other)

    __hash__ = None  # type: ignore[assignment]  # mutable-looking, like dict

    def __repr__(self) -> str:
        return repr(self._get())


def stats(fast: FastPath) -> Mapping[str, Any]:
    """Counters for benchmarks and logs."""
    return {"hits": fast.hits, "fallbacks": fast.fallbacks, "classes": len(fast.classes)}
