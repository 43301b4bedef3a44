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
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from types import TracebackType

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EtcdServer:
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
        self.proc: subprocess.Popen[bytes] | None = None

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
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL)

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"etcd {self.name} exited {self.proc.returncode}: "
                                   f"{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/health", timeout=1) as r:
                    if json.loads(r.read()).get("health") == "true":
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"etcd {self.name} not healthy after {timeout} s: {self.log_tail()}")

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
        self._signal_and_reap(signal.SIGKILL, timeout=5)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within 5 s."""
        if not self._signal_and_reap(signal.SIGTERM, timeout=5):
            self._signal_and_reap(signal.SIGKILL, timeout=5)

    def _signal_and_reap(self, sig: signal.Signals, *, timeout: float) -> bool:
        proc = self.proc
        if proc is None:
            return True
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
        self.proc = None
        return True

    def cleanup(self) -> None:
        """Stop the process and remove the data (the whole base dir if this member owns it)."""
        self.stop()
        shutil.rmtree(self.base_dir if self._own_dir else self.data_dir, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> EtcdServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.cleanup()


class EtcdCluster:
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

    def __enter__(self) -> EtcdCluster:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.cleanup()
