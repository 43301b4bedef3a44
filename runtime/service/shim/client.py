"""The daemon's side of a shim: launch one detached, and call it over its socket.

`launch` writes shim.json into the task's state dir, starts the shim with a pipe it
reports readiness on ("ok <init pid>" or "error <message>"), and returns once the runtime
has created the container. `ShimClient.call` opens one connection per call, so calls from
several threads never share a socket; "wait" and "exec" simply take longer to answer.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
from typing import Any

from runtime.service.shim import protocol as P

MAIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "main.py")
SUN_PATH_MAX = 107


class ShimError(Exception):
    """The shim answered with an error (the runtime failed, a bad request)."""


class ShimGone(ShimError):
    """No shim listens on the task's socket (it exited or was killed)."""


def shim_command(state_dir: str, ready_fd: int, *, python: str | None = None) -> list[str]:
    """The command line of a shim: an isolated interpreter without site-packages."""
    return [python or sys.executable, "-I", "-S", MAIN, state_dir, str(ready_fd)]


def launch(*, state_dir: str, spec: dict[str, Any], python: str | None = None,
           timeout: float = 60.0) -> int:
    """Start the shim of the task in STATE_DIR; returns the container's init pid."""
    with open(os.path.join(state_dir, P.SPEC), "w") as f:
        json.dump(spec, f)
    r, w = os.pipe()
    try:
        with open(os.devnull, "rb") as null, \
                open(os.path.join(state_dir, P.LOG), "ab") as log:
            proc = subprocess.Popen(shim_command(state_dir, w, python=python), stdin=null,
                                    stdout=log, stderr=log, pass_fds=(w,), cwd="/",
                                    close_fds=True)
    except BaseException:
        os.close(r)
        raise
    finally:
        os.close(w)
    with os.fdopen(r, "rb") as ready:
        line = ready.read().decode(errors="replace").strip()  # EOF when the shim is ready
    proc.wait(timeout)  # the shim's first process exits at once (double fork)
    if line.startswith("ok "):
        return int(line[3:])
    if line.startswith("error "):
        raise ShimError(line[6:])
    log_tail = _tail(os.path.join(state_dir, P.LOG))
    raise ShimError(f"shim exited before it was ready: {log_tail or 'no output'}")


def _tail(path: str, limit: int = 2000) -> str:
    try:
        with open(path, "rb") as f:
            return f.read()[-limit:].decode(errors="replace").strip()
    except OSError:
        return ""


class ShimClient:
    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir

    def _connect(self, timeout: float | None) -> socket.socket:
        path = os.path.join(self.state_dir, P.SOCKET)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.settimeout(timeout)
        dirfd = -1
        try:
            if len(path.encode()) > SUN_PATH_MAX:  # reach the socket through its directory
                dirfd = os.open(self.state_dir, os.O_PATH | os.O_CLOEXEC)
                path = f"/proc/self/fd/{dirfd}/{P.SOCKET}"
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as e:
            sock.close()
            raise ShimGone(f"no shim at {self.state_dir}: {e.strerror}") from None
        except BaseException:
            sock.close()
            raise
        finally:
            if dirfd >= 0:
                os.close(dirfd)
        return sock

    def call(self, op: str, *, timeout: float | None = 30.0, **args: Any) -> dict[str, Any]:
        """Send one request and return the reply; timeout None waits as long as it takes."""
        with self._connect(timeout) as sock:
            decoder = P.Decoder()
            sent = False
            while True:
                try:
                    if not sent:
                        sock.sendall(P.encode({"op": op, **args}))
                        sent = True
                    data = sock.recv(65536)
                except TimeoutError:
                    raise TimeoutError(f"shim {self.state_dir}: {op}: "
                                       f"no answer in {timeout}s") from None
                except ConnectionError as e:
                    raise ShimGone(f"shim {self.state_dir}: {e.strerror}") from None
                if not data:
                    raise ShimGone(f"shim {self.state_dir}: {op}: connection closed")
                msgs = decoder.feed(data)
                if msgs:
                    reply = msgs[0]
                    if not reply.get("ok"):
                        raise ShimError(str(reply.get("error")))
                    return reply

    def exec(self, process: dict[str, Any], *,
             timeout: float | None) -> tuple[int, bytes, bytes, bool]:
        """(exit code, stdout, stderr, timed out) of PROCESS run in the container."""
        wait = None if timeout is None else timeout + 30.0
        reply = self.call(P.OP_EXEC, timeout=wait, process=process, exec_timeout=timeout)
        return (int(reply["exit_code"]), base64.b64decode(reply["stdout"]),
                base64.b64decode(reply["stderr"]), bool(reply["timed_out"]))
