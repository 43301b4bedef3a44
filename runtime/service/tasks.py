"""Tasks: containers running, each held by its own shim (containerd's ``tasks``).

    TaskManager(state_dir)            on start: reconnect() to every task dir found
        create(ns, id, spec, runtime, tasks/<ns>/<id>/bundle/config.json, shim launched
          stdin=, stdin_once=, tty=)  (detached; `runtime create`)          -> CREATED
        start                         shim: `runtime start`                 -> RUNNING
        kill / stop(grace)            SIGTERM, wait, SIGKILL --all          -> STOPPED
        wait                          the shim answers when init exits (or exit.json)
        exec(args, timeout)           shim: `runtime exec -d`, output and exit code
        reopen_log                    shim: close the log, open log_path anew (rotation)
        attach                        shim: a copy of the container's stdin (pipe or pty)
        stats                         cgroup files: CPU ns, memory working set, pids
        delete                        shim: `runtime delete`, shutdown; the dir removed

One shim per container (not per pod): a shim that fails or is killed takes one container
with it, never a pod; a pod's containers share namespaces through the sandbox's
/proc/<pid>/ns paths (bundle.py), which needs no shared process. The shim writes the
init's exit to exit.json and keeps it until delete, so a daemon killed with `kill -9`
and started again reads every exit that happened while it was away, even from a shim that
is gone. State a task can be in is the explicit machine in TRANSITIONS.

Speed: shims are forked from shim/forkserver.py; for our own corral-runc (is_own_runtime)
the shim runs the runtime's CLI in a forked child (shim/inproc.py), not a new interpreter.
Footprint: once its container runs, a shim execs corral-shim-holder (shim/holder.c), a
small C loop serving the same protocol (~0.1 MB PSS; test_shim_footprint prints it). Its
corral-runc calls (exec, delete, start, kill --all) go to the fork server's runtime socket
(RUNTIME_SOCKET), which runs the CLI in a forked child; with no fork server (the daemon is
down) the holder execs the launcher.
Without that binary the Python shim goes on: it shares the fork server's pages
(gc.freeze() before each fork) and dirties about 1.5 MB of its own.
"""

from __future__ import annotations

import builtins
import enum
import json
import os
import select
import shutil
import signal as signals
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from runtime.service.shim import protocol as P
from runtime.service.shim.client import ForkServer, ShimClient, ShimError, ShimGone, launch
from runtime.service.taskstats import Stats, cgroup_controller_dirs, read_int, read_stats

TASK = "task.json"
STDIO = ("stdin", "stdin_once", "tty")  # CRI ContainerConfig's; in task.json (else False)
RUNTIME_SOCKET = "runtime-fork.sock"  # the fork server's, for holders' corral-runc calls


def stdio_flags(*, stdin: bool, stdin_once: bool, tty: bool) -> dict[str, bool]:
    """STDIO as a task holds it (task.json, the shim's spec; the CRI record copies it):
    stdin_once only with stdin, as it means "close the stdin after the first attach"."""
    return {"stdin": stdin, "stdin_once": stdin and stdin_once, "tty": tty}


class TaskError(Exception):
    pass


class NotFound(TaskError):
    pass


class AlreadyExists(TaskError):
    pass


class FailedPrecondition(TaskError):
    pass


class TaskState(enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    STOPPED = "stopped"
    UNKNOWN = "unknown"  # no shim answers and no exit was recorded


TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.CREATED: frozenset({TaskState.RUNNING, TaskState.STOPPED}),
    TaskState.RUNNING: frozenset({TaskState.STOPPED}),
    TaskState.STOPPED: frozenset(),
    TaskState.UNKNOWN: frozenset({TaskState.STOPPED}),
}


def check_transition(task: str, old: TaskState, new: TaskState) -> None:
    if new != old and new not in TRANSITIONS[old]:
        raise FailedPrecondition(f"Task {task}: state: cannot go from {old.value} to "
                                 f"{new.value}")


@dataclass(frozen=True)
class ExitStatus:
    code: int
    exited_at_ns: int
    reason: str  # Completed, Error, OOMKilled, Unknown


