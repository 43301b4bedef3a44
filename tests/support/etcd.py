"""A real etcd for tests: free 127.0.0.1 ports, a temporary data dir, stopped by PID.

::

    with EtcdServer() as etcd:          # starts /usr/bin/etcd, waits for /health
        store = EtcdStore([etcd.endpoint])
        etcd.kill(); etcd.start()       # same ports and data: "etcd came back"
    # SIGTERM, then SIGKILL after 5 s; the data dir is removed

``EtcdCluster(3)`` runs three members the same way.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import urllib.request

from tests.support import process

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EtcdServer(process.Managed):
    """One etcd member. ``cluster`` lists every member's name=peer URL for a cluster."""

    def __init__(self, *, name: str = "default", base_dir: str | None = None,
                 client_port: int | None = None, peer_port: int | None = None,
                 cluster: str | None = None) -> None:
        self.name = name
        self._own_dir = base_dir is None
        self.base_dir = base_dir or tempfile.mkdtemp(prefix="corral-etcd-")
        self.data_dir = os.path.join(self.base_dir, f"{name}.etcd")
        self.log_path = os.path.join(self.base_dir, f"{name}.log")
        self.client_port = client_port or free_port()
        self.peer_port = peer_port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.client_port}"
        self.peer_url = f"http://127.0.0.1:{self.peer_port}"
        self.cluster = cluster or f"{name}={self.peer_url}"
        self.proc: process.Process | None = None

    def command(self) -> list[str]:
        return [
            ETCD, "--name", self.name, "--data-dir", self.data_dir,
            "--listen-client-urls", self.endpoint, "--advertise-client-urls", self.endpoint,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", self.cluster, "--initial-cluster-state", "new",
            "--initial-cluster-token", f"corral-test-{os.getpid()}",
            "--log-level", "warn", "--logger", "zap",
        ]

    def spawn(self) -> None:
        """Start the process without waiting (cluster members must start together)."""
        if self.proc is not None:
            raise RuntimeError(f"etcd {self.name} is already running (pid {self.proc.pid})")
        self.proc = process.start(self.command(), log_path=self.log_path)

    def wait_ready(self, timeout: float = 20) -> None:
        if self.proc is None:
            raise RuntimeError(f"etcd {self.name}: wait_ready before spawn")
        process.wait_until_ready(self.proc, name=f"etcd {self.name}", condition="healthy",
                                 ready=self._healthy, timeout=timeout, tail=self.log_tail)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/health", timeout=1) as r:
                return bool(json.loads(r.read()).get("health") == "true")
        except OSError:
            return False

    def start(self) -> EtcdServer:
        self.spawn()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def kill(self) -> None:
        """SIGKILL, like a crash: the data dir stays, so start() brings the same etcd back."""
        if process.kill(self.proc, timeout=5):
            self.proc = None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within 5 s."""
        if process.stop(self.proc, timeout=5, kill_timeout=5):
            self.proc = None

    def cleanup(self) -> None:
        """Stop the process and remove the data (the whole base dir if this member owns it)."""
        self.stop()
        shutil.rmtree(self.base_dir if self._own_dir else self.data_dir, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        return process.log_tail(self.log_path, lines=lines)


class EtcdCluster(process.Managed):
    """N etcd members on free ports sharing one temporary base dir."""

    def __init__(self, size: int = 3) -> None:
        self.base_dir = tempfile.mkdtemp(prefix="corral-etcd-cluster-")
        peers = [(f"m{i}", free_port()) for i in range(size)]
        cluster = ",".join(f"{name}=http://127.0.0.1:{port}" for name, port in peers)
        self.members = [EtcdServer(name=name, base_dir=self.base_dir, peer_port=port,
                                   cluster=cluster) for name, port in peers]

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def start(self) -> EtcdCluster:
        try:
            for m in self.members:
                m.spawn()
            for m in self.members:
                m.wait_ready()
        except BaseException:
            self.cleanup()
            raise
        return self

    def cleanup(self) -> None:
        for m in self.members:
            m.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)
