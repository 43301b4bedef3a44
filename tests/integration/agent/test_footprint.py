"""An idle node's memory: corral-agent + corral-runtimed, registered Ready, no pods.

    etcd + controlplane, a registry (the sandbox image's home)
    corral-runtimed ◄──CRI── corral-agent ──node certificate──► controlplane
    idle SETTLE seconds -> RSS of each process (/proc/PID/smaps_rollup), and the shared
    objects each has mapped (/proc/PID/maps)

The bounds hold the line bench/node_footprint.py measured (agent 58 -> 44 MB, runtimed
49 -> 45 MB) with a few MB of margin; the maps show that neither process loaded
cryptography's or websockets' native parts while idle.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from bench.node_footprint import memory, node_ready, node_unique
from tests.integration.agent.test_agent import Agent
from tests.integration.runtime.service.test_runtimed import Runtimed, need_root
from tests.support import containerd
from tests.support.controlplane import ControlPlane
from tests.support.etcd import EtcdServer
from tests.support.registry import Registry

MB = 1 << 20
SETTLE = 3.0
AGENT_MAX_MB = 50.0
RUNTIMED_MAX_MB = 49.0
NEVER_MAPPED = ("cryptography/hazmat/bindings/_rust", "websockets/speedups")


@pytest.fixture
def idle_node(tag: str, leak_check: None) -> Iterator[tuple[int, int]]:
    """(agent PID, runtimed PID) of a node that is Ready and has no pods."""
    need_root()
    etcd = EtcdServer().start()
    try:
        with Registry() as reg, ControlPlane(etcd.endpoint, leader=True) as cp:
            image = containerd.push_busybox(reg)
            with Runtimed(tag=tag, sandbox_image=image, registries=[reg.host]) as rtd:
                rtd.write_cni_conflist()
                rtd.start()
                agent = Agent(cp, rtd, f"fp-{uuid.uuid4().hex[:6]}").start()
                try:
                    node_ready(cp, agent.node)
                    time.sleep(SETTLE)
                    assert agent.proc is not None and rtd.proc is not None
                    assert agent.proc.poll() is None, agent.log_tail()
                    yield agent.proc.pid, rtd.proc.pid
                finally:
                    agent.stop()
    finally:
        etcd.cleanup()


def mapped_files(pid: int) -> set[str]:
    with open(f"/proc/{pid}/maps") as f:
        return {parts[5] for line in f if len(parts := line.split()) > 5}


def test_idle_node_stays_within_its_memory_bounds(idle_node: tuple[int, int]) -> None:
    agent, runtimed = idle_node
    agent_rss = memory([agent])[0] / MB
    runtimed_rss = memory([runtimed])[0] / MB
    assert 10 < agent_rss <= AGENT_MAX_MB, f"corral-agent: RSS {agent_rss:.1f} MB"
    assert 10 < runtimed_rss <= RUNTIMED_MAX_MB, f"corral-runtimed: RSS {runtimed_rss:.1f} MB"
    unique = node_unique([agent, runtimed]) / MB
    # pages both map (interpreter, libgrpc, libc...) are counted once: less than the sum
    assert 0 < unique < agent_rss + runtimed_rss
    for pid, name in ((agent, "corral-agent"), (runtimed, "corral-runtimed")):
        loaded = [p for p in mapped_files(pid) if any(n in p for n in NEVER_MAPPED)]
        assert not loaded, f"{name} (idle) mapped {loaded}"