@dataclass(frozen=True)
class TaskInfo:
    namespace: str
    id: str
    state: TaskState
    pid: int
    runtime: str
    log_path: str
    exit: ExitStatus | None


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes
    timed_out: bool


def default_runtimes() -> dict[str, list[str]]:
    """Runtime classes (name -> command line before the runtime's global options):
    corral-runc next to this interpreter, runc and crun from PATH."""
    found = {"corral-runc": [os.path.join(os.path.dirname(sys.executable), "corral-runc")]}
    for name in ("runc", "crun"):
        path = shutil.which(name)
        if path:
            found[name] = [path]
    return found


def holder_path() -> str:
    """corral-shim-holder (shim/holder.c), built next to this interpreter by
    scripts/make_launchers.py."""
    return os.path.join(os.path.dirname(sys.executable), "corral-shim-holder")


def is_own_runtime(command: builtins.list[str]) -> bool:
    """Whether COMMAND is the corral-runc launcher of this very checkout
    (scripts/make_launchers.py), whose CLI a shim can run in a forked child instead."""
    if len(command) != 1:
        return False
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        with open(command[0], "rb") as f:
            head = f.read(1024).decode(errors="replace")
    except OSError:
        return False
    return (f"sys.path.insert(0, {root!r})" in head
            and "from runtime.oci.cli.main import main" in head)


def _exit(raw: dict[str, Any] | None) -> ExitStatus | None:
    if not raw:
        return None
    return ExitStatus(code=int(raw["exit_code"]), exited_at_ns=int(raw["exited_at_ns"]),
                      reason=str(raw["reason"]))


