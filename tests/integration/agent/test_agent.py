"""corral-agent against the real things: etcd, a controlplane (scheduler + controllers),
corral-runtimed with real shims and CNI, and a local registry holding busybox.

The agent authenticates with a node certificate (system:node:<name>), so every call it
makes goes through the node authorizer as it would in a cluster.
"""

from __future__ import annotations

import base64
import functools
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc  # type: ignore[import-untyped]
import pytest
import yaml

from api import errors
from api.client import Client
from controlplane.apiserver.pki import ClusterPKI, node_credentials
from runtime.service.cri import api_pb2 as pb
from runtime.service.cri import api_pb2_grpc as pb_grpc
from tests.integration.runtime.service.conftest import busybox as busybox  # fixtures, one
from tests.integration.runtime.service.conftest import registry as registry  # per module
from tests.integration.runtime.service.test_runtimed import Runtimed, need_root
from tests.support import process
from tests.support.controlplane import ControlPlane
from tests.support.etcd import EtcdServer
from tests.support.registry import Registry

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
PYTHON = os.path.join(ROOT, ".venv", "bin", "python")


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdServer]:
    server = EtcdServer()
    try:
        yield server.start()
    finally:
        server.cleanup()


@pytest.fixture
def cp(etcd: EtcdServer) -> Iterator[ControlPlane]:
    with ControlPlane(etcd.endpoint, leader=True) as plane:
        yield plane


@pytest.fixture
def rtd(tag: str, leak_check: None, registry: Registry, busybox: str) -> Iterator[Runtimed]:
    need_root()
    with Runtimed(tag=tag, sandbox_image=busybox, registries=[registry.host]) as r:
        r.write_cni_conflist()
        r.start()
        # corral-runtimed, unlike containerd, does not pull its sandbox image on demand
        with grpc.insecure_channel(f"unix://{r.socket}") as channel:
            pb_grpc.ImageServiceStub(channel).PullImage(  # type: ignore[no-untyped-call]
                pb.PullImageRequest(image=pb.ImageSpec(image=busybox)), timeout=60)
        yield r


class Agent:
    """One corral-agent process with a node certificate, stopped by PID."""

    def __init__(self, cp: ControlPlane, rtd: Runtimed, node: str) -> None:
        self.node = node
        self.root = os.path.join(rtd.dir, "agent")
        os.makedirs(self.root, exist_ok=True)
        pair = node_credentials(ClusterPKI.at(os.path.join(cp.data_dir, "pki")), node)
        with open(os.path.join(cp.data_dir, "admin.conf")) as f:
            doc = yaml.safe_load(f)
        doc["users"][0]["user"] = {
            "client-certificate-data": base64.b64encode(pair.cert_pem).decode(),
            "client-key-data": base64.b64encode(pair.key_pem).decode()}
        self.config = os.path.join(self.root, "node.conf")
        with open(self.config, "w") as f:
            yaml.safe_dump(doc, f)
        self.log_path = os.path.join(self.root, "agent.log")
        self.cmd = [PYTHON, "-m", "agent.main", "--config", self.config, "--node-name", node,
                    "--runtime-socket", rtd.socket, "--root", self.root,
                    "--cgroup-parent", rtd.cgroup_parent, "--log-level", "DEBUG"]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Agent:
        self.proc = process.start(self.cmd, log_path=self.log_path, cwd=ROOT,
                                  new_session=True)
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        process.kill(self.proc, timeout=None)
        self.proc = None

    def stop(self) -> None:
        process.stop(self.proc, timeout=10, kill_timeout=None)
        self.proc = None

    def log_tail(self) -> str:
        """The last 40 lines of the agent's log, leaving out gRPC's own debug lines."""
        text = process.log_tail(self.log_path, lines=None, max_bytes=1 << 22)
        return "".join([line for line in text.splitlines(keepends=True)
                        if " DEBUG grpc" not in line and "starting attempt" not in line][-40:])


@pytest.fixture
def agent(cp: ControlPlane, rtd: Runtimed) -> Iterator[Agent]:
    a = Agent(cp, rtd, f"node-{uuid.uuid4().hex[:6]}").start()
    try:
        yield a
    finally:
        a.stop()


def until(what: str, check: Callable[[], Any], agent: Agent, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = check()
        except errors.APIError as err:
            if err.reason is not errors.Reason.NOT_FOUND:
                raise
            got = None
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last "
                                 f"{got!r}\nagent log:\n{agent.log_tail()}")
        time.sleep(0.2)


def make_pod(name: str, node: str, image: str, command: list[str], *,
             restart: str = "Always", grace: int = 30) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node, "restartPolicy": restart,
                     "terminationGracePeriodSeconds": grace,
                     "containers": [{"name": "main", "image": image,
                                     "imagePullPolicy": "IfNotPresent",
                                     "command": command}]}}


def status_of(c: Client, name: str) -> dict[str, Any]:
    return c.get("pods", name, namespace="default").get("status") or {}


def running_ready(c: Client, name: str) -> dict[str, Any] | None:
    st = status_of(c, name)
    conds = {x["type"]: x["status"] for x in st.get("conditions") or []}
    if st.get("phase") == "Running" and conds.get("Ready") == "True" and st.get("podIP"):
        return st
    return None


