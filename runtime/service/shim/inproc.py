"""Our own OCI runtime run in a forked child of the shim, not in a fresh interpreter.

    shim.run_runtime(args)                     runtime class corral-runc (spec "inproc")
      spawn(argv, stdio) ── fork ──► child: what execve would have given a fresh process:
          │                           signal handlers and wakeup fd reset, stdio dup'ed onto
          │                           0-2, every other fd closed, environment = PATH only,
          │                           gc off; runtime.oci.cli.main.main(argv) -> os._exit(rc)
      waitpid(child) ◄───────────────  same argv, exit codes, state files and --log lines
                                       as `corral-runc ARGV`; the container's init, orphaned
                                       when the child exits, is reparented to the shim
                                       (a subreaper), as it was after an exec'd runtime

A runtime call costs a fork (about a millisecond) instead of an interpreter start and
the runtime's imports (tens of milliseconds each, twice per container). The modules are
imported once by preload(), in the fork server before it freezes its heap, so every shim
shares their pages copy-on-write. runc and other runtime classes are still exec'd.
Once the shim has become corral-shim-holder (C, no interpreter), the fork server runs
its calls the same way, through spawn(cwd=) (forkserver.py: runtime calls).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

ENTRY = "runtime.oci.cli.main"
# What a create, run, start, exec, kill and delete import (measured: sys.modules after
# each verb); init's modules must be in place before the child's pivot_root anyway.
MODULES = (
    ENTRY, "runtime.oci.cli.create_cmd", "runtime.oci.cli.run_cmd",
    "runtime.oci.cli.start_cmd", "runtime.oci.cli.exec_cmd", "runtime.oci.cli.kill_cmd",
    "runtime.oci.cli.delete_cmd", "runtime.oci.log", "runtime.oci.state",
    "runtime.oci.container", "runtime.oci.init", "runtime.oci.execproc",
    "runtime.oci.seccomp", "runtime.oci.devices", "runtime.oci.cgroups",
    "runtime.oci.cgroups.checks", "runtime.oci.cgroups.devices", "runtime.oci.cgroups.fs",
    "runtime.oci.cgroups.host", "runtime.oci.cgroups.v1", "runtime.oci.cgroups.v2",
)
# Signals the shim handles in Python: an exec would have reset them to their defaults.
_HANDLED = ("SIGCHLD", "SIGTERM", "SIGHUP")


def preload() -> None:
    """Import the runtime, so forked children need not (call before gc.freeze())."""
    for name in MODULES:
        __import__(name)


def spawn(argv: Sequence[str], *, stdio: tuple[int, int, int], env: dict[str, str],
          entry: Callable[[list[str]], int] | None = None, cwd: str | None = None) -> int:
    """Fork a child that runs `corral-runc ARGV` with STDIO and ENV (in CWD when given:
    the fork server runs holders' calls); returns its pid. ENTRY replaces the runtime's
    CLI (tests look at the child's state with it)."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    pid = os.fork()
    if pid != 0:
        return pid
    rc = 1
    try:
        if cwd is not None:
            os.chdir(cwd)
        _as_if_exec(stdio, env)
        rc = run(list(argv), entry)
    finally:
        os._exit(rc)


def run(argv: list[str], entry: Callable[[list[str]], int] | None = None) -> int:
    """The launcher's body (scripts/make_launchers.py): main, flush, the exit code."""
    import gc

    gc.disable()  # as the launcher: a short-lived process makes no cycles worth collecting
    main = entry or __import__(ENTRY, fromlist=["main"]).main
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException as e:  # the interpreter would print it and exit 1
        sys.stderr.write(f"corral-runc: {type(e).__name__}: {e}\n")
        rc = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    return int(rc)


def _as_if_exec(stdio: tuple[int, int, int], env: dict[str, str]) -> None:
    import signal

    signal.set_wakeup_fd(-1)  # before its pipe is closed below
    for name in _HANDLED:
        signal.signal(getattr(signal, name), signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a fresh interpreter's
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    # dup2 onto 0-2 from fds that may themselves be 0-2: move them out of the way first
    high = [os.dup(fd) for fd in stdio]
    for n, fd in enumerate(high):
        os.dup2(fd, n)  # dup2 makes the target inheritable, as exec's stdio is
    # Everything else the shim holds (its socket, connections, pipes, the log file) was
    # close-on-exec: close it. The Python objects that own those fds stay referenced by
    # frames above us, and os._exit skips their finalizers, so nothing closes a reused fd.
    os.closerange(3, _max_fd())
    os.environ.clear()
    os.environ.update(env)
    # New stream objects on fds 0-2, as an interpreter starts with (the shim's may have
    # been replaced or closed); the runtime writes its messages through them.
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", encoding="utf-8", errors="surrogateescape",  # noqa: SIM115
                      closefd=False)
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace",  # noqa: SIM115
                      closefd=False)


def _max_fd() -> int:
    try:
        return os.sysconf("SC_OPEN_MAX")
    except (OSError, ValueError):
        return 65536
