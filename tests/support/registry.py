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
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from types import TracebackType

from tests.support.etcd import free_port
from tests.support.tokenserver import TokenServer

REGISTRY = "/usr/bin/docker-registry"
HTPASSWD = shutil.which("htpasswd") or "/usr/bin/htpasswd"


class Registry:
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
        self.proc: subprocess.Popen[bytes] | None = None

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
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([REGISTRY, "serve", config], stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL, env=env)
        try:
            self._wait(timeout)
        except BaseException:
            self.cleanup()
            raise
        return self

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited {self.proc.returncode}: "
                                   f"{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/v2/", timeout=1):
                    return
            except urllib.error.HTTPError:
                return  # 401: up, and asking for credentials
            except OSError:
                time.sleep(0.02)
        raise TimeoutError(f"docker-registry not answering after {timeout} s: {self.log_tail()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.cleanup()
