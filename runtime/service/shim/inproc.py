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

What each child would otherwise redo is done once in the parent, before the fork:

    preload()          the modules; the host's seccomp identity (a dlopen of libseccomp);
                       the host's cgroup hierarchies (a parse of /proc/self/mountinfo,
                       which holds ~5 lines per pod: 6 CPU-ms a child at 100 pods); the
                       stdio stream objects (made on 0-2, used only by children)
    use_environ(env)   the parent's environment becomes ENV: a child finds it in place
                       (clearing and refilling os.environ cost ~1.5 ms in each child)

and the child skips a signal handler that is already the default, so a child costs
the fork, a few dup2s, close_range(2) and one sigprocmask before the runtime's main.

    call(["start", ID], runtime_flags=, stdio=)
                       no fork at all: `start` (open the exec fifo, wait for the init's
                       exec) runs in the shim itself, its stdio swapped in and back;
                       main.py does so when the holder execs next (IN_CALLER says why
                       it is safe)
"""

from __future__ import annotations

import gc
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import TextIO

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
    "runtime.oci.seccomp_bpf",
    "signal",  # _as_if_exec's: a parent without it had each child read it from disk (~3 ms)
)
# Signals the shim handles in Python: an exec would have reset them to their defaults.
_HANDLED = ("SIGCHLD", "SIGTERM", "SIGHUP")


# The children's sys.stdin/stdout/stderr, made once in the parent (_streams)
_made: tuple[TextIO, TextIO, TextIO] | None = None


def preload() -> None:
    """Import the runtime, so forked children need not (call before gc.freeze()); and do
    once here what each child would redo: the host's seccomp identity (create's cache key,
    ~0.75 ms a child), the cgroup hierarchies (read once per process, as the CLI does; the
    fork server lives as long as the daemon, as containerd's cgroup detection does), the
    children's stdio objects."""
    for name in MODULES:
        __import__(name)
    from runtime.oci import errors, seccomp_bpf
    from runtime.oci.cgroups import host

    try:
        seccomp_bpf.host_identity()
    except errors.SetupError:
        pass  # no libseccomp here: a create that needs it says so, as when exec'd
    try:
        host.read_host()
    except (OSError, errors.SetupError):
        pass  # no cgroup filesystem: a create that needs one says so, as when exec'd
    _streams()


def use_environ(env: dict[str, str]) -> None:
    """Make this process's environment ENV, so that children forked from now on start with
    it in place (call before gc.freeze(): os.environ stays shared then)."""
    if not _environ_is(env):
        os.environ.clear()
        os.environ.update(env)


def _environ_is(env: dict[str, str]) -> bool:
    return len(os.environ) == len(env) and all(os.environ.get(k) == v for k, v in env.items())


def spawn(argv: Sequence[str], *, stdio: tuple[int, int, int], env: dict[str, str],
          entry: Callable[[list[str]], int] | None = None, cwd: str | None = None) -> int:
    """Fork a child that runs `corral-runc ARGV` with STDIO and ENV (in CWD when given:
    the fork server runs holders' calls); returns its pid. ENTRY replaces the runtime's
    CLI (tests look at the child's state with it)."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    streams = _streams()
    pid = os.fork()
    if pid != 0:
        return pid
    rc = 1
    try:
        gc.disable()  # before anything allocates: a collection here only dirties pages
        if cwd is not None:
            os.chdir(cwd)
        _as_if_exec(stdio, env, streams)
        rc = run(list(argv), entry)
    finally:
        os._exit(rc)


# Verbs call() may run in the caller itself: they change nothing of the process that runs
# them (no signal handler, fd left open, cwd, environment, exit or os._exit; only
# runtime.oci.log's settings, which every runtime call sets anew), and their work is
# small next to a fork's. `start` opens the exec fifo, reads the init's "0" and EOF, and
# runs the poststart hooks (subprocesses, waited for): ~1.3 ms, where a fork costs ~3.
IN_CALLER = frozenset({"start"})


def call(args: Sequence[str], *, runtime_flags: Sequence[str], stdio: tuple[int, int, int],
         entry: Callable[[list[str]], int] | None = None) -> int:
    """Run `corral-runc RUNTIME_FLAGS ARGS` in this process, its stdio on STDIO's fds (kept
    open), and return its exit code, as waitpid on spawn()'s child would give it. ARGS
    starts with the verb (the caller has it in hand: nothing is parsed again here), which
    must be in IN_CALLER: every other one goes to spawn()."""
    verb = args[0] if args else ""
    if verb not in IN_CALLER:
        raise ValueError(f"inproc.call: {verb or 'no verb'}: "
                         f"only {', '.join(sorted(IN_CALLER))} runs in the caller")
    saved = sys.stdin, sys.stdout, sys.stderr
    collecting = gc.isenabled()
    sys.stdin, sys.stdout, sys.stderr = _open_streams(stdio)
    try:
        return run([*runtime_flags, *args], entry)  # catches everything, SystemExit too
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
        if collecting:
            gc.enable()  # run() turned it off, as for a short-lived process


def run(argv: list[str], entry: Callable[[list[str]], int] | None = None) -> int:
    """The launcher's body (scripts/make_launchers.py): main, flush, the exit code."""
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


