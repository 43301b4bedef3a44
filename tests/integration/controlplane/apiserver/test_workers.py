"""corral-controlplane --workers N over a real etcd: N processes on one port, one /metrics
that adds them up, workers that die with the primary and come back when they die alone."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from api.client import AsyncClient
from controlplane.apiserver import workers
from tests.support.controlplane import BINARY, ControlPlane


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def cmdline(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [a.decode() for a in f.read().split(b"\0") if a]


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] in ("Z", "X")
    except OSError:
        return True


def wait_for(what: str, check: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def cp(etcd_endpoint: str) -> Iterator[ControlPlane]:
    with ControlPlane(etcd_endpoint, insecure=True, args=("--workers", "3")) as server:
        yield server


def test_workers_share_the_port_and_metrics_add_up(cp: ControlPlane) -> None:
    assert cp.proc is not None
    kids = children(cp.proc.pid)
    assert len(kids) == 2
    for kid in kids:
        args = cmdline(kid)
        assert "--worker-id" in args
        assert args[args.index("--leader-elect", len(args) - 8) + 1] == "false"
        assert args[args.index("--listen", len(args) - 8) + 1] == cp.address

    async def calls() -> int:
        client = AsyncClient(cp.config(), connections=12)
        try:
            for i in range(24):
                await client.create("configmaps", {
                    "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}"},
                    "data": {"a": "1"}}, namespace="default")
            return 24
        finally:
            await client.close()

    made = asyncio.run(calls())
    samples = os.listdir(workers.metrics_dir(cp.data_dir, cp.proc.pid))
    served_by = {f.rsplit("_", 1)[1] for f in samples if f.startswith("counter_")}
    assert len(served_by) >= 2, samples  # connections landed on more than one process
    code, text = cp.http("/metrics")
    assert code == 200
    line = 'apiserver_request_total{code="OK",resource="configmaps",verb="create"}'
    counted = [ln for ln in text.splitlines() if ln.startswith(line + " ")]
    assert counted and float(counted[0].split()[1]) == made


def test_a_worker_that_dies_is_restarted(cp: ControlPlane) -> None:
    assert cp.proc is not None
    primary = cp.proc.pid
    victim = children(primary)[0]
    os.kill(victim, signal.SIGKILL)
    wait_for("a new worker", lambda: victim not in children(primary)
             and len(children(primary)) == 2)
    wait_for("/readyz", lambda: cp.http("/readyz") == (200, "ok"))
    with cp.client() as c:
        assert c.list("configmaps", namespace="default")["items"] == []


def test_workers_end_with_a_killed_primary(cp: ControlPlane) -> None:
    assert cp.proc is not None
    kids = children(cp.proc.pid)
    cp.kill()  # SIGKILL: the primary cannot stop them itself
    wait_for(f"workers {kids} to exit", lambda: all(gone(k) for k in kids))


def test_a_port_in_use_is_refused_not_shared(cp: ControlPlane, etcd_endpoint: str,
                                             tmp_path: str) -> None:
    with socket.socket() as s:  # an ordinary server already on a port
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = subprocess.run(
            [BINARY, "--etcd-endpoints", etcd_endpoint, "--data-dir", str(tmp_path),
             "--listen", f"127.0.0.1:{port}", "--http-listen", "127.0.0.1:0", "--insecure",
             "--leader-elect", "false", "--workers", "2"],
            capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert f"--listen 127.0.0.1:{port}: address already in use" in out.stderr
