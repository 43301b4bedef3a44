"""The agent's node API over mutual TLS, against a real agent, corral-runtimed, shims and
CRI log files; and its plain-HTTP /healthz and /metrics.

    test client ──gRPC, mTLS (O=system:masters)──► corral-agent --listen 127.0.0.1:P
        Logs (tail, timestamps, limit, follow to the container's exit, previous after a
        restart), Stats (a busy loop's CPU, working sets), Exec (echo, exit code, stdin),
        refusals (wrong group, unknown pod or container)
    urllib ──► corral-agent --http-listen 127.0.0.1:Q   /healthz, /metrics (cAdvisor names)
    Client.pod_exec ──► corral-controlplane NodeProxy ──► the agent's Exec ──► runtimed's
        streaming session ──► the process in the container; the caller cancels: the
        process leaves the container's cgroup within the websocket close timeout +
        EXIT_GRACE + a margin (with stdin, without, with output backed up)
"""

from __future__ import annotations

import base64
import os
import socket
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import grpc  # type: ignore[import-untyped]
import pytest
import yaml

from api.client import Client
from api.v1 import node_pb2 as npb
from api.v1 import node_pb2_grpc as npb_grpc
from controlplane.apiserver.pki import ClusterPKI, KeyPair, issue, load_ca
from runtime.service.streaming import EXIT_GRACE
from tests.integration.agent import test_agent as base
from tests.integration.agent.test_agent import Agent, make_pod, running_ready, status_of, until
from tests.integration.runtime.service.test_runtimed import Runtimed
from tests.support.controlplane import ControlPlane

# the agent test's fixtures: etcd, a registry with busybox, a controlplane, corral-runtimed
etcd, registry, busybox, cp, rtd = base.etcd, base.registry, base.busybox, base.cp, base.rtd
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NodeAPIAgent(Agent):
    """An agent whose node certificate also serves (server auth, DNS SAN = node name), on
    --listen and --http-listen ports of 127.0.0.1."""

    def __init__(self, cp: ControlPlane, rtd: Runtimed, node: str) -> None:
        super().__init__(cp, rtd, node)
        self.ca = load_ca(ClusterPKI.at(os.path.join(cp.data_dir, "pki")))
        pair = issue(self.ca, common_name=f"system:node:{node}",
                     organizations=["system:nodes"], dns_names=[node], server=True,
                     client=True)
        with open(self.config) as f:
            doc = yaml.safe_load(f)
        doc["users"][0]["user"] = {
            "client-certificate-data": base64.b64encode(pair.cert_pem).decode(),
            "client-key-data": base64.b64encode(pair.key_pem).decode()}
        with open(self.config, "w") as f:
            yaml.safe_dump(doc, f)
        self.port, self.http_port = free_port(), free_port()
        self.cmd += ["--listen", f"127.0.0.1:{self.port}",
                     "--http-listen", f"127.0.0.1:{self.http_port}"]

    def channel(self, *, groups: list[str], user: str = "kube-apiserver-kubelet-client"
                ) -> grpc.Channel:
        client: KeyPair = issue(self.ca, common_name=user, organizations=groups, client=True)
        creds = grpc.ssl_channel_credentials(root_certificates=self.ca.cert_pem,
                                             private_key=client.key_pem,
                                             certificate_chain=client.cert_pem)
        return grpc.secure_channel(f"127.0.0.1:{self.port}", creds,
                                   options=[("grpc.ssl_target_name_override", self.node)])

    def http(self, path: str) -> tuple[int, str]:
        with OPENER.open(f"http://127.0.0.1:{self.http_port}{path}", timeout=10) as r:
            return int(r.status), r.read().decode()


@pytest.fixture
def agent(cp: ControlPlane, rtd: Runtimed) -> Iterator[NodeAPIAgent]:
    a = NodeAPIAgent(cp, rtd, f"node-{uuid.uuid4().hex[:6]}")
    a.start()
    try:
        yield a
    finally:
        a.stop()


def ref(pod: str, container: str = "") -> npb.ContainerRef:
    return npb.ContainerRef(namespace="default", pod=pod, container=container)