def _as_if_exec(stdio: tuple[int, int, int], env: dict[str, str],
                streams: tuple[TextIO, TextIO, TextIO] | None) -> None:
    import signal

    signal.set_wakeup_fd(-1)  # before its pipe is closed below
    for name in _HANDLED:
        sig = getattr(signal, name)
        if signal.getsignal(sig) is not signal.SIG_DFL:
            signal.signal(sig, signal.SIG_DFL)
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a fresh interpreter's
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    # dup2 onto 0-2 from fds that may themselves be 0-2 (another's target): move those
    # out of the way first; an fd already in its place only becomes inheritable, as
    # dup2 makes a target and as exec's stdio is
    src = [os.dup(fd) if fd < 3 and fd != n else fd for n, fd in enumerate(stdio)]
    for n, fd in enumerate(src):
        if fd == n:
            os.set_inheritable(n, True)
        else:
            os.dup2(fd, n)
    # Everything else the shim holds (its socket, connections, pipes, the log file) was
    # close-on-exec: close it (close_range(2)). The Python objects that own those fds
    # stay referenced by frames above us, and os._exit skips their finalizers, so nothing
    # closes a reused fd.
    os.closerange(3, _max_fd())
    if not _environ_is(env):  # the parent did not use_environ(ENV): set it here
        os.environ.clear()
        os.environ.update(env)
    # Stream objects on fds 0-2, as an interpreter starts with (the shim's may have been
    # replaced or closed); the runtime writes its messages through them. Made by the
    # parent (never used there: their buffers are empty), else here.
    sys.stdin, sys.stdout, sys.stderr = streams or _open_streams()


def _streams() -> tuple[TextIO, TextIO, TextIO] | None:
    """The children's stdio objects, made on the first call (None while this process has
    no fds 0-2 to make them on: each child makes its own then)."""
    global _made
    if _made is None:
        try:
            _made = _open_streams()
        except OSError:
            return None
    return _made


def _open_streams(fds: tuple[int, int, int] = (0, 1, 2)) -> tuple[TextIO, TextIO, TextIO]:
    # not line-buffered whatever 0-2 are in the maker (a parent's fd 1 may be a terminal
    # a child's is not): run() flushes both at the end, as the runtime's messages are
    # whole lines written at once
    import io

    stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(fds[0], "r", closefd=False)),
                             encoding="utf-8")
    return stdin, _writer(fds[1], "surrogateescape"), _writer(fds[2], "backslashreplace")


def _writer(fd: int, errors: str) -> TextIO:
    import io

    return io.TextIOWrapper(io.BufferedWriter(io.FileIO(fd, "w", closefd=False)),
                            encoding="utf-8", errors=errors, line_buffering=False)


def _max_fd() -> int:
    try:
        return os.sysconf("SC_OPEN_MAX")
    except (OSError, ValueError):
        return 65536
