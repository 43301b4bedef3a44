"""agent.py: the agent's own metrics, observed into a fresh registry."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from prometheus_client import CollectorRegistry

from agent.metrics import agent, record

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))))


def metrics() -> tuple[CollectorRegistry, record.Recorder]:
    registry, rec = CollectorRegistry(), record.Recorder()
    agent.AgentMetrics(registry, recorder=rec)
    return registry, rec


def test_pod_start_histogram() -> None:
    registry, rec = metrics()
    for s in (0.2, 0.7, 3.0):
        rec.observe_pod_start(s)
    name = "corral_agent_pod_start_duration_seconds"
    assert registry.get_sample_value(f"{name}_count") == 3
    assert registry.get_sample_value(f"{name}_sum") == pytest.approx(3.9)
    assert registry.get_sample_value(f"{name}_bucket", {"le": "1.0"}) == 2


def test_cri_durations_by_call() -> None:
    registry, rec = metrics()
    rec.observe_cri("RunPodSandbox", 0.01)
    rec.observe_cri("PullImage", 0.5)
    rec.observe_cri("PullImage", 2.0)
    name = "corral_agent_cri_duration_seconds_count"
    assert registry.get_sample_value(name, {"call": "RunPodSandbox"}) == 1
    assert registry.get_sample_value(name, {"call": "PullImage"}) == 2
    assert registry.get_sample_value("corral_agent_cri_duration_seconds_sum",
                                     {"call": "PullImage"}) == pytest.approx(2.5)


def test_pod_workers_gauge() -> None:
    registry, rec = metrics()
    rec.set_pod_workers(7)
    assert registry.get_sample_value("corral_agent_pod_workers") == 7
    rec.set_pod_workers(3)
    assert registry.get_sample_value("corral_agent_pod_workers") == 3


def test_the_module_registry_holds_the_recorder_and_process_metrics() -> None:
    record.RECORDER.set_pod_workers(1)
    assert agent.REGISTRY.get_sample_value("corral_agent_pod_workers") == 1
    rss = agent.REGISTRY.get_sample_value("process_resident_memory_bytes")
    assert rss is not None and rss > 0


@pytest.mark.parametrize(("value", "le"), [
    pytest.param(0.05, "0.05", id="on-a-bound"),
    pytest.param(0.051, "0.1", id="just-above"),
    pytest.param(-1.0, "0.05", id="negative-as-zero"),
    pytest.param(1e9, "+Inf", id="beyond-the-last"),
])
def test_recorded_counts_land_in_the_first_bucket_that_holds_them(value: float,
                                                                  le: str) -> None:
    counts = record.Counts(record.POD_START_BUCKETS)
    counts.observe(value)
    cumulative = dict(counts.cumulative())
    first = next(k for k, n in counts.cumulative() if n)
    assert first == le and cumulative["+Inf"] == 1 and counts.count == 1


def test_the_agent_core_does_not_load_prometheus_client() -> None:
    code = ("import sys; import agent.pods, agent.worker, agent.metrics.record; "
            "print('prometheus_client' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True,
                       cwd=ROOT)
    assert p.stdout == b"False\n"
