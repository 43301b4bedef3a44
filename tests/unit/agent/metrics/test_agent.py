"""agent.py: the agent's own metrics, observed into a fresh registry."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from agent.metrics import agent


def test_pod_start_histogram() -> None:
    registry = CollectorRegistry()
    m = agent.AgentMetrics(registry)
    for s in (0.2, 0.7, 3.0):
        m.observe_pod_start(s)
    name = "corral_agent_pod_start_duration_seconds"
    assert registry.get_sample_value(f"{name}_count") == 3
    assert registry.get_sample_value(f"{name}_sum") == pytest.approx(3.9)
    assert registry.get_sample_value(f"{name}_bucket", {"le": "1.0"}) == 2


def test_cri_durations_by_call_including_failures() -> None:
    registry = CollectorRegistry()
    m = agent.AgentMetrics(registry)
    with m.time_cri("RunPodSandbox"):
        pass
    with pytest.raises(RuntimeError), m.time_cri("PullImage"):
        raise RuntimeError("registry down")
    m.observe_cri("PullImage", 2.0)
    name = "corral_agent_cri_duration_seconds_count"
    assert registry.get_sample_value(name, {"call": "RunPodSandbox"}) == 1
    assert registry.get_sample_value(name, {"call": "PullImage"}) == 2
    total = registry.get_sample_value("corral_agent_cri_duration_seconds_sum",
                                      {"call": "PullImage"})
    assert total is not None and total >= 2.0


def test_pod_workers_gauge() -> None:
    registry = CollectorRegistry()
    m = agent.AgentMetrics(registry)
    m.set_pod_workers(7)
    assert registry.get_sample_value("corral_agent_pod_workers") == 7
    m.set_pod_workers(3)
    assert registry.get_sample_value("corral_agent_pod_workers") == 3


def test_the_module_registry_holds_the_agent_and_process_metrics() -> None:
    agent.METRICS.set_pod_workers(1)
    assert agent.REGISTRY.get_sample_value("corral_agent_pod_workers") == 1
    rss = agent.REGISTRY.get_sample_value("process_resident_memory_bytes")
    assert rss is not None and rss > 0
