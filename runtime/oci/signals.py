"""Signals for the runtime, through `_signal`: the `signal` module wraps it in enums,
which cost ~5 ms of imports on every container start."""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # no stub; same API as `signal`
import os

# HUP INT QUIT USR1 USR2 TERM WINCH: what a foreground run/exec passes on to its process.
FORWARDED = (1, 2, 3, 10, 12, 15, 28)


def reset_for_exec() -> None:
    """Python ignores SIGPIPE and SIGXFSZ, and ignored signals survive execve: give the
    container's process the default dispositions and an empty signal mask."""
    for sig in (_signal.SIGPIPE, _signal.SIGXFSZ):
        _signal.signal(sig, _signal.SIG_DFL)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, [])


def forward_to(pid: int) -> None:
    """From now on, pass the FORWARDED signals we receive on to PID."""

    def forward(sig: int, _frame: object) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    for sig in FORWARDED:
        _signal.signal(sig, forward)


def wait_forwarding(pid: int) -> int:
    """Wait for PID (our child, or reparented to us as subreaper), passing on signals;
    reap every other child meanwhile. Returns the shell-style exit code."""
    forward_to(pid)
    while True:
        try:
            got, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 0
        if got == pid:
            code = os.waitstatus_to_exitcode(status)
            return 128 - code if code < 0 else code
