"""A real corral-controlplane process for tests, on free 127.0.0.1 ports, stopped by PID.

::

    with ControlPlane(etcd_endpoint) as cp:     # starts it, waits for /readyz
        c = cp.client()                          # api.client.Client from DATA_DIR/admin.conf
        cp.kill()                                # SIGKILL (an HA test's crash)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from types import TracebackType

from api import client as api_client
from tests.support.etcd import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.path.join(ROOT, ".venv", "bin", "corral-controlplane")


class ControlPlane:
    def __init__(self, etcd_endpoint: str, *, data_dir: str | None = None,
                 insecure: bool = False, leader: bool = False,
                 args: tuple[str, ...] = ()) -> None:
        self._own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="corral-cp-")
        self.etcd_endpoint = etcd_endpoint
        self.insecure = insecure
        self.leader = leader  # campaign, and run the scheduler and controllers when elected
        self.args = args
        self.port = free_port()
        self.http_port = free_port()
        self.token_port = free_port()
        self.log_path = os.path.join(self.data_dir, f"controlplane-{self.port}.log")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20) -> ControlPlane:
        cmd = [BINARY, "--etcd-endpoints", self.etcd_endpoint, "--data-dir", self.data_dir,
               "--listen", self.address, "--http-listen", f"127.0.0.1:{self.http_port}",
               *self.args]
        if self.insecure:
            cmd.append("--insecure")
        cmd += ["--leader-elect", "true" if self.leader else "false"]
        if "--token-file" in self.args:
            cmd += ["--token-listen", f"127.0.0.1:{self.token_port}"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"corral-controlplane exited {self.proc.returncode}: "
                                   f"{self.log_tail()}")
            if self.http("/readyz")[0] == 200:
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"corral-controlplane not ready in {timeout}s: {self.log_tail()}")

    def http(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}",
                                        timeout=3) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()
        except (OSError, urllib.error.URLError):
            return 0, ""

    def config(self) -> api_client.ClientConfig:
        if self.insecure:
            return api_client.ClientConfig(server=self.address, insecure=True)
        return api_client.load_config(os.path.join(self.data_dir, "admin.conf"))

    def client(self) -> api_client.Client:
        return api_client.Client(self.config())

    def log_tail(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-3000:].decode(errors="replace")
        except OSError:
            return ""

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.cleanup()
