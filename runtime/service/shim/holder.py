"""Hand a running container over from the Python shim to corral-shim-holder (holder.c).

    Shim.loop, each turn: ready(shim)?  the container runs, no exec in flight, no request
        │                               half-read, and spec "holder" names the binary
        ▼
    hand_over(shim): execve(holder, command(shim))   same pid, session and subreaper role;
        the listening socket, the container's stdout/stderr pipes (with a line not yet
        ended), its stdin (pipe or pty master: stdio.py), the log file and every open
        connection ("wait" callers too) are passed by fd number; the holder serves the
        same protocol from there on, in a few pages.
        For corral-runc it gets the fork server's runtime socket (spec "runtime_server"):
        its runtime calls run there in a forked, preloaded interpreter (runcall.c).

If the exec fails the shim logs why and keeps serving in Python: nothing is lost. The
binary is built by scripts/make_launchers.py; without it the shim never hands over.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from runtime.service.shim.main import Shim

NAME = "corral-shim-holder"


def ready(shim: Shim) -> bool:
    """Whether SHIM can exec the holder now without losing a request, an exec's output or
    an exit: only a running container, and nothing in the middle of being handled."""
    return (bool(shim.holder) and shim.status == "running" and shim.exit is None
            and not shim.execs and shim.listener is not None
            and all(not conn.decoder.buf for conn in shim.conns.values()))


def command(shim: Shim) -> tuple[list[str], list[int]]:
    """The holder's argv, and the fds it must inherit."""
    assert shim.holder is not None and shim.listener is not None
    lfd = shim.listener.fileno()
    argv = [shim.holder, "--id", shim.id, "--init-pid", str(shim.init_pid),
            "--status", shim.status, "--listen", str(lfd),
            "--log-fd", str(shim.log_fd), "--log-path", shim.spec["log_path"],
            "--log-max", str(int(shim.spec.get("log_max_bytes") or 0))]
    fds = [lfd, shim.log_fd]
    if shim.spec.get("memory_cgroup"):
        argv += ["--memory-cgroup", shim.spec["memory_cgroup"]]
    if shim.inproc and shim.spec.get("runtime_server"):  # corral-runc in the fork server
        argv += ["--runtime-server", shim.spec["runtime_server"]]
    if shim.stdin_fd >= 0:  # the container's stdin: a pipe's write end, or the pty master
        argv += ["--stdin", str(shim.stdin_fd), "--stdin-once", str(int(shim.stdin_once)),
                 "--tty", str(int(shim.tty))]
        fds.append(shim.stdin_fd)
    elif shim.spec.get("stdin"):  # stdin_once, and the one session has it
        argv += ["--stdin-closed", "1"]
    for fd, log in shim.streams.items():
        name = log.stream.decode()
        argv += [f"--{name}", str(fd)]
        if log.pending:
            argv += [f"--pending-{name}", log.pending.hex()]
        fds.append(fd)
    for fd, conn in shim.conns.items():
        argv += ["--waiter" if conn in shim.waiters else "--conn", str(fd)]
        fds.append(fd)
    return [*argv, "--", *shim.runtime], fds


def hand_over(shim: Shim) -> None:
    """Exec the holder (does not return), or, if that fails, go on in Python."""
    argv, fds = command(shim)
    for fd in fds:
        os.set_inheritable(fd, True)
    try:
        os.execv(argv[0], argv)
    except OSError as e:
        for fd in fds:
            os.set_inheritable(fd, False)
        shim.holder = None
        sys.stderr.write(f"shim {shim.id}: exec {argv[0]}: {e.strerror}; "
                         "serving in Python\n")
        sys.stderr.flush()