def logs(stub: npb_grpc.NodeStub, pod: str, timeout: float = 20, **kw: Any) -> bytes:
    return b"".join(c.data for c in stub.Logs(npb.LogsRequest(ref=ref(pod), **kw),
                                              timeout=timeout))


def exec_(stub: npb_grpc.NodeStub, pod: str, command: list[str], *, stdin: bytes | None = None
          ) -> tuple[bytes, bytes, list[npb.ExecExit]]:
    def inputs() -> Iterator[npb.ExecInput]:
        yield npb.ExecInput(start=npb.ExecStart(ref=ref(pod), command=command,
                                                stdin=stdin is not None))
        if stdin is not None:
            yield npb.ExecInput(stdin=stdin)
            yield npb.ExecInput(stdin_close=True)

    out, err = b"", b""
    exits: list[npb.ExecExit] = []
    for msg in stub.Exec(inputs(), timeout=30):
        assert not exits, "ExecExit must be the last message"
        kind = msg.WhichOneof("output")
        if kind == "stdout":
            out += msg.stdout
        elif kind == "stderr":
            err += msg.stderr
        else:
            exits.append(msg.exit)
    return out, err, exits


def test_node_api_logs_exec_stats_metrics(cp: ControlPlane, rtd: Runtimed,
                                          agent: NodeAPIAgent, busybox: str) -> None:
    c = cp.client()
    talker = ["sh", "-c", "echo one; echo two; echo three; sleep 0.5; echo warn >&2; "
              "while :; do :; done"]
    crasher = ["sh", "-c", "echo run; sleep 2; echo bye >&2; exit 3"]
    c.create("pods", make_pod("talker", agent.node, busybox, talker, grace=1),
             namespace="default")
    c.create("pods", make_pod("crasher", agent.node, busybox, crasher, grace=1),
             namespace="default")
    until("talker Running", lambda: running_ready(c, "talker"), agent, timeout=60)
    ok = agent.channel(groups=["system:masters"])
    stub = npb_grpc.NodeStub(ok)  # type: ignore[no-untyped-call]
    try:
        # ---- logs: all, tail + timestamps, limit, since
        until("talker's four lines", lambda: logs(stub, "talker").count(b"\n") == 4, agent)
        assert logs(stub, "talker") == b"one\ntwo\nthree\nwarn\n"
        tail = logs(stub, "talker", tail_lines=2, timestamps=True).decode().splitlines()
        assert [ln.split(" ", 1)[1] for ln in tail] == ["three", "warn"]
        assert all(ln.split(" ", 1)[0].endswith("Z") for ln in tail), tail
        assert logs(stub, "talker", limit_bytes=6) == b"one\ntw"
        assert logs(stub, "talker", since_seconds=3600).startswith(b"one\n")

        # ---- logs --previous after a restart; follow ends when the container exits
        def restarted() -> bool:
            cs = (status_of(c, "crasher").get("containerStatuses") or [{}])[0]
            return bool(cs.get("restartCount", 0) >= 1 and "running" in cs.get("state", {}))

        until("crasher restarted once and running", restarted, agent, timeout=60)
        previous = logs(stub, "crasher", previous=True)
        assert sorted(previous.splitlines()) == [b"bye", b"run"], previous
        started = time.monotonic()
        followed = logs(stub, "crasher", follow=True, timeout=30)
        assert followed.startswith(b"run\n"), followed
        assert followed.endswith(b"bye\n"), "follow sends the last words, then ends"
        assert time.monotonic() - started < 10

        # ---- errors name the pod and container; a wrong group is refused
        with pytest.raises(grpc.RpcError) as err:
            logs(stub, "nope")
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert f"pod default/nope: not found on node {agent.node}" in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            b"".join(x.data for x in stub.Logs(npb.LogsRequest(ref=ref("talker", "app"))))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert 'pod default/talker: container "app" not found' in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            logs(stub, "talker", previous=True)
        assert 'container "main": no previous instance' in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            logs(stub, "talker", tail_lines=-1)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "tail_lines: must be >= 0, got -1" in err.value.details()
        with agent.channel(groups=["system:nodes"], user="system:node:other") as bad:
            with pytest.raises(grpc.RpcError) as err:
                npb_grpc.NodeStub(bad).Stats(  # type: ignore[no-untyped-call]
                    npb.StatsRequest(), timeout=10)
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "system:node:other" in err.value.details()
            assert "system:masters" in err.value.details()

        # ---- stats: the busy loop uses CPU; working sets; the node
        st = stub.Stats(npb.StatsRequest(namespace="default", pod="talker"), timeout=20)
        assert [p.name for p in st.pods] == ["talker"]
        (usage,) = st.pods[0].containers
        assert usage.name == "main"
        assert usage.cpu_nano_cores > 100_000_000, usage  # a busy loop: well over 0.1 core
        assert usage.memory_working_set_bytes > 0
        assert st.window_nanos > 0 and st.timestamp_unix_nano > 0
        assert st.node.cpu_capacity_milli >= 1000 and st.node.memory_capacity_bytes > 0
        assert st.node.cpu_nano_cores >= 100_000_000
        assert 0 < st.node.memory_working_set_bytes < st.node.memory_capacity_bytes
        every = stub.Stats(npb.StatsRequest(), timeout=20)
        assert {p.name for p in every.pods} == {"talker", "crasher"}

        # ---- exec: output, exit codes, stdin
        out, errout, exits = exec_(stub, "talker", ["echo", "hello"])
        assert (out, errout) == (b"hello\n", b"")
        assert [(e.exit_code, e.message) for e in exits] == [(0, "")]
        out, errout, exits = exec_(stub, "talker", ["sh", "-c", "echo oops >&2; exit 7"])
        assert (out, errout) == (b"", b"oops\n")
        assert [e.exit_code for e in exits] == [7]
        out, _, exits = exec_(stub, "talker", ["cat"], stdin=b"fed through stdin\n")
        assert out == b"fed through stdin\n" and [e.exit_code for e in exits] == [0]
        _, _, exits = exec_(stub, "talker", ["/no/such/binary"])
        assert len(exits) == 1 and exits[0].exit_code != 0, exits

        # ---- /healthz and /metrics on --http-listen
        assert agent.http("/healthz") == (200, "ok\n")
        status, text = agent.http("/metrics")
        assert status == 200
        want = 'container_cpu_usage_seconds_total{container="main",'
        lines = [ln for ln in text.splitlines() if ln.startswith(want) and 'pod="talker"' in ln]
        assert len(lines) == 1, text[:2000]
        assert float(lines[0].rsplit(" ", 1)[1]) > 0
        assert "corral_agent_pod_workers" in text and "machine_cpu_cores" in text
    finally:
        ok.close()
        for name in ("talker", "crasher"):
            c.delete("pods", name, namespace="default", grace_period=0)
        until("the pods to go", lambda: not c.list("pods", namespace="default")["items"],
              agent, timeout=30)