def test_agent_registers_runs_restarts_completes_and_deletes(
        cp: ControlPlane, rtd: Runtimed, agent: Agent, busybox: str) -> None:
    c = cp.client()
    node = until("the node to register Ready", lambda: (
        # the Node may exist a moment before its first status write
        lambda n: n if {x["type"]: x["status"] for x in (n.get("status") or {}).get(
            "conditions") or []}.get("Ready") == "True" else None)(c.get("nodes", agent.node)),
        agent)
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == agent.node
    assert node["metadata"]["labels"]["kubernetes.io/os"] == "linux"
    assert int(node["status"]["capacity"]["pods"]) == 110
    assert int(node["status"]["capacity"]["cpu"]) >= 1
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("corral")
    lease = until("the lease", lambda: c.get("leases", agent.node,
                                             namespace="corral-node-lease"), agent)
    assert lease["spec"]["leaseDurationSeconds"] == 40
    first_renew = lease["spec"]["renewTime"]
    assert len(first_renew) == len("2026-11-30T02:17:16.123456Z"), first_renew

    # a pod bound to the node runs and becomes Ready with an IP
    c.create("pods", make_pod("web", agent.node, busybox, ["sleep", "3600"], grace=5),
             namespace="default")
    st = until("web Running and Ready", lambda: running_ready(c, "web"), agent, timeout=60)
    cs = st["containerStatuses"][0]
    assert cs["ready"] is True and "running" in cs["state"] and cs["restartCount"] == 0
    assert cs["imageID"] and cs["containerID"].startswith("corral")
    assert st["podIP"].startswith(rtd_subnet_prefix(rtd)), st["podIP"]

    # a container exiting 1 under restartPolicy Always is restarted, then backed off
    c.create("pods", make_pod("crash", agent.node, busybox, ["sh", "-c", "exit 1"]),
             namespace="default")

    def backing_off() -> dict[str, Any] | None:
        cs: dict[str, Any] = (status_of(c, "crash").get("containerStatuses") or [{}])[0]
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if cs.get("restartCount", 0) >= 1 and waiting.get("reason") == "CrashLoopBackOff":
            return cs
        return None

    cs = until("crash in CrashLoopBackOff", backing_off, agent, timeout=60)
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    assert cs["lastState"]["terminated"]["reason"] == "Error"
    count = cs["restartCount"]
    until("crash restarted after its back-off", lambda: (status_of(c, "crash").get(
        "containerStatuses") or [{}])[0].get("restartCount", 0) > count, agent,
        timeout=40)

    # restartPolicy Never, exit 0: Succeeded, the container terminated Completed
    c.create("pods", make_pod("once", agent.node, busybox, ["true"], restart="Never"),
             namespace="default")
    st = until("once Succeeded", lambda: (lambda s: s if s.get("phase") == "Succeeded"
                                          else None)(status_of(c, "once")), agent)
    term = st["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (0, "Completed")

    # the lease was renewed meanwhile (every 10 s)
    until("a lease renewal", lambda: c.get("leases", agent.node, namespace=(
        "corral-node-lease"))["spec"]["renewTime"] != first_renew, agent, timeout=15)

    # graceful deletion: the container gets SIGTERM (sleep dies at once), the pod goes
    started = time.monotonic()
    c.delete("pods", "web", namespace="default")
    until("web to disappear", lambda: not _exists(c, "web"), agent, timeout=20)
    assert time.monotonic() - started < 5 + 3
    for name in ("crash", "once"):
        c.delete("pods", name, namespace="default", grace_period=1)
    until("every pod to disappear", lambda: not c.list("pods", namespace="default")[
        "items"], agent, timeout=30)
    until("every sandbox removed", lambda: not rtd.sandbox_ids(), agent, timeout=20)


def _exists(c: Client, name: str) -> bool:
    try:
        c.get("pods", name, namespace="default")
        return True
    except errors.APIError as err:
        if err.reason is errors.Reason.NOT_FOUND:
            return False
        raise


def rtd_subnet_prefix(rtd: Runtimed) -> str:
    from tests.integration.runtime.service.test_runtimed import subnet

    return subnet(rtd.tag).rsplit(".", 1)[0] + "."


def test_kill9_of_the_agent_restarts_no_container(
        cp: ControlPlane, rtd: Runtimed, agent: Agent, busybox: str) -> None:
    c = cp.client()
    for name in ("a", "b"):
        c.create("pods", make_pod(name, agent.node, busybox, ["sleep", "3600"], grace=2),
                 namespace="default")
    before = {n: until(f"{n} Running", functools.partial(running_ready, c, n), agent,
                       timeout=60) for n in ("a", "b")}
    agent.kill9()
    time.sleep(1)
    agent.start()
    time.sleep(6)  # several relists and status syncs of the new agent
    for n in ("a", "b"):
        st = until(f"{n} still Running", functools.partial(running_ready, c, n), agent)
        old, new = before[n]["containerStatuses"][0], st["containerStatuses"][0]
        assert new["containerID"] == old["containerID"]
        assert new["state"]["running"]["startedAt"] == old["state"]["running"]["startedAt"]
        assert new["restartCount"] == 0
        assert st["podIP"] == before[n]["podIP"]
    for n in ("a", "b"):
        c.delete("pods", n, namespace="default")
    until("the pods to go", lambda: not c.list("pods", namespace="default")["items"], agent)