class TaskManager:
    def __init__(self, state_dir: str, *, runtimes: dict[str, list[str]] | None = None,
                 python: str | None = None, forkserver: bool = True,
                 cgroup_parent: str = "/corral", inproc: bool = True,
                 holder: bool = True) -> None:
        self.state_dir = os.path.abspath(state_dir)
        self.cgroup_parent = cgroup_parent  # for specs that set no cgroupsPath
        self.runtimes = runtimes or default_runtimes()
        self.python = python
        # Runtime classes whose CLI the shim runs in a forked child (no interpreter start
        # per runtime call): our own corral-runc. Others (runc, crun) are exec'd.
        self.inproc = {name for name, cmd in self.runtimes.items()
                       if inproc and is_own_runtime(cmd)}
        # Once its container runs, a shim execs the compiled holder (shim/holder.c) when it
        # is built: a few pages per container instead of a forked interpreter's ~1.5 MB.
        path = holder_path()
        self.holder = path if holder and os.access(path, os.X_OK) else None
        # shims are forked from a small helper (shim/forkserver.py), started on first use;
        # it also runs holders' corral-runc calls in forked children (RUNTIME_SOCKET)
        self.forkserver = ForkServer(
            python, preload=bool(self.inproc),
            runtime_socket=os.path.join(self.state_dir, RUNTIME_SOCKET) if self.inproc
            else None) if forkserver else None
        os.makedirs(os.path.join(self.state_dir, "tasks"), exist_ok=True)
        self.recovered = self.reconnect()
        if self.forkserver is not None and self.forkserver.runtime_socket and any(
                t.runtime in self.inproc and t.state in (TaskState.CREATED, TaskState.RUNNING)
                for t in self.recovered):
            self.forkserver.start()  # their holders' runtime calls: no interpreter each

    # ---- paths and records --------------------------------------------------------------

    def task_dir(self, namespace: str, cid: str) -> str:
        for what, value in (("namespace", namespace), ("id", cid)):
            if not value or "/" in value or value in (".", ".."):
                raise TaskError(f"Task {namespace}/{cid}: {what}: invalid name {value!r}")
        return os.path.join(self.state_dir, "tasks", namespace, cid)

    def _record(self, namespace: str, cid: str) -> dict[str, Any]:
        try:
            with open(os.path.join(self.task_dir(namespace, cid), TASK)) as f:
                rec: dict[str, Any] = json.load(f)
        except FileNotFoundError:
            raise NotFound(f"Task {namespace}/{cid}: not found") from None
        return rec

    def _runtime_server(self, runtime: str) -> str | None:
        """Where the holder of a RUNTIME task has corral-runc run in a forked child."""
        if self.forkserver is None or runtime not in self.inproc:
            return None
        return self.forkserver.runtime_socket

    def _shim(self, namespace: str, cid: str) -> ShimClient:
        return ShimClient(self.task_dir(namespace, cid))

    # ---- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Stop the fork server (running shims live on)."""
        if self.forkserver is not None:
            self.forkserver.close()

    def create(self, *, namespace: str, container_id: str, spec: dict[str, Any],
               runtime: str = "corral-runc", log_path: str | None = None,
               log_max_bytes: int = 0, start: bool = False, stdin: bool = False,
               stdin_once: bool = False, tty: bool = False) -> TaskInfo:
        """Write the bundle and launch the task's shim; the container is created, not
        started (START: created and started by one `runtime run --detach`). STDIN: the
        shim holds a pipe as the container's stdin (STDIN_ONCE: closed after the first
        attach); TTY: a terminal (process.terminal is set)."""
        name = f"{namespace}/{container_id}"
        if runtime not in self.runtimes:
            raise TaskError(f"Task {name}: runtime: unknown runtime class {runtime!r}; "
                            f"known: {', '.join(sorted(self.runtimes))}")
        tdir = self.task_dir(namespace, container_id)
        try:
            os.makedirs(tdir)
        except FileExistsError:
            raise AlreadyExists(f"Task {name}: already exists") from None
        try:
            spec = json.loads(json.dumps(spec))
            io = stdio_flags(stdin=stdin, stdin_once=stdin_once, tty=tty)
            if tty:
                spec.setdefault("process", {})["terminal"] = True
            linux = spec.setdefault("linux", {})
            linux.setdefault("cgroupsPath",
                             f"{self.cgroup_parent}/{namespace}/{container_id}")
            bundle = os.path.join(tdir, "bundle")
            os.makedirs(bundle)
            with open(os.path.join(bundle, "config.json"), "w") as f:
                f.write(json.dumps(spec))
            ctl = cgroup_controller_dirs(container_id=container_id,
                                         cgroups_path=linux["cgroupsPath"])
            log_path = os.path.abspath(log_path or os.path.join(tdir, "container.log"))
            rec = {"namespace": namespace, "id": container_id, "runtime": runtime,
                   "log_path": log_path, "cgroups": ctl, "created_at_ns": time.time_ns(),
                   "stdio": io}
            with open(os.path.join(tdir, TASK), "w") as f:
                f.write(json.dumps(rec))
            runtime_root = os.path.join(self.state_dir, "runtime", runtime)
            os.makedirs(runtime_root, exist_ok=True)
            pid = launch(state_dir=tdir, python=self.python, forkserver=self.forkserver,
                         spec={
                "id": container_id, "bundle": bundle, "runtime": self.runtimes[runtime],
                "runtime_root": runtime_root, "log_path": log_path,
                "log_max_bytes": log_max_bytes, "memory_cgroup": ctl.get("memory"),
                "start": start, "inproc": runtime in self.inproc, "holder": self.holder,
                "runtime_server": self._runtime_server(runtime), **io})
        except ShimError as e:
            shutil.rmtree(tdir, ignore_errors=True)
            raise TaskError(f"Task {name}: create: {e}") from None
        except BaseException:
            shutil.rmtree(tdir, ignore_errors=True)
            raise
        return TaskInfo(namespace=namespace, id=container_id,
                        state=TaskState.RUNNING if start else TaskState.CREATED, pid=pid,
                        runtime=runtime, log_path=log_path, exit=None)

    def start(self, namespace: str, cid: str) -> TaskInfo:
        info = self.get(namespace, cid)
        check_transition(f"{namespace}/{cid}", info.state, TaskState.RUNNING)
        try:
            self._shim(namespace, cid).call(P.OP_START)
        except ShimError as e:
            raise TaskError(f"Task {namespace}/{cid}: start: {e}") from None
        return self.get(namespace, cid)

    def run(self, *, namespace: str, container_id: str, spec: dict[str, Any],
            runtime: str = "corral-runc", log_path: str | None = None, stdin: bool = False,
            stdin_once: bool = False, tty: bool = False) -> TaskInfo:
        """create + start in one `runtime run --detach`; a failure leaves no task."""
        self.create(namespace=namespace, container_id=container_id, spec=spec,
                    runtime=runtime, log_path=log_path, start=True, stdin=stdin,
                    stdin_once=stdin_once, tty=tty)
        return self.get(namespace, container_id)

    def get(self, namespace: str, cid: str) -> TaskInfo:
        rec = self._record(namespace, cid)
        tdir = self.task_dir(namespace, cid)
        try:
            st = self._shim(namespace, cid).call(P.OP_STATE, timeout=10)
            state, pid, raw_exit = TaskState(st["status"]), int(st["pid"]), st["exit"]
        except (ShimGone, TimeoutError):
            raw_exit = self._exit_file(tdir)
            state = TaskState.STOPPED if raw_exit else TaskState.UNKNOWN
            pid = int(raw_exit["pid"]) if raw_exit else 0
        return TaskInfo(namespace=namespace, id=cid, state=state, pid=pid,
                        runtime=rec["runtime"], log_path=rec["log_path"], exit=_exit(raw_exit))

    @staticmethod
    def _exit_file(tdir: str) -> dict[str, Any] | None:
        try:
            with open(os.path.join(tdir, P.EXIT)) as f:
                raw: dict[str, Any] = json.load(f)
            return raw
        except (FileNotFoundError, ValueError):
            return None

    def list(self, namespace: str | None = None) -> list[TaskInfo]:
        root = os.path.join(self.state_dir, "tasks")
        out = []
        for ns in sorted(os.listdir(root)) if namespace is None else [namespace]:
            try:
                ids = sorted(os.listdir(os.path.join(root, ns)))
            except FileNotFoundError:
                continue
            for cid in ids:
                try:
                    out.append(self.get(ns, cid))
                except NotFound:
                    continue  # a task being created or deleted right now
        return out

    def reconnect(self) -> builtins.list[TaskInfo]:
        """Every task in the state dir, with its state as its shim (or exit file) says."""
        return self.list()

    def kill(self, namespace: str, cid: str, signal: int = signals.SIGTERM, *,
             all_processes: bool = False) -> None:
        self._record(namespace, cid)
        try:
            self._shim(namespace, cid).call(P.OP_KILL, signal=int(signal), all=all_processes)
        except ShimGone:
            if self._exit_file(self.task_dir(namespace, cid)) is None:
                raise
        except ShimError as e:
            raise TaskError(f"Task {namespace}/{cid}: kill: {e}") from None

    def wait(self, namespace: str, cid: str, *, timeout: float | None = None) -> ExitStatus:
        self._record(namespace, cid)
        try:
            reply = self._shim(namespace, cid).call(P.OP_WAIT, timeout=timeout)
            raw = reply["exit"]
        except ShimGone:
            raw = self._exit_file(self.task_dir(namespace, cid))
            if raw is None:
                return ExitStatus(code=255, exited_at_ns=0, reason="Unknown")
        exit_status = _exit(raw)
        assert exit_status is not None
        return exit_status

    def stop(self, namespace: str, cid: str, *, grace: float = 10.0) -> ExitStatus:
        """SIGTERM, then SIGKILL to every process of the container after GRACE seconds."""
        info = self.get(namespace, cid)
        if info.exit is not None:
            return info.exit
        if info.state == TaskState.RUNNING and grace > 0:
            self.kill(namespace, cid, signals.SIGTERM)
            try:
                return self.wait(namespace, cid, timeout=grace)
            except TimeoutError:
                pass
        self.kill(namespace, cid, signals.SIGKILL, all_processes=True)
        return self.wait(namespace, cid, timeout=30)

    def exec(self, namespace: str, cid: str, *, args: builtins.list[str],
             env: builtins.list[str] | None = None, cwd: str | None = None,
             timeout: float | None = None) -> ExecResult:
        """Run ARGS in the container like its init (user, env, capabilities), plus ENV."""
        if not args:
            raise TaskError(f"Task {namespace}/{cid}: exec: args: must not be empty")
        with open(os.path.join(self.task_dir(namespace, cid), "bundle", "config.json")) as f:
            proc = dict(json.load(f)["process"])
        proc["args"] = list(args)
        proc["terminal"] = False
        proc["env"] = list(proc.get("env") or []) + list(env or [])
        if cwd:
            proc["cwd"] = cwd
        try:
            code, out, err, timed_out = self._shim(namespace, cid).exec(
                proc, timeout=timeout or None)
        except ShimError as e:
            raise TaskError(f"Task {namespace}/{cid}: exec: {e}") from None
        return ExecResult(exit_code=code, stdout=out, stderr=err, timed_out=timed_out)

    def stdio(self, namespace: str, cid: str) -> dict[str, bool]:
        """Whether the task has a stdin (and stdin_once) and a tty: STDIO (a record
        without them, from an older daemon: all False)."""
        io = self._record(namespace, cid).get("stdio") or {}
        return {f: bool(io.get(f)) for f in STDIO}

    def attach(self, namespace: str, cid: str) -> tuple[int, bool]:
        """(fd, is a tty) of the task's stdin, from its shim: the caller writes to it and
        closes it (with stdin_once, the container sees EOF then)."""
        if not self.stdio(namespace, cid)["stdin"]:
            raise FailedPrecondition(f"Task {namespace}/{cid}: stdin: the container was "
                                     "created without stdin")
        try:
            return self._shim(namespace, cid).attach()
        except ShimError as e:
            raise FailedPrecondition(f"Task {namespace}/{cid}: attach: {e}") from None

    def reopen_log(self, namespace: str, cid: str) -> None:
        """CRI's ReopenContainerLog: after the caller renamed the log file away, the shim
        writes to a new file at the same path; every line lands in one file or the other."""
        info = self.get(namespace, cid)
        if info.state != TaskState.RUNNING:
            raise FailedPrecondition(f"Task {namespace}/{cid}: state: is {info.state.value}, "
                                     "not running: its log cannot be reopened")
        try:
            self._shim(namespace, cid).reopen_log()
        except ShimError as e:
            raise TaskError(f"Task {namespace}/{cid}: reopen log {info.log_path}: {e}") \
                from None

    def stats(self, namespace: str, cid: str) -> Stats:
        return read_stats(self._record(namespace, cid)["cgroups"])

    def delete(self, namespace: str, cid: str, *, force: bool = False) -> ExitStatus | None:
        """Remove a stopped task (FORCE: kill it first): runtime delete, shim exits, the
        state dir goes. Returns its exit."""
        rec = self._record(namespace, cid)
        tdir = self.task_dir(namespace, cid)
        shim = self._shim(namespace, cid)
        raw: dict[str, Any] | None
        try:
            if force:
                try:
                    shim.call(P.OP_KILL, signal=int(signals.SIGKILL), all=True)
                except ShimError as e:
                    if isinstance(e, ShimGone):
                        raise
                shim.call(P.OP_WAIT, timeout=30)
            shim_pid = read_int(os.path.join(tdir, P.PID))
            reply = shim.call(P.OP_DELETE, force=force, shutdown=True)
            raw = reply["exit"]
            if not reply.get("shutdown"):  # a shim from before "delete" could shut down
                shim.call(P.OP_SHUTDOWN)
            _wait_gone(shim_pid)
        except ShimGone:  # the shim died: do its part from here
            raw = self._exit_file(tdir)
            runtime_root = os.path.join(self.state_dir, "runtime", rec["runtime"])
            subprocess.run([*self.runtimes[rec["runtime"]], "--root", runtime_root,
                            "delete", "--force", cid], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)
        except ShimError as e:
            raise FailedPrecondition(f"Task {namespace}/{cid}: delete: {e}") from None
        shutil.rmtree(tdir, ignore_errors=True)
        try:
            os.rmdir(os.path.dirname(tdir))
        except OSError:
            pass
        return _exit(raw)


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    """Until PID (a shim, not our child) has exited: a pidfd turns readable at its exit,
    so this wakes then, not at the next tick of a polling loop."""
    if pid <= 0:
        return
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except OSError:  # no pidfd (a kernel before 5.3): poll /proc
        _poll_gone(pid, timeout)
        return
    try:
        select.select([fd], [], [], timeout)
    finally:
        os.close(fd)


def _poll_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                st = f.read()
        except OSError:
            return
        if st[st.rindex(b")") + 2:][:1] in (b"Z", b"X"):
            return
        time.sleep(0.005)
