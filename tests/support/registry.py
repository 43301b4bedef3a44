"""A real OCI registry for tests: Debian's docker-registry (distribution 2.8).

::

    with Registry() as reg:                                  # anonymous
    with Registry(htpasswd={"alice": "s3cret"}) as reg:      # Basic auth (htpasswd -Bbn)
    with TokenServer(users=...) as ts, Registry(token_server=ts) as reg:   # Bearer tokens
        reg.url   # http://127.0.0.1:PORT      reg.host  # 127.0.0.1:PORT

A free 127.0.0.1 port, a temporary dir for config, storage and log; start waits until
``/v2/`` answers (any status); stop sends SIGTERM (SIGKILL after 5 s) to its PID and
removes the dir.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request

from tests.support import process
from tests.support.etcd import free_port
from tests.support.tokenserver import TokenServer

REGISTRY = "/usr/bin/docker-registry"
HTPASSWD = shutil.which("htpasswd") or "/usr/bin/htpasswd"


class Registry(process.Managed):
    def __init__(self, *, htpasswd: dict[str, str] | None = None,
                 token_server: TokenServer | None = None, data_dir: str | None = None) -> None:
        if htpasswd and token_server:
            raise ValueError("Registry: choose htpasswd or token_server auth, not both")
        self.htpasswd = htpasswd
        self.token_server = token_server
        self.dir = tempfile.mkdtemp(prefix="corral-registry-")
        self.data_dir = data_dir or os.path.join(self.dir, "data")
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self.log_path = os.path.join(self.dir, "registry.log")
        self.proc: process.Process | None = None

    def _config(self) -> str:
        lines = [
            "version: 0.1",
            "log:",
            "  level: error",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.data_dir}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: {self.host}",
            f"  secret: {secrets.token_hex(16)}",
        ]
        if self.htpasswd:
            path = os.path.join(self.dir, "htpasswd")
            with open(path, "wb") as f:
                for user, password in self.htpasswd.items():
                    f.write(subprocess.run([HTPASSWD, "-Bbn", user, password], check=True,
                                           stdout=subprocess.PIPE).stdout.strip() + b"\n")
            lines += ["auth:", "  htpasswd:", "    realm: corral-test", f"    path: {path}"]
        elif self.token_server:
            ts = self.token_server
            cert = ts.write_rootcert(os.path.join(self.dir, "token-root.pem"))
            lines += ["auth:", "  token:", f"    realm: {ts.realm}", f"    service: {ts.service}",
                      f"    issuer: {ts.issuer}", f"    rootcertbundle: {cert}"]
        path = os.path.join(self.dir, "config.yml")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def start(self, timeout: float = 10) -> Registry:
        if not os.path.exists(REGISTRY):
            raise RuntimeError(f"{REGISTRY} is missing (Debian package docker-registry)")
        config = self._config()
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        self.proc = process.start([REGISTRY, "serve", config], log_path=self.log_path, env=env)
        try:
            process.wait_until_ready(self.proc, name="docker-registry", condition="answering",
                                     ready=self._answers, timeout=timeout, tail=self.log_tail,
                                     interval=0.02)
        except BaseException:
            self.cleanup()
            raise
        return self

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/v2/", timeout=1):
                return True
        except urllib.error.HTTPError:
            return True  # 401: up, and asking for credentials
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM to its PID, SIGKILL after 5 s."""
        proc, self.proc = self.proc, None
        process.stop(proc, timeout=5, kill_timeout=5)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        return process.log_tail(self.log_path, lines=lines)
