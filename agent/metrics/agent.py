"""The agent's own metrics, rendered from what the agent core recorded (record.py).

    from agent.metrics.record import RECORDER        (the core: no prometheus_client)
    RECORDER.observe_pod_start(seconds)      pod first seen -> first Running status
    RECORDER.observe_cri("RunPodSandbox", s) one CRI call, failed ones included
    RECORDER.set_pod_workers(n)              live pod workers

METRICS renders RECORDER on REGISTRY, the registry server.py serves (with the cAdvisor
collector and the process_* metrics of this process): a collector, read at scrape time.
Tests build their own AgentMetrics on a fresh CollectorRegistry and Recorder.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.metrics.record import CRI_BUCKETS, POD_START_BUCKETS, RECORDER, Recorder

__all__ = ["CRI_BUCKETS", "METRICS", "POD_START_BUCKETS", "REGISTRY", "AgentMetrics"]


class AgentMetrics(Collector):
    def __init__(self, registry: CollectorRegistry, *, recorder: Recorder | None = None
                 ) -> None:
        self.recorder = recorder if recorder is not None else Recorder()
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        r = self.recorder
        start = HistogramMetricFamily(
            "corral_agent_pod_start_duration_seconds",
            "Time from the agent first seeing a pod bound to this node to its first Running "
            "status (kubelet's pod_start_duration_seconds).")
        start.add_metric([], r.pod_start.cumulative(), r.pod_start.total)
        yield start
        cri = HistogramMetricFamily(
            "corral_agent_cri_duration_seconds",
            "Duration of CRI calls to the runtime service, by call.", labels=["call"])
        for call, counts in sorted(r.cri.items()):
            cri.add_metric([call], counts.cumulative(), counts.total)
        yield cri
        yield GaugeMetricFamily("corral_agent_pod_workers",
                                "Pod workers running on this agent.", value=r.pod_workers)


REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
METRICS = AgentMetrics(REGISTRY, recorder=RECORDER)
