"""The processes tests start (etcd, docker-registry, containerd, corral-controlplane): one
way to start them, wait for them and stop them.

::

    proc = process.start(cmd, log_path=log, new_session=True)   # stdout+stderr -> log
    process.wait_until_ready(proc, name="etcd m0", condition="healthy", ready=probe,
                             timeout=20, tail=lambda: process.log_tail(log))
        #  polls probe() every 50 ms:  True -> return
        #                              the process exited -> Exited(log tail)
        #                              timeout            -> NotReady(log tail)
    process.stop(proc, timeout=5)   # SIGTERM to its PID, SIGKILL after 5 s; True once reaped
    process.kill(proc)              # SIGKILL, like a crash

The caller keeps the ``Popen`` (its ``proc`` attribute) and decides what cleanup follows;
``Managed`` gives its class ``with``: start() on entry, cleanup() on exit.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Self

Process = subprocess.Popen[bytes]


class Managed:
    """What a test starts and must clean up: ``with X(...) as x`` is ``x = X(...).start()``
    and, however the block ends, ``x.cleanup()``."""

    def start(self) -> Self:
        raise NotImplementedError

    def cleanup(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.cleanup()


class Exited(RuntimeError):
    """The process ended before it was ready."""


class NotReady(TimeoutError, RuntimeError):
    """The process is running but did not get ready in time (a TimeoutError, and a
    RuntimeError as ControlPlane.start raised before)."""


def start(cmd: Sequence[str], *, log_path: str, env: Mapping[str, str] | None = None,
          cwd: str | None = None, new_session: bool = False) -> Process:
    """Start CMD with stdin from /dev/null and stdout and stderr appended to LOG_PATH."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(list(cmd), stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                env=env, cwd=cwd, start_new_session=new_session)


def wait_until_ready(proc: Process, *, name: str, condition: str, ready: Callable[[], bool],
                     timeout: float, tail: Callable[[], str], interval: float = 0.05) -> None:
    """Poll READY() until it answers True. Raises Exited when PROC ends first and NotReady
    after TIMEOUT seconds, both naming NAME and carrying TAIL() (the log's last lines)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise Exited(f"{name} exited {proc.returncode}: {tail()}")
        if ready():
            return
        if time.monotonic() >= deadline:
            raise NotReady(f"{name} not {condition} after {timeout} s: {tail()}")
        time.sleep(interval)


def stop(proc: Process | None, *, timeout: float = 5,
         kill_timeout: float | None = 5) -> bool:
    """SIGTERM to PROC's PID, then SIGKILL if it has not exited within TIMEOUT seconds.
    True once it is reaped; False if it is still there KILL_TIMEOUT s after the SIGKILL
    (None: wait as long as it takes)."""
    return _signal(proc, signal.SIGTERM, timeout) or kill(proc, timeout=kill_timeout)


def kill(proc: Process | None, *, timeout: float | None = 5) -> bool:
    """SIGKILL to PROC's PID (a crash). True once it is reaped (see stop)."""
    return _signal(proc, signal.SIGKILL, timeout)


def _signal(proc: Process | None, sig: signal.Signals, timeout: float | None) -> bool:
    """Send SIG unless PROC has exited; True once it is reaped within TIMEOUT seconds."""
    if proc is None or proc.poll() is not None:
        return True
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        return False


def log_tail(path: str, *, lines: int | None = 20, max_bytes: int = 1 << 16,
             missing: str = "(no log)") -> str:
    """The last LINES lines (all of them when None) of the last MAX_BYTES bytes of PATH;
    MISSING when it cannot be read."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - max_bytes))
            text = f.read().decode(errors="replace")
    except OSError:
        return missing
    if lines is None:
        return text
    return "".join(text.splitlines(keepends=True)[-lines:])


def alive(pid: int) -> bool:
    """PID exists and is neither a zombie nor dead (state Z or X in /proc/PID/stat; the
    command name before it may hold spaces and ')')."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            st = f.read()
    except OSError:
        return False
    return st[st.rindex(b")") + 2:][:1] not in (b"Z", b"X")
