"""`exec`: a new process inside a running container.

    parent                                  child (forked)
      open the init's namespaces, the         non-dumpable, join the cgroup
      seccomp program (seccomp_bpf.py)
      fork                                    setsid; setns user, then the rest
                                              fork (pid namespace applies to children)
                                     <---     "pid" N       (grandchild)
                                              console, look up the program
                                     <---     "ready"; finalize() as init does, exec
      EOF on the channel = exec happened (it is close-on-exec)
"""

from __future__ import annotations

import os

from . import state
from .channel import Channel
from .errors import SetupError
from .init import close_inherited_fds, finalize, join_cgroup, lookup, preload_for_finalize
from .linux import PR_SET_DUMPABLE, SYS
from .namespaces import FLAGS, JOIN_ORDER, PROC_NAME, fork_into_pid_namespace

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn


def build_process(c: state.Container, *, process_file: str | None, args: list[str],
                  overrides: dict[str, Any]) -> dict[str, Any]:
    """process.json as given, or the container's process with ARGS and the flags'
    overrides (env, cwd, user, caps, terminal), as runc builds it."""
    from . import _json, spec
    if process_file:
        try:
            with open(process_file, "rb") as f:
                proc = _json.loads(f.read())
        except OSError as e:
            raise SetupError(f"--process {process_file}: {e.strerror}") from None
        except _json.JSONError as e:
            raise SetupError(f"--process {process_file}: invalid JSON: {e}") from None
        spec.validate_process(proc, process_file)
        return dict(proc)
    base = c.config.get("process") or {}
    proc = {k: v for k, v in base.items() if k not in ("terminal", "consoleSize")}
    proc["args"] = args
    env = list(base.get("env") or [])
    for item in overrides.get("env") or []:
        key = item.split("=", 1)[0]
        env = [x for x in env if x.split("=", 1)[0] != key] + [item]
    proc["env"] = env
    if overrides.get("cwd"):
        proc["cwd"] = overrides["cwd"]
    if overrides.get("user") is not None:
        proc["user"] = {**(base.get("user") or {}), **overrides["user"]}
    if overrides.get("caps"):
        caps = {k: list(v or []) for k, v in (base.get("capabilities") or {}).items()}
        for kind in ("bounding", "effective", "permitted", "ambient", "inheritable"):
            caps.setdefault(kind, [])
            caps[kind] += [x for x in overrides["caps"] if x not in caps[kind]]
        proc["capabilities"] = caps
    if overrides.get("tty"):
        proc["terminal"] = True
    if overrides.get("no_new_privs"):
        proc["noNewPrivileges"] = True
    spec.validate_process(proc, "exec")
    return proc


def exec_in(c: state.Container, proc: dict[str, Any], *, detach: bool, pid_file: str | None,
            console_socket: str | None, preserve_fds: int) -> int:
    state.require("exec", c.status(), c.id)
    from .container import check_preserved_fds
    check_preserved_fds(preserve_fds)
    linux = c.config.get("linux") or {}
    kinds = {ns["type"] for ns in linux.get("namespaces") or []}
    fds: dict[str, int] = {}
    console_fd = -1
    parent, child = Channel.pair()
    try:
        for kind in JOIN_ORDER:
            if kind in kinds:
                fds[kind] = os.open(f"/proc/{c.pid}/ns/{PROC_NAME[kind]}",
                                    os.O_RDONLY | os.O_CLOEXEC)
        if proc.get("terminal"):
            if not console_socket:
                raise SetupError("exec --tty needs --console-socket")
            from . import console
            console_fd = console.connect(console_socket)
        program = None
        if linux.get("seccomp"):
            from . import seccomp_bpf  # compiled once per profile, as for create
            program = seccomp_bpf.for_root(linux["seccomp"], c.store.root)
        preload_for_finalize({"linux": linux}, compiled=program is not None)
        if proc.get("terminal"):
            from . import console
        # Always: the process in the container becomes our child when the intermediate one
        # exits, so that we can reap it if it fails before its exec. Left to the host's
        # init, its zombie keeps the container's PID 1 from dying (and `delete` waiting).
        from .linux import PR_SET_CHILD_SUBREAPER
        SYS.prctl(PR_SET_CHILD_SUBREAPER, 1)
        cg = c.cgroup()
        # As create does: enter the pid namespace here when there is no user namespace,
        # so the child needs no second fork.
        pidns_here = "pid" in fds and "user" not in kinds
        pid = fork_into_pid_namespace(fds["pid"]) if pidns_here else os.fork()
        if pid == 0:
            parent.close()
            if pidns_here:
                os.close(fds.pop("pid"))
            _child(child, cg, fds, proc, linux, console_fd, preserve_fds,
                   seccomp_program=program)
        child.close()
        target = pid
        if "pid" in fds and not pidns_here:
            target = int(parent.expect("pid"))
            os.waitpid(pid, 0)
        try:
            parent.expect("ready")
            verb, payload = parent.recv()  # "eof" once the exec has happened
            if verb == "error":
                from .channel import error_from
                raise error_from(payload)
        except BaseException:
            _reap(target)  # it exits right after reporting the error
            raise
    finally:
        parent.close()
        for fd in fds.values():
            os.close(fd)
        if console_fd >= 0:
            os.close(console_fd)
    if pid_file:
        from .container import write_pid_file
        write_pid_file(pid_file, target)
    if detach:
        return 0
    from .signals import wait_forwarding
    return wait_forwarding(target)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _child(chan: Channel, cg: Any, fds: dict[str, int], proc: dict[str, Any],
           linux: dict[str, Any], console_fd: int, preserve_fds: int, *,
           seccomp_program: Any) -> NoReturn:
    try:
        SYS.prctl(PR_SET_DUMPABLE, 0)
        close_inherited_fds(preserve_fds)
        if cg is not None:
            join_cgroup(cg, linux)
        os.setsid()
        joined = set(fds)
        for kind in JOIN_ORDER:
            if kind in fds:
                SYS.setns(fds[kind], FLAGS[kind])
                os.close(fds.pop(kind))
        if "pid" in joined:  # the pid namespace applies to children: fork once more
            if chan.fork_sending_pid():
                os._exit(0)
            # Lead a session of our own, as runc's exec'd process does: console.setup()
            # makes the pty our controlling terminal, which needs a session leader.
            os.setsid()
        if proc.get("terminal"):
            from . import console
            console.setup(console_fd, proc, mount_console=False)
        exe = lookup(proc)
        chan.send("ready")
        finalize(proc, linux, exe, preserve_fds, seccomp_program=seccomp_program)
    except BaseException as e:
        chan.send_error(e)
        os._exit(1)