# ---- a cancelled exec ends on the node ---------------------------------------------------

CGROUP_ROOT = "/sys/fs/cgroup"
# After the caller's cancel the process ends within: the agent's websocket close (at most
# WS_CLOSE_TIMEOUT, cri/stream.py's close_timeout, when the runtime is stuck in a send to it:
# the output-backlog case) + EXIT_GRACE (runtimed: stdin EOF, then SIGTERM) + a margin for
# a loaded machine. Measured: 5.1 s, 5.1 s and 7.1 s at a load average of 10 on 2 cores.
WS_CLOSE_TIMEOUT = 2.0
CANCEL_MARGIN = 5.0


def container_pids(rtd: Runtimed, container_id: str, argv: list[str]) -> list[int]:
    """PIDs in the container's cgroup (any hierarchy under the runtime's cgroup parent, v1
    or v2) whose command line is ARGV."""
    want = b"".join(a.encode() + b"\0" for a in argv)
    found: set[int] = set()
    for top in os.listdir(CGROUP_ROOT):
        base = os.path.join(CGROUP_ROOT, top) + rtd.cgroup_parent
        for d, _, _ in os.walk(base):
            if container_id not in os.path.relpath(d, base):
                continue
            try:
                with open(os.path.join(d, "cgroup.procs")) as f:
                    pids = [int(x) for x in f.read().split()]
            except OSError:
                continue
            for pid in pids:
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        if f.read() == want:
                            found.add(pid)
                except OSError:
                    continue
    return sorted(found)


