"""A real corral-controlplane process for tests, on free 127.0.0.1 ports, stopped by PID.

::

    with ControlPlane(etcd_endpoint) as cp:     # starts it, waits for /readyz
        c = cp.client()                          # api.client.Client from DATA_DIR/admin.conf
        cp.kill()                                # SIGKILL (an HA test's crash)
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request

from api import client as api_client
from tests.support import process
from tests.support.etcd import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.path.join(ROOT, ".venv", "bin", "corral-controlplane")


class ControlPlane(process.Managed):
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
        self.proc: process.Process | None = None

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
        self.proc = process.start(cmd, log_path=self.log_path)
        try:
            process.wait_until_ready(self.proc, name="corral-controlplane", condition="ready",
                                     ready=lambda: self.http("/readyz")[0] == 200,
                                     timeout=timeout, tail=self.log_tail)
        except BaseException:
            self.stop()
            raise
        return self

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
        """The log's last 3000 bytes ("" when there is none)."""
        return process.log_tail(self.log_path, lines=None, max_bytes=3000, missing="")

    def kill(self) -> None:
        """SIGKILL to its PID (an HA test's crash)."""
        process.kill(self.proc, timeout=None)
        self.proc = None

    def stop(self) -> None:
        """SIGTERM to its PID, SIGKILL after 10 s."""
        process.stop(self.proc, timeout=10, kill_timeout=None)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
