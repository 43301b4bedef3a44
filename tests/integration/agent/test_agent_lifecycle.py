"""Volumes, env and termination in a real corral-agent on a real corral-runtimed: a
secret volume follows the Secret (--volume-refresh-period) and is read-only, fieldRef
env sees the pod IP at the first start, the API refuses a subPath out of its volume, and
a deleted pod's preStop runs, then its TERM-ignoring process lives out the grace period
and is SIGKILLed (exit 137).

Files inside the container are read through CRI ExecSync, as a user would with `exec`;
the runtime's container events give the exit."""

from __future__ import annotations

import base64
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc  # type: ignore[import-untyped]
import pytest

from api import errors
from runtime.service.cri import api_pb2 as pb
from runtime.service.cri import api_pb2_grpc as pb_grpc
from tests.integration.agent import test_agent as agent_test
from tests.integration.agent.test_agent import Agent, make_pod, running_ready, until
from tests.integration.runtime.service.test_runtimed import Runtimed
from tests.support.controlplane import ControlPlane

# the real etcd, controlplane, runtimed of test_agent.py
etcd, registry, busybox, cp, rtd = (agent_test.etcd, agent_test.registry,
                                    agent_test.busybox, agent_test.cp, agent_test.rtd)
REFRESH = 2  # --volume-refresh-period


@pytest.fixture
def agent(cp: ControlPlane, rtd: Runtimed) -> Iterator[Agent]:
    a = Agent(cp, rtd, f"node-{os.urandom(3).hex()}")
    a.cmd += ["--volume-refresh-period", str(REFRESH)]
    a.start()
    try:
        yield a
    finally:
        a.stop()


@pytest.fixture
def runtime(rtd: Runtimed) -> Iterator[Any]:
    with grpc.insecure_channel(f"unix://{rtd.socket}") as channel:
        yield pb_grpc.RuntimeServiceStub(channel)  # type: ignore[no-untyped-call]


def sh(runtime: Any, container_id: str, script: str) -> tuple[int, str]:
    reply = runtime.ExecSync(pb.ExecSyncRequest(container_id=container_id,
                                                cmd=["sh", "-c", script], timeout=5),
                             timeout=10)
    return reply.exit_code, (reply.stdout + reply.stderr).decode(errors="replace")


def secret(value: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "namespace": "default"},
            "data": {"pw": base64.b64encode(value.encode()).decode()}}


def container_id(st: dict[str, Any]) -> str:
    return str(st["containerStatuses"][0]["containerID"]).partition("://")[2]


def test_secret_volume_refresh_read_only_pod_ip_env_and_sub_path(
        cp: ControlPlane, rtd: Runtimed, agent: Agent, busybox: str, runtime: Any) -> None:
    c = cp.client()
    c.create("secrets", secret("one"), namespace="default")
    pod = make_pod("vols", agent.node, busybox, ["sleep", "3600"], grace=1)
    pod["spec"]["volumes"] = [{"name": "s", "secret": {"secretName": "s"}}]
    pod["spec"]["containers"][0].update(
        volumeMounts=[{"name": "s", "mountPath": "/etc/s"}],
        env=[{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}])

    # a subPath out of the volume is refused at create, naming the field
    bad = {**pod, "metadata": {"name": "escape", "namespace": "default"},
           "spec": {**pod["spec"], "containers": [{**pod["spec"]["containers"][0],
                    "volumeMounts": [{"name": "s", "mountPath": "/x",
                                      "subPath": "../../../../etc"}]}]}}
    with pytest.raises(errors.APIError) as e:
        c.create("pods", bad, namespace="default")
    assert "Pod escape: spec.containers[0].volumeMounts[0].subPath: must not contain '..'" \
        in str(e.value)

    c.create("pods", pod, namespace="default")
    st = until("vols Running and Ready", lambda: running_ready(c, "vols"), agent, timeout=60)
    cid = container_id(st)
    # the pod IP of the first start, before the agent wrote status.podIP
    assert sh(runtime, cid, 'echo -n "$POD_IP"') == (0, st["podIP"])
    assert sh(runtime, cid, "cat /etc/s/pw") == (0, "one")
    code, out = sh(runtime, cid, "echo x > /etc/s/pw2")
    assert code != 0 and "Read-only file system" in out, out

    current = c.get("secrets", "s", namespace="default")
    current["data"] = secret("two")["data"]
    c.update("secrets", current, namespace="default")
    changed = time.monotonic()
    until("the secret volume to follow", lambda: sh(runtime, cid, "cat /etc/s/pw") ==
          (0, "two"), agent, timeout=REFRESH + 5)
    assert time.monotonic() - changed <= REFRESH + 5

    c.delete("pods", "vols", namespace="default")
    until("vols to go", lambda: not c.list("pods", namespace="default")["items"], agent,
          timeout=20)
    until("its sandbox removed", lambda: not rtd.sandbox_ids(), agent, timeout=20)
    c.delete("secrets", "s", namespace="default")


