"""Exec sessions in the Python shim: a process run in the running container, its output
collected and returned in the one reply (CRI ExecSync).

    "exec" {process, exec_timeout}      main.Shim.handle
      start(shim, conn, req)            process.json written, `runtime exec --detach
        │                               --process F --pid-file P ID` with stdout/stderr
        │                               pipes; Exec(conn, pid, pipes, deadline) kept in
        │                               shim.execs (by pid) and shim.exec_fds (by pipe)
        ├─ read(shim, fd)               each pipe read as the poll loop finds it readable,
        │                               up to EXEC_OUTPUT_MAX bytes kept per stream
        ├─ expire(shim)                 each loop turn: SIGKILL what passed its deadline
        │                               (timed_out), the poll timeout to the next one
        └─ exited(shim, ex, status)     reaped: what is left in the pipes read, the pipes
                                        closed (a child of the process may hold them),
                                        {exit_code, timed_out, stdout, stderr (base64)}

The holder (holder_exec.c) does the same once it has taken over; the shim hands over only
when no exec is in flight (holder.ready). Builtin modules only: the shim stays small.
"""

from __future__ import annotations

import binascii
import json
import os
import select
import signal
import time

from runtime.service.shim import protocol as P
from runtime.service.shim.files import read_file

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from runtime.service.shim.main import Conn, Shim

EXEC_OUTPUT_MAX = 16 << 20


class Exec:
    __slots__ = ("conn", "deadline", "err", "fds", "out", "pid", "timed_out")

    def __init__(self, conn: Conn, pid: int, fds: list[int], deadline: float | None) -> None:
        self.conn, self.pid, self.fds, self.deadline = conn, pid, fds, deadline
        self.out = bytearray()
        self.err = bytearray()
        self.timed_out = False


def start(shim: Shim, conn: Conn, req: dict[str, Any]) -> None:
    """Answer "exec": start the process (the reply goes out when it exits: exited())."""
    if shim.status != P.RUNNING:
        raise RuntimeError(f"container {shim.id} is {shim.status}, not running")
    n = int(time.time_ns())
    proc_file = f"exec-{n}.json"
    pid_file = f"exec-{n}.pid"
    with open(proc_file, "w") as f:
        f.write(json.dumps(req["process"]))
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    try:
        shim.run_runtime(["exec", "--detach", "--process", proc_file, "--pid-file",
                          pid_file, shim.id], stdio=(null, out_w, err_w))
        pid = int(read_file(pid_file).strip())
    except BaseException:
        os.close(out_r)
        os.close(err_r)
        raise
    finally:
        for fd in (null, out_w, err_w):
            os.close(fd)
        for name in (proc_file, pid_file):
            try:
                os.unlink(name)
            except FileNotFoundError:
                pass
    timeout = req.get("exec_timeout")
    ex = Exec(conn, pid, [out_r, err_r], time.monotonic() + timeout if timeout else None)
    shim.execs[pid] = ex
    for fd, is_err in ((out_r, False), (err_r, True)):
        os.set_blocking(fd, False)
        shim.exec_fds[fd] = (ex, is_err)
        shim.poll.register(fd, select.POLLIN)


def read(shim: Shim, fd: int) -> None:
    """What an exec's pipe FD holds now; at EOF the pipe is closed and forgotten."""
    ex, is_err = shim.exec_fds[fd]
    buf = ex.err if is_err else ex.out
    while True:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        if not data:
            shim.poll.unregister(fd)
            os.close(fd)
            del shim.exec_fds[fd]
            ex.fds.remove(fd)
            return
        buf += data[:max(0, EXEC_OUTPUT_MAX - len(buf))]


def exited(shim: Shim, ex: Exec, status: int) -> None:
    """EX's process was reaped with wait STATUS: reply to its caller."""
    for fd in list(ex.fds):  # what the process wrote is in the pipe now
        read(shim, fd)
    for fd in list(ex.fds):  # a child of it may hold the pipe open: stop reading
        shim.poll.unregister(fd)
        os.close(fd)
        del shim.exec_fds[fd]
    ex.conn.send({"ok": True, "exit_code": P.wait_status_code(status),
                  "timed_out": ex.timed_out,
                  "stdout": binascii.b2a_base64(bytes(ex.out), newline=False).decode(),
                  "stderr": binascii.b2a_base64(bytes(ex.err), newline=False).decode()})


def expire(shim: Shim) -> float | None:
    """Kill execs past their deadline; the poll timeout (ms) until the next one."""
    now = time.monotonic()
    soonest = None
    for ex in shim.execs.values():
        if ex.deadline is None or ex.timed_out:
            continue
        if ex.deadline <= now:
            ex.timed_out = True
            try:
                os.kill(ex.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        elif soonest is None or ex.deadline < soonest:
            soonest = ex.deadline
    return None if soonest is None else max(0.0, (soonest - now) * 1000) + 1
