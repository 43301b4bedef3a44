"""Probes in a real corral-agent on a real corral-runtimed: an exec readiness probe drives
the pod's Ready condition, a failing exec liveness probe gets the container killed and
restarted (restartCount, lastState, kubelet's events), and a deleted pod leaves nothing.

The probes' files are made and removed inside the container through CRI ExecSync, as a
user would with `exec`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc  # type: ignore[import-untyped]
import pytest

from api.client import Client
from runtime.service.cri import api_pb2 as pb
from runtime.service.cri import api_pb2_grpc as pb_grpc
from tests.integration.agent import test_agent as agent_test
from tests.integration.agent.test_agent import Agent, make_pod, status_of, until
from tests.integration.runtime.service.test_runtimed import Runtimed
from tests.support.controlplane import ControlPlane

# the real etcd, controlplane, runtimed and agent of test_agent.py
etcd, registry, busybox, cp, rtd, agent = (agent_test.etcd, agent_test.registry,
                                           agent_test.busybox, agent_test.cp, agent_test.rtd,
                                           agent_test.agent)


@pytest.fixture
def runtime(rtd: Runtimed) -> Iterator[Any]:
    with grpc.insecure_channel(f"unix://{rtd.socket}") as channel:
        yield pb_grpc.RuntimeServiceStub(channel)  # type: ignore[no-untyped-call]


def sh(runtime: Any, container_id: str, script: str) -> None:
    reply = runtime.ExecSync(pb.ExecSyncRequest(container_id=container_id,
                                                cmd=["sh", "-c", script], timeout=5),
                             timeout=10)
    assert reply.exit_code == 0, reply


def probed_pod(node: str, image: str) -> dict[str, Any]:
    pod = make_pod("probed", node, image, ["sh", "-c", "touch /tmp/healthy; exec sleep 3600"],
                   grace=1)
    pod["spec"]["containers"][0].update({
        "readinessProbe": {"exec": {"command": ["test", "-f", "/tmp/ready"]},
                           "periodSeconds": 1},
        "livenessProbe": {"exec": {"command": ["test", "-f", "/tmp/healthy"]},
                          "periodSeconds": 1, "failureThreshold": 2}})
    return pod


def conditions(st: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in st.get("conditions") or []}


def running_with(c: Client, *, ready: bool, restarts: int) -> dict[str, Any] | None:
    st = status_of(c, "probed")
    cs = (st.get("containerStatuses") or [{}])[0]
    want = "True" if ready else "False"
    if "running" in (cs.get("state") or {}) and cs.get("restartCount") == restarts and \
            cs.get("ready") is ready and conditions(st).get("Ready") == want and \
            conditions(st).get("ContainersReady") == want:
        return st
    return None


def test_readiness_and_liveness_probes_in_a_real_agent(
        cp: ControlPlane, rtd: Runtimed, agent: Agent, busybox: str, runtime: Any) -> None:
    c = cp.client()
    c.create("pods", probed_pod(agent.node, busybox), namespace="default")

    # running but not ready: the readiness file does not exist yet
    st = until("probed Running, not Ready", lambda: running_with(c, ready=False, restarts=0),
               agent, timeout=60)
    assert st["phase"] == "Running"
    first = st["containerStatuses"][0]["containerID"].partition("://")[2]

    # readiness passes once the file is there
    sh(runtime, first, "touch /tmp/ready")
    until("probed Ready", lambda: running_with(c, ready=True, restarts=0), agent, timeout=15)

    # liveness fails twice in a row: killed (grace 1 s) and restarted; the new instance
    # has a fresh filesystem, so it is not ready again
    sh(runtime, first, "rm /tmp/healthy")
    st = until("probed restarted", lambda: running_with(c, ready=False, restarts=1), agent,
               timeout=30)
    cs = st["containerStatuses"][0]
    assert cs["containerID"].partition("://")[2] != first
    assert cs["lastState"]["terminated"]["containerID"].endswith(first)
    assert cs["lastState"]["terminated"]["reason"] == "Error"
    assert cs["lastState"]["terminated"]["exitCode"] == 137  # sh ignores SIGTERM as PID 1
    events = [(e["type"], e["reason"], e["message"]) for e in c.list(
        "events", namespace="default")["items"] if e["involvedObject"]["name"] == "probed"]
    assert ("Normal", "Killing", "Container main failed liveness probe, will be restarted") \
        in events, events
    assert any(t == "Warning" and r == "Unhealthy" and m.startswith(
        "Liveness probe failed: command ['test', '-f', '/tmp/healthy'] exited 1")
        for t, r, m in events), events

    # the new instance is probed: ready once its own file exists
    sh(runtime, cs["containerID"].partition("://")[2], "touch /tmp/ready")
    until("probed Ready again", lambda: running_with(c, ready=True, restarts=1), agent,
          timeout=15)

    c.delete("pods", "probed", namespace="default")
    until("the pod to go", lambda: not c.list("pods", namespace="default")["items"], agent,
          timeout=20)
    until("its sandbox removed", lambda: not rtd.sandbox_ids(), agent, timeout=20)
    with open(agent.log_path, errors="replace") as f:
        log = f.read()
    assert "Traceback" not in log, agent.log_tail()