class Exits:
    """CONTAINER_STOPPED_EVENTs of the runtime, collected in a thread."""

    def __init__(self, runtime: Any) -> None:
        self.stopped: dict[str, tuple[int, float]] = {}  # container id -> (code, seen at)
        self.stream = runtime.GetContainerEvents(pb.GetEventsRequest())
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for ev in self.stream:
                if ev.container_event_type == pb.CONTAINER_STOPPED_EVENT:
                    for cs in ev.containers_statuses:
                        if cs.id == ev.container_id:
                            self.stopped[ev.container_id] = (cs.exit_code, time.monotonic())
        except grpc.RpcError:
            pass  # cancelled

    def close(self) -> None:
        self.stream.cancel()
        self.thread.join(5)


def test_delete_runs_pre_stop_then_kills_after_the_grace(
        cp: ControlPlane, rtd: Runtimed, agent: Agent, busybox: str, runtime: Any,
        tmp_path: Any) -> None:
    c = cp.client()
    host = tmp_path / "host"
    host.mkdir()
    pod = make_pod("stubborn", agent.node, busybox, [
        "sh", "-c", "trap '' TERM; while :; do date +%s > /host/alive; sleep 0.2; done"],
        grace=30)
    pod["spec"]["volumes"] = [{"name": "host", "hostPath": {"path": str(host)}}]
    pod["spec"]["containers"][0].update(
        volumeMounts=[{"name": "host", "mountPath": "/host"}],
        lifecycle={"preStop": {"exec": {"command": ["sh", "-c", "echo bye > /host/marker"]}}})
    c.create("pods", pod, namespace="default")
    st = until("stubborn Running", lambda: running_ready(c, "stubborn"), agent, timeout=60)
    cid = container_id(st)
    exits = Exits(runtime)
    try:
        time.sleep(0.5)  # the event stream is subscribed
        deleted = time.monotonic()
        c.delete("pods", "stubborn", namespace="default", grace_period=3)
        until("the container to be killed", lambda: cid in exits.stopped, agent,
              timeout=20)
        code, at = exits.stopped[cid]
    finally:
        exits.close()
    assert (host / "marker").read_text() == "bye\n", "preStop ran"
    assert code == 137, "killed by SIGKILL: TERM was ignored"
    lived = at - deleted
    assert 2.5 <= lived <= 3 + 3, f"lived {lived:.1f} s after a delete with grace 3"
    assert os.stat(host / "alive").st_mtime >= time.time() - (time.monotonic() - deleted) \
        + 2, "the process kept running through the grace period"
    until("stubborn to go", lambda: not c.list("pods", namespace="default")["items"], agent,
          timeout=20)
    until("its sandbox removed", lambda: not rtd.sandbox_ids(), agent, timeout=20)
    with open(agent.log_path, errors="replace") as f:
        assert "Traceback" not in f.read(), agent.log_tail()
