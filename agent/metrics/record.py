"""What the agent core records for its own metrics, kept without prometheus_client.

    PodManager ── set_pod_workers(n)          on every worker started or ended
    PodWorker ─── observe_pod_start(seconds)  first Running status, from the pod first seen
    CRIClient ─── observe_cri(call, seconds)  every CRI call, failed ones too
        │  plain counters: a bisect and two adds per observation
        ▼
    agent.AgentMetrics (agent.py) renders RECORDER at scrape time

prometheus_client (2.7 MB of RSS) is imported only with the first scrape (main.py), so the
core cannot observe into its Histograms; it counts here and the collector reads the counts.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

# Pod start: the target is p99 <= 1 s, Kubernetes' SLO 5 s; buckets resolve both.
POD_START_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0, 60.0)
# CRI calls: milliseconds (status, list) to seconds (pull, create).
CRI_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
               5.0, 10.0, 30.0)


@dataclass
class Counts:
    """One histogram's observations: per bucket (not cumulative; the last is +Inf)."""

    bounds: tuple[float, ...]
    per_bucket: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if not self.per_bucket:
            self.per_bucket = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        value = max(value, 0.0)
        self.per_bucket[bisect.bisect_left(self.bounds, value)] += 1  # le: bound >= value
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """[(le, count of observations <= le)], +Inf last, as the exposition format has."""
        out, running = [], 0
        for bound, n in zip((*map(float, self.bounds), float("inf")), self.per_bucket,
                            strict=True):
            running += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out


class Recorder:
    def __init__(self) -> None:
        self.pod_start = Counts(POD_START_BUCKETS)
        self.cri: dict[str, Counts] = {}
        self.pod_workers = 0

    def observe_pod_start(self, seconds: float) -> None:
        self.pod_start.observe(seconds)

    def observe_cri(self, call: str, seconds: float) -> None:
        counts = self.cri.get(call)
        if counts is None:
            counts = self.cri[call] = Counts(CRI_BUCKETS)
        counts.observe(seconds)

    def set_pod_workers(self, n: int) -> None:
        self.pod_workers = n


RECORDER = Recorder()
