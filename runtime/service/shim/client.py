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
import threading
from typing import Any

from runtime.service.shim import protocol as P
from runtime.service.shim import stdio

MAIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "main.py")
FORKSERVER = os.path.join(os.path.dirname(MAIN), "forkserver.py")
SUN_PATH_MAX = 107


class ShimError(Exception):
    """The shim answered with an error (the runtime failed, a bad request)."""


class ShimGone(ShimError):
    """No shim listens on the task's socket (it exited or was killed)."""


def shim_command(state_dir: str, ready_fd: int, *, python: str | None = None) -> list[str]:
    """The command line of a shim: an isolated interpreter without site-packages."""
    return [python or sys.executable, "-I", "-S", MAIN, state_dir, str(ready_fd)]


class ForkServer:
    """The daemon's handle on shim/forkserver.py, started on first use.

    spawn() is one request and one reply over a SOCK_SEQPACKET pair, under a lock, so the
    daemon's threads take turns for the fork (about a millisecond) and then wait for their
    shims' readiness in parallel."""

    def __init__(self, python: str | None = None, *, preload: bool = True,
                 runtime_socket: str | None = None) -> None:
        self.python = python or sys.executable
        self.preload = preload  # corral-runc's modules imported once, for inproc shims
        # Where holders ask it to run corral-runc in a forked child (forkserver.py)
        self.runtime_socket = runtime_socket
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def _start(self) -> socket.socket:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        listener = None
        try:
            args = [str(theirs.fileno())]
            if self.runtime_socket:
                listener = listen_runtime_socket(self.runtime_socket)
                args += ["--runtime-listen", str(listener.fileno())]
            if not self.preload:
                args.append("--no-preload")
            self._proc = subprocess.Popen(
                [self.python, "-I", "-S", FORKSERVER, *args],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=None,
                pass_fds=(theirs.fileno(), *(() if listener is None else (listener.fileno(),))),
                cwd="/", close_fds=True)
        except BaseException:
            ours.close()
            if listener is not None and self.runtime_socket:
                _unlink(self.runtime_socket)
            raise
        finally:
            theirs.close()
            if listener is not None:
                listener.close()  # the fork server holds it now
        self._sock = ours
        return ours

    def start(self) -> None:
        """Start the server now, not on the first spawn (its runtime socket serves holders
        that a restarted daemon found running)."""
        with self._lock:
            if self._sock is None:
                self._start()

    def spawn(self, state_dir: str, ready_fd: int) -> None:
        """Fork a shim for STATE_DIR that reports readiness on READY_FD."""
        with self._lock:
            sock = self._sock or self._start()
            try:
                socket.send_fds(sock, [os.fsencode(state_dir)], [ready_fd])
                reply = sock.recv(4096)
            except OSError as e:
                self._close()
                raise ShimError(f"shim fork server: {e}") from None
            if not reply:
                self._close()
                raise ShimError("shim fork server: exited")
        if reply != b"ok":
            raise ShimError(reply.decode(errors="replace").removeprefix("error "))

    def _close(self) -> None:
        sock, proc, self._sock, self._proc = self._sock, self._proc, None, None
        if sock is not None:
            sock.close()  # the server sees EOF and exits
        if proc is not None:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def close(self) -> None:
        """Stop the server: it answers the holders' runtime calls still running first
        (waited for up to 5 s, then it is killed and those holders report an error)."""
        with self._lock:
            self._close()


def listen_runtime_socket(path: str) -> socket.socket:
    """The fork server's runtime socket at PATH: SOCK_SEQPACKET, mode 0600 (it runs the
    runtime as root for whoever connects; the server also checks the peer's uid)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    _unlink(path)  # a stale one, from a fork server killed with its daemon
    dirfd = -1
    try:
        where = path
        if len(path.encode()) > SUN_PATH_MAX:  # bind through the directory's fd
            dirfd = os.open(os.path.dirname(path) or ".", os.O_PATH | os.O_CLOEXEC)
            where = f"/proc/self/fd/{dirfd}/{os.path.basename(path)}"
        sock.bind(where)
        # not umask (process-wide, other threads create files); until the chmod the
        # server's uid check alone keeps other users out
        os.chmod(where, 0o600)
        sock.listen(64)
    except BaseException:
        sock.close()
        raise
    finally:
        if dirfd >= 0:
            os.close(dirfd)
    return sock


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def launch(*, state_dir: str, spec: dict[str, Any], python: str | None = None,
           timeout: float = 60.0, forkserver: ForkServer | None = None) -> int:
    """Start the shim of the task in STATE_DIR; returns the container's init pid.
    With FORKSERVER the shim is forked from it, else started as a fresh interpreter."""
    with open(os.path.join(state_dir, P.SPEC), "w") as f:
        f.write(json.dumps(spec))
    r, w = os.pipe()
    proc: subprocess.Popen[bytes] | None = None
    try:
        if forkserver is not None:
            forkserver.spawn(state_dir, w)
        else:
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
    if proc is not None:
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

    def attach(self, timeout: float = 30.0) -> tuple[int, bool]:
        """(fd, is a tty) of the container's stdin, received from the shim (SCM_RIGHTS):
        a pipe's write end or the pty master; the caller closes it."""
        fds: list[int] = []
        with self._connect(timeout) as sock:
            try:
                sock.sendall(P.encode({"op": P.OP_ATTACH}))
                decoder = P.Decoder()
                while True:
                    data, anc, _, _ = sock.recvmsg(65536, socket.CMSG_SPACE(16),
                                                   socket.MSG_CMSG_CLOEXEC)
                    fds += stdio.fds_of(anc)
                    if not data:
                        raise ShimGone(f"shim {self.state_dir}: attach: connection closed")
                    msgs = decoder.feed(data)
                    if msgs:
                        break
            except BaseException as e:
                for fd in fds:
                    os.close(fd)
                if isinstance(e, TimeoutError):
                    raise TimeoutError(f"shim {self.state_dir}: attach: no answer in "
                                       f"{timeout}s") from None
                if isinstance(e, ConnectionError):
                    raise ShimGone(f"shim {self.state_dir}: {e.strerror}") from None
                raise
        reply = msgs[0]
        if not reply.get("ok") or not fds:
            for fd in fds:
                os.close(fd)
            raise ShimError(str(reply.get("error") or "attach: no stdin in the reply"))
        for extra in fds[1:]:
            os.close(extra)
        return fds[0], bool(reply.get("tty"))

    def reopen_log(self) -> None:
        """Make the shim close the container's log file and open its path again."""
        self.call(P.OP_REOPEN)

    def exec(self, process: dict[str, Any], *,
             timeout: float | None) -> tuple[int, bytes, bytes, bool]:
        """(exit code, stdout, stderr, timed out) of PROCESS run in the container."""
        wait = None if timeout is None else timeout + 30.0
        reply = self.call(P.OP_EXEC, timeout=wait, process=process, exec_timeout=timeout)
        return (int(reply["exit_code"]), base64.b64decode(reply["stdout"]),
                base64.b64decode(reply["stderr"]), bool(reply["timed_out"]))
