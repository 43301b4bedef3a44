"""logs, exec and top through a real corral-controlplane (and etcd) to a stand-in node
server: a real gRPC server of corral.node.v1.Node in this process, serving mutual TLS with
a node certificate of the cluster's CA and giving canned answers. It tests the proxy, TLS
and authorization, not the agent. clusterctl's commands run as processes against it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from api import errors as e
from api.client import Client, ClientConfig, ExecEvent
from api.v1 import node_pb2 as npb
from api.v1 import node_pb2_grpc as ngrpc
from controlplane.apiserver import pki
from controlplane.apiserver.authn import user_from_certificate
from tests.support.controlplane import ControlPlane
from tests.support.etcd import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))))
VIEW_TOKEN = "view-token-0123456789"
LOG = [b"line 1\n", b"line 2\n", b"line 3\n"]


class StandInNode(ngrpc.NodeServicer):
    """Canned answers; records what the controlplane asked and who it was."""

    def __init__(self) -> None:
        self.callers: list[str] = []
        self.logs_requests: list[Any] = []
        self.exec_starts: list[Any] = []
        self.resizes: list[tuple[int, int]] = []
        self.follow_cancelled = threading.Event()
        self.exec_cancelled = threading.Event()

    def _caller(self, context: Any) -> None:
        pem = context.auth_context()["x509_pem_cert"][0]
        user = user_from_certificate(pem)
        self.callers.append(user.name)
        if "system:masters" not in user.groups:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{user.name}: not allowed")

    def Logs(self, request: Any, context: Any) -> Iterator[Any]:
        self._caller(context)
        self.logs_requests.append(request)
        lines = LOG[-request.tail_lines:] if request.HasField("tail_lines") else LOG
        if request.follow:  # a follow ends only when the caller goes: however it ends,
            # this runs (a generator suspended at a yield is never resumed after a cancel)
            context.add_callback(self.follow_cancelled.set)
        for line in lines:
            yield npb.LogChunk(data=line)
        if request.follow:
            while context.is_active():
                time.sleep(0.02)

    def Exec(self, request_iterator: Any, context: Any) -> Iterator[Any]:
        self._caller(context)
        first = next(request_iterator)
        start = first.start
        self.exec_starts.append(start)
        if list(start.command) == ["cat"]:
            exited = threading.Event()  # the exec ran to its exit (stdin_close)
            terminated = threading.Event()  # the RPC is over, however it ended

            def on_done() -> None:
                # runs when the RPC terminates, however: a cancelled call never resumes this
                # generator (it may sit at a yield until collected), so no finally would do
                terminated.set()
                if not exited.is_set():
                    self.exec_cancelled.set()

            context.add_callback(on_done)
            for item in request_iterator:
                which = item.WhichOneof("input")
                if which == "stdin":
                    yield npb.ExecOutput(stdout=item.stdin)
                elif which == "resize":
                    self.resizes.append((item.resize.width, item.resize.height))
                elif which == "stdin_close":
                    exited.set()
                    yield npb.ExecOutput(exit=npb.ExecExit(exit_code=0))
                    return
            # The requests ended without stdin_close. That is not this exec's exit: grpc's
            # sync server ends the request iterator of a *cancelled* call the same way when
            # it handles the stream's last-message event before its cancelled event (about
            # one call in eight). Like a command that does not read stdin, run on until the
            # RPC is over; on_done then tells a cancel from an exit.
            terminated.wait()
            return
        yield npb.ExecOutput(stderr=b"bye\n")
        yield npb.ExecOutput(exit=npb.ExecExit(exit_code=3, message="exited"))

    def Stats(self, request: Any, context: Any) -> Any:
        self._caller(context)
        out = npb.StatsResponse(node=npb.NodeUsage(
            cpu_nano_cores=250_000_000, memory_working_set_bytes=512 * 1024 * 1024,
            cpu_capacity_milli=2000, memory_capacity_bytes=2048 * 1024 * 1024))
        for ns, name, usage in (("default", "web", [("app", 3_000_000, 12)]),
                                ("default", "two", [("a", 1_000_000, 5), ("b", 2_500_000, 7)]),
                                ("other", "x", [("c", 9_000_000, 99)])):
            if request.namespace and ns != request.namespace:
                continue
            if request.pod and name != request.pod:
                continue
            out.pods.add(namespace=ns, name=name, containers=[npb.ContainerUsage(
                name=c, cpu_nano_cores=cpu, memory_working_set_bytes=mib * 1024 * 1024)
                for c, cpu, mib in usage])
        return out


def node_object(name: str, port: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                       "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}}


def pod(name: str, *containers: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": c, "image": "busybox:1"}
                                           for c in containers]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


class Cluster:
    def __init__(self, cp: ControlPlane, node: StandInNode, dead_port: int) -> None:
        self.cp = cp
        self.node = node
        self.dead_port = dead_port
        self.admin = cp.client()

    def client_as(self, *, token: str = "", node: str = "") -> Client:
        admin = self.cp.config()
        if token:
            return Client(ClientConfig(server=f"127.0.0.1:{self.cp.token_port}",
                                       ca_pem=admin.ca_pem, token=token))
        pair = pki.node_credentials(pki.ClusterPKI.at(os.path.join(self.cp.data_dir, "pki")),
                                    node)
        return Client(ClientConfig(server=admin.server, ca_pem=admin.ca_pem,
                                   cert_pem=pair.cert_pem, key_pem=pair.key_pem))

    def clusterctl(self, *argv: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        conf = os.path.join(self.cp.data_dir, "admin.conf")
        return subprocess.run([sys.executable, "-m", "clusterctl.main", "--config", conf,
                               *argv], cwd=ROOT, input=stdin, capture_output=True,
                              timeout=60)


def _add_node(admin: Client, name: str, port: int) -> None:
    created = admin.create("nodes", node_object(name, port))
    created["status"] = node_object(name, port)["status"]
    admin.update("nodes", created, subresource="status")


@pytest.fixture
def cluster(etcd_endpoint: str, tmp_path: Any) -> Iterator[Cluster]:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(f'{VIEW_TOKEN},alice,u1,"corral:view"\n')
    with ControlPlane(etcd_endpoint, args=("--token-file", str(tokens))) as cp:
        bundle = pki.ClusterPKI.at(os.path.join(cp.data_dir, "pki"))
        pair = pki.node_credentials(bundle, "node-1")
        with open(bundle.ca_cert, "rb") as f:
            ca_pem = f.read()
        creds = grpc.ssl_server_credentials([(pair.key_pem, pair.cert_pem)],
                                            root_certificates=ca_pem, require_client_auth=True)
        stand_in = StandInNode()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        ngrpc.add_NodeServicer_to_server(stand_in, server)
        port = server.add_secure_port("127.0.0.1:0", creds)
        server.start()
        try:
            c = Cluster(cp, stand_in, free_port())
            _add_node(c.admin, "node-1", port)
            _add_node(c.admin, "node-2", c.dead_port)  # nothing listens there
            for p, node in ((pod("web", "app"), "node-1"), (pod("two", "a", "b"), "node-1"),
                            (pod("gone", "app"), "node-2"), (pod("pending", "app"), "")):
                c.admin.create("pods", p, namespace="default")
                if node:
                    c.admin.create("pods", {"apiVersion": "v1", "kind": "Binding",
                                            "metadata": {"name": p["metadata"]["name"]},
                                            "target": {"name": node}},
                                   namespace="default", subresource="binding")
            yield c
            c.admin.close()
        finally:
            server.stop(None).wait(5)


def test_logs_are_relayed_with_options_and_the_kubelet_client_identity(
        cluster: Cluster) -> None:
    data = b"".join(cluster.admin.pod_logs("web", namespace="default", tail_lines=2,
                                           timestamps=True))
    assert data == b"line 2\nline 3\n"
    req = cluster.node.logs_requests[-1]
    assert (req.ref.namespace, req.ref.pod, req.ref.container) == ("default", "web", "app")
    assert req.timestamps and req.tail_lines == 2 and not req.HasField("since_seconds")
    assert cluster.node.callers == ["kube-apiserver-kubelet-client"]


def test_follow_streams_until_the_caller_cancels(cluster: Cluster) -> None:
    stream = cluster.admin.pod_logs("web", namespace="default", follow=True)
    got = [next(stream) for _ in LOG]
    assert got == LOG
    assert not cluster.node.follow_cancelled.is_set()
    stream.close()  # the caller goes away: the agent's stream must be cancelled too
    assert cluster.node.follow_cancelled.wait(10), "the node's Logs call was not cancelled"


def test_exec_relays_stdin_resizes_and_the_exit_code(cluster: Cluster) -> None:
    session = cluster.admin.pod_exec("web", ["cat"], namespace="default", stdin=True)
    session.send_stdin(b"hello ")
    session.resize(80, 24)
    session.send_stdin(b"world")
    session.close_stdin()
    events = list(session)
    assert b"".join(ev.data for ev in events if ev.kind == "stdout") == b"hello world"
    assert events[-1].kind == "exit" and session.exit_code == 0
    assert cluster.node.resizes == [(80, 24)]
    start = cluster.node.exec_starts[-1]
    assert (start.ref.container, list(start.command), start.stdin) == ("app", ["cat"], True)

    failing = cluster.admin.pod_exec("two", ["false"], namespace="default", container="b")
    assert [(ev.kind, ev.data, ev.exit_code) for ev in failing] == [
        ("stderr", b"bye\n", 0), ("exit", b"", 3)]
    assert (failing.exit_code, failing.message) == (3, "exited")


def test_exec_cancelled_by_the_caller_ends_on_the_node(cluster: Cluster) -> None:
    session = cluster.admin.pod_exec("web", ["cat"], namespace="default", stdin=True)
    session.send_stdin(b"ping")
    events = iter(session)
    assert next(events) == ExecEvent("stdout", b"ping")
    assert not cluster.node.exec_cancelled.is_set()
    session.cancel()  # Ctrl-C without a tty: the node's Exec must end too
    assert cluster.node.exec_cancelled.wait(10), "the node's Exec call was not cancelled"
    assert session.exit_code is None


def test_stats_are_relayed(cluster: Cluster) -> None:
    stats = cluster.admin.node_stats("node-1", namespace="default")
    assert stats.node.cpu_capacity_milli == 2000
    assert sorted(p.name for p in stats.pods) == ["two", "web"]


@pytest.mark.parametrize(("call", "reason", "message"), [
    pytest.param(lambda c: list(c.pod_logs("pending", namespace="default")),
                 e.Reason.BAD_REQUEST, "Pod default/pending: not scheduled to a node yet",
                 id="unscheduled"),
    pytest.param(lambda c: list(c.pod_logs("two", namespace="default")),
                 e.Reason.BAD_REQUEST,
                 "Pod default/two: a container name must be specified, choose one of: [a b]",
                 id="which-container"),
    pytest.param(lambda c: list(c.pod_logs("web", namespace="default", container="nope")),
                 e.Reason.BAD_REQUEST, 'container "nope" is not valid', id="bad-container"),
    pytest.param(lambda c: list(c.pod_logs("nope", namespace="default")),
                 e.Reason.NOT_FOUND, "nope", id="no-pod"),
    pytest.param(lambda c: list(c.pod_logs("gone", namespace="default")),
                 e.Reason.UNAVAILABLE, "node node-2: agent at 127.0.0.1:{dead} unreachable",
                 id="agent-down-logs"),
    pytest.param(lambda c: c.node_stats("node-2"), e.Reason.UNAVAILABLE,
                 "node node-2: agent at 127.0.0.1:{dead} unreachable", id="agent-down-stats"),
    pytest.param(lambda c: c.node_stats("node-9"), e.Reason.NOT_FOUND, "node node-9 not found",
                 id="no-node"),
])
def test_errors_name_the_object(cluster: Cluster, call: Any, reason: e.Reason,
                                message: str) -> None:
    with pytest.raises(e.APIError) as info:
        call(cluster.admin)
    assert info.value.reason is reason
    assert message.format(dead=cluster.dead_port) in info.value.message


def test_view_reads_logs_and_stats_but_cannot_exec(cluster: Cluster) -> None:
    with cluster.client_as(token=VIEW_TOKEN) as view:
        assert b"".join(view.pod_logs("web", namespace="default")) == b"".join(LOG)
        assert view.node_stats("node-1").node.cpu_nano_cores == 250_000_000
        with pytest.raises(e.APIError) as info:
            list(view.pod_exec("web", ["cat"], namespace="default"))
    assert info.value.reason is e.Reason.FORBIDDEN
    assert 'cannot create resource "pods/exec"' in info.value.message
    assert not cluster.node.exec_starts


@pytest.mark.parametrize("call", [
    pytest.param(lambda c: list(c.pod_logs("web", namespace="default")), id="logs"),
    pytest.param(lambda c: list(c.pod_exec("web", ["cat"], namespace="default")), id="exec"),
    pytest.param(lambda c: c.node_stats("node-1"), id="stats"),
])
def test_a_node_identity_is_refused(cluster: Cluster, call: Any) -> None:
    with cluster.client_as(node="node-1") as node, pytest.raises(e.APIError) as info:
        call(node)
    assert info.value.reason is e.Reason.FORBIDDEN
    assert info.value.message.startswith('user "system:node:node-1" (groups "system:nodes") '
                                         "cannot ")
    assert cluster.node.callers == []


def test_clusterctl_logs_exec_and_top(cluster: Cluster) -> None:
    out = cluster.clusterctl("logs", "web", "--tail", "1")
    assert (out.returncode, out.stdout) == (0, b"line 3\n"), out.stderr

    out = cluster.clusterctl("exec", "-i", "web", "--", "cat", stdin=b"echo me")
    assert (out.returncode, out.stdout) == (0, b"echo me"), out.stderr
    out = cluster.clusterctl("exec", "two", "-c", "a", "--", "false")
    assert out.returncode == 3
    assert out.stderr == b"bye\ncommand terminated with exit code 3: exited\n"

    out = cluster.clusterctl("top", "pods")
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().splitlines() == [
        "NAME   CPU(cores)   MEMORY(bytes)", "two    3m           12Mi",
        "web    3m           12Mi"]
    assert b"node node-2: agent at" in out.stderr  # the pod on the dead node: a warning

    out = cluster.clusterctl("top", "nodes")
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().splitlines() == [
        "NAME     CPU(cores)   CPU%        MEMORY(bytes)   MEMORY%",
        "node-1   250m         12%         512Mi           25%",
        "node-2   <unknown>    <unknown>   <unknown>       <unknown>"]

    out = cluster.clusterctl("logs", "pending")
    assert out.returncode == 1
    assert b"Pod default/pending: not scheduled to a node yet" in out.stderr