def node_api_port(c: Client, node: str) -> object:
    """The node's kubelet endpoint port once its agent has reported it (the controlplane
    dials the agent there)."""
    status = c.get("nodes", node).get("status") or {}
    return ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")


@pytest.mark.parametrize(("script", "process", "stdin"), [
    pytest.param("echo started; exec sleep 300", ["sleep", "300"], True, id="stdin"),
    pytest.param("echo started; exec sleep 300", ["sleep", "300"], False, id="no-stdin"),
    # the caller reads no more: flow control holds the agent in a write when the cancel
    # comes, where grpc drops its Exec generator at a yield instead of cancelling it
    pytest.param("echo started; exec sh -c 'while :; do echo flood; done'",
                 ["sh", "-c", "while :; do echo flood; done"], False, id="output-backlog"),
])
def test_a_cancelled_exec_ends_in_the_container(cp: ControlPlane, rtd: Runtimed,
                                                agent: NodeAPIAgent, busybox: str,
                                                script: str, process: list[str],
                                                stdin: bool) -> None:
    """The whole path: api.client's pod_exec -> controlplane NodeProxy -> the agent's
    Exec -> runtimed's streaming session. The caller cancels after "started"; the agent
    must end its session, and the runtime then ends the process (stdin EOF, then SIGTERM
    after EXIT_GRACE): PROCESS leaves the container's cgroup in time, while the container
    itself runs on."""
    c = cp.client()
    c.create("pods", make_pod("sleeper", agent.node, busybox, ["sleep", "3600"], grace=1),
             namespace="default")
    session = None
    try:
        st = until("sleeper Running", lambda: running_ready(c, "sleeper"), agent, timeout=60)
        until("the node's API port", lambda: node_api_port(c, agent.node) == agent.port,
              agent)
        cid = str(st["containerStatuses"][0]["containerID"]).rpartition("://")[2]
        assert cid, st
        main = container_pids(rtd, cid, ["sleep", "3600"])
        assert len(main) == 1, f"container {cid}: its main process not in its cgroup: {main}"

        session = c.pod_exec("sleeper", ["sh", "-c", script], namespace="default",
                             stdin=stdin)
        if stdin:
            session.send_stdin(b"not read\n")  # stdin open and in use, never closed
        out = b""
        events = iter(session)
        while b"started\n" not in out:
            ev = next(events)
            assert ev.kind == "stdout", f"the exec ended early: {ev}"
            out += ev.data
        assert out.startswith(b"started\n"), out[:100]
        running = until(f"{' '.join(process)} in the container's cgroup",
                        lambda: container_pids(rtd, cid, process), agent, timeout=10)
        assert len(running) == 1, running

        session.cancel()  # Ctrl-C: the caller goes away
        cancelled = time.monotonic()
        bound = WS_CLOSE_TIMEOUT + EXIT_GRACE + CANCEL_MARGIN
        while container_pids(rtd, cid, process):
            waited = time.monotonic() - cancelled
            assert waited <= bound, (
                f"container {cid}: `{' '.join(process)}` (pid {running[0]}) still runs "
                f"{waited:.1f}s after the exec was cancelled (bound: {bound:g}s)\n"
                f"agent log:\n{agent.log_tail()}")
            time.sleep(0.1)
        assert session.exit_code is None, "a cancelled exec reports no exit code"
        assert container_pids(rtd, cid, ["sleep", "3600"]) == main, "the container runs on"
    finally:
        if session is not None:
            session.cancel()
        c.delete("pods", "sleeper", namespace="default", grace_period=0)
        until("the pod to go", lambda: not c.list("pods", namespace="default")["items"],
              agent, timeout=30)
        c.close()
