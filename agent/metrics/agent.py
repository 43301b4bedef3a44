"""The agent's own metrics, for the agent core to observe into.

    from agent.metrics.agent import METRICS
    METRICS.observe_pod_start(seconds)      bound -> Running, per pod
    with METRICS.time_cri("RunPodSandbox"): ...   one CRI call
    METRICS.set_pod_workers(n)              live pod workers

METRICS lives on REGISTRY, the registry server.py serves (with the cAdvisor collector and
the process_* metrics of this process). Tests build their own AgentMetrics on a fresh
CollectorRegistry.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Gauge, Histogram, ProcessCollector

# Pod start: the target is p99 <= 1 s, Kubernetes' SLO 5 s; buckets resolve both.
POD_START_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0, 60.0)
# CRI calls: milliseconds (status, list) to seconds (pull, create).
CRI_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
               5.0, 10.0, 30.0)


class AgentMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.pod_start = Histogram(
            "corral_agent_pod_start_duration_seconds",
            "Time from a pod's binding to this node to all its containers running.",
            buckets=POD_START_BUCKETS, registry=registry)
        self.cri = Histogram(
            "corral_agent_cri_duration_seconds",
            "Duration of CRI calls to the runtime service, by call.",
            ["call"], buckets=CRI_BUCKETS, registry=registry)
        self.pod_workers = Gauge(
            "corral_agent_pod_workers", "Pod workers running on this agent.",
            registry=registry)

    def observe_pod_start(self, seconds: float) -> None:
        self.pod_start.observe(max(seconds, 0.0))

    def observe_cri(self, call: str, seconds: float) -> None:
        self.cri.labels(call=call).observe(max(seconds, 0.0))

    @contextmanager
    def time_cri(self, call: str) -> Iterator[None]:
        """Times the block, failed calls included (a failing runtime is slow or fast too)."""
        start = time.monotonic()
        try:
            yield
        finally:
            self.observe_cri(call, time.monotonic() - start)

    def set_pod_workers(self, n: int) -> None:
        self.pod_workers.set(n)


REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
METRICS = AgentMetrics(REGISTRY)
