"""The runtime's verbs on the host side: create, start, run, kill, delete, pause, resume,
update. Each loads state, checks the lifecycle table in state.py, acts, and leaves
nothing behind when it fails.

    create:  validate everything -> reserve the ID -> seccomp program (cached BPF) -> cgroup
             -> fork init (init.py)
             -> id maps / hooks on request -> "ready" -> state.json, --pid-file
    start:   open exec.fifo for reading: the init unblocks and execs; poststart hooks
    delete:  kill what is left, remove the cgroup, poststop hooks, remove the state dir
"""

from __future__ import annotations

import os
import time

from . import hooks, mounts, seccomp_bpf, spec, state
from .channel import Channel
from .errors import ConfigError, OCIError, SetupError
from .namespaces import Plan, fork_into_pid_namespace, write_id_maps

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SIGKILL = 9


class Options:
    """create's flags (runc's names)."""

    def __init__(self, *, bundle: str = ".", pid_file: str | None = None,
                 console_socket: str | None = None, no_pivot: bool = False,
                 no_new_keyring: bool = False, preserve_fds: int = 0,
                 systemd_cgroup: bool = False, own_console: bool = False,
                 start_now: bool = False) -> None:
        self.bundle = bundle
        self.pid_file = pid_file
        self.console_socket = console_socket
        self.no_pivot = no_pivot
        self.no_new_keyring = no_new_keyring
        self.preserve_fds = preserve_fds
        self.systemd_cgroup = systemd_cgroup
        # `run` in the foreground: a terminal without --console-socket comes back to us
        self.own_console = own_console
        # `run`: no stop in the created state, so no exec.fifo handshake; create returns
        # once the process is exec'd, after the poststart hooks
        self.start_now = start_now


def validate_all(config: dict[str, Any]) -> tuple[list[mounts.MountSpec], Plan]:
    """Every check that needs no side effect, so bad input fails before anything exists."""
    if config.get("process") is None:
        raise ConfigError("process", "is required to create a container")
    linux = config.get("linux")
    if linux is None:
        raise ConfigError("linux", "is required on Linux")
    specs = mounts.parse(config.get("mounts") or [])
    plan = Plan(linux.get("namespaces") or [])
    if not plan.has("mount"):
        raise ConfigError("linux.namespaces", "a mount namespace is required")
    from . import cgroups
    cgroups.validate(linux.get("resources") or {})
    if linux.get("seccomp") is not None:
        from . import seccomp
        seccomp.validate(linux["seccomp"])
    return specs, plan


def create(store: state.Store, cid: str, opts: Options) -> state.Container:
    bundle = os.path.abspath(opts.bundle)
    config, rootfs = spec.load(bundle)
    specs, plan = validate_all(config)
    check_preserved_fds(opts.preserve_fds)
    linux = config["linux"]
    sdir = store.reserve(cid)
    undo: list[Any] = [lambda: _rmtree(sdir)]
    pid = init_pid = 0
    try:
        seccomp_program = None
        if linux.get("seccomp"):  # as drop_privileges and exec test it: {} is no filter
            # compiled here, once per profile (seccomp_bpf.py); the init only loads it
            seccomp_program = seccomp_bpf.for_root(linux["seccomp"], store.root)
        from . import cgroups
        from .devices import cgroup_rules
        cg = cgroups.open_manager(container_id=cid, cgroups_path=linux.get("cgroupsPath"),
                                  systemd=opts.systemd_cgroup)
        undo.append(cg.destroy)  # runs after the init is killed (undo goes backwards)
        resources = dict(linux.get("resources") or {})
        rules = cgroup_rules(config)
        if rules:
            resources["devices"] = rules

        fifo_fd = -1
        if not opts.start_now:
            fifo = os.path.join(sdir, "exec.fifo")
            os.mkfifo(fifo, 0o622)
            os.chmod(fifo, 0o622)  # whatever the umask: the container's root writes to it
            _give_to_container_root(fifo, linux)
            # The init holds the fifo alone, never a directory of the host: until `start`
            # a neighbour with CAP_SYS_PTRACE could walk out of one via /proc/<init>/fd/N.
            fifo_fd = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
            undo.append(lambda: os.close(fifo_fd))
        console_fd = -1
        listener = None
        if config["process"].get("terminal") and opts.own_console and not opts.console_socket:
            from .console import Listener
            listener = Listener(sdir)
            undo.append(listener.close)
            opts.console_socket = listener.path
        if config["process"].get("terminal"):
            if not opts.console_socket:
                raise ConfigError("process.terminal", "cannot allocate tty if corral-runc "
                                  "will detach without setting console socket")
            from . import console
            console_fd = console.connect(opts.console_socket)
            undo.append(lambda: os.close(console_fd))
        elif opts.console_socket:
            raise ConfigError("process.terminal", "cannot use console socket if corral-runc "
                              "will not detach or allocate tty")
        join_fds = plan.open_joins()
        undo.append(lambda: _close_all(join_fds))
        parent, child = Channel.pair()
        undo.append(parent.close)

        # Without a new user namespace, enter the container's pid namespace here, so the
        # forked child is its PID 1 and needs no second fork. (A user namespace must exist
        # before the pid namespace it owns, so then the child does it.)
        pidns_here = plan.needs_fork() and not plan.has("user")
        from .init import Init
        init = Init(config=config, rootfs=rootfs, plan=plan, chan=child, join_fds=join_fds,
                    fifo_fd=fifo_fd, console_fd=console_fd, mounts=specs,
                    preserve_fds=opts.preserve_fds, no_pivot=opts.no_pivot,
                    no_new_keyring=opts.no_new_keyring, cid=cid, bundle=bundle, cgroup=cg,
                    pidns_ready=pidns_here, seccomp_program=seccomp_program)
        pid = fork_into_pid_namespace(join_fds.get("pid")) if pidns_here else os.fork()
        if pid == 0:
            parent.close()
            init.bootstrap()
        child.close()
        undo.append(lambda: _kill_and_reap(pid, init_pid))
        init_pid = pid
        # The child makes its namespaces meanwhile; it joins the cgroup after "go".
        cg.create()
        cg.apply(resources)
        parent.send("go")
        if "user" in plan.new:
            parent.expect("idmap")
            write_id_maps(pid, linux)
            parent.send("ok")
        if plan.needs_fork() and not pidns_here:
            init_pid = int(parent.expect("pid"))
            os.waitpid(pid, 0)  # the bootstrap process exits once the init is forked
        c = state.Container(store, {
            "id": cid, "pid": init_pid, "pidStart": state.proc_start_time(init_pid),
            "bundle": bundle, "rootfs": rootfs, "created": state.now_rfc3339(),
            "owner": "", "config": config, "cgroup": cg.to_state(),
        })
        from .init import has_runtime_hooks
        if has_runtime_hooks(config):
            parent.expect("hooks")
            hooks.run("prestart", config, c.oci_state(state.CREATING))
            hooks.run("createRuntime", config, c.oci_state(state.CREATING))
            parent.send("ok")
        parent.expect("ready")
        if opts.start_now:
            verb, payload = parent.recv()  # EOF: the channel closed with the exec
            if verb == "error":
                from .channel import error_from
                raise error_from(payload)
        c.save()
        c.console = listener
        if opts.pid_file:
            write_pid_file(opts.pid_file, init_pid)
        if fifo_fd >= 0:
            os.close(fifo_fd)
        parent.close()
        if console_fd >= 0:
            os.close(console_fd)
        for fd in join_fds.values():
            os.close(fd)
        return c
    except BaseException:
        undo_now(undo)
        raise


def _give_to_container_root(path: str, linux: dict[str, Any]) -> None:
    """chown PATH to the host ids the container's root maps to, as runc does with its
    exec.fifo (a joined user namespace has no mappings here: the 0622 mode covers it)."""
    def host_id(maps: list[dict[str, int]] | None) -> int:
        for m in maps or []:
            if m["containerID"] <= 0 < m["containerID"] + m["size"]:
                return m["hostID"] - m["containerID"]
        return 0
    os.chown(path, host_id(linux.get("uidMappings")), host_id(linux.get("gidMappings")))


def _close_all(fds: dict[str, int]) -> None:
    for fd in fds.values():
        os.close(fd)


def check_preserved_fds(n: int) -> None:
    for fd in range(3, 3 + n):
        try:
            os.fstat(fd)
        except OSError:
            raise OCIError(f"--preserve-fds {n}: file descriptor {fd} is not open") from None


def undo_now(steps: list[Any]) -> None:
    for fn in reversed(steps):
        try:
            fn()
        except Exception:
            pass


def _kill_and_reap(pid: int, init_pid: int) -> None:
    for p in {pid, init_pid} - {0}:
        try:
            os.kill(p, SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
    if init_pid and init_pid != pid:
        wait_gone(init_pid, None, timeout=5.0)


def wait_gone(pid: int, start_time: int | None, timeout: float) -> bool:
    """Wait until PID has exited (reaped or zombie); reaps it if it is our child."""
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
        st = state.proc_start_time(pid)
        if st is None or (start_time is not None and st != start_time):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def write_pid_file(path: str, pid: int) -> None:
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)),
                       "." + os.path.basename(path) + ".tmp")
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.replace(tmp, path)


def _rmtree(path: str) -> None:
    for name in os.listdir(path):
        os.unlink(os.path.join(path, name))
    os.rmdir(path)


# ---- start, kill, delete, pause, resume --------------------------------------------

def start(c: state.Container) -> None:
    state.require("start", c.status(), c.id)
    import select
    fifo = os.path.join(c.dir, "exec.fifo")
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        # Opening for reading releases the init; it writes "0" and holds the fifo open
        # until its exec: EOF means the user's process is running.
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        got = b""
        while True:
            if poller.poll(100):
                data = os.read(fd, 1)
                if not data and got:
                    break  # EOF after "0": exec'd (or died after the handshake)
                got += data
            if not got and not c.alive():
                raise SetupError(f"container {c.id}: init exited before start")
    finally:
        os.close(fd)
    os.unlink(fifo)
    poststart(c)


def poststart(c: state.Container) -> None:
    """After the process was exec'd; a failure is logged, never fatal (runtime-spec)."""
    try:
        hooks.run("poststart", c.config, c.oci_state(state.RUNNING))
    except SetupError as e:
        from .log import warn
        warn(f"poststart hook failed: {e}")


def kill(c: state.Container, sig: int, *, all_processes: bool = False) -> None:
    status = c.status()
    if all_processes and status == state.STOPPED:
        return  # runc: nothing left to signal is not an error with --all
    state.require("kill", status, c.id)
    if all_processes:
        cg = c.cgroup()
        if cg is not None:
            cg.kill_all(sig)
            return
    try:
        os.kill(c.pid, sig)
    except ProcessLookupError:
        raise OCIError("container not running") from None


def delete(c: state.Container, *, force: bool = False) -> None:
    status = c.status()
    state.require("delete --force" if force else "delete", status, c.id)
    cg = c.cgroup()
    if status != state.STOPPED:
        if cg is not None:
            cg.kill_all(SIGKILL)
        else:
            os.kill(c.pid, SIGKILL)
        if not wait_gone(c.pid, c.data["pidStart"], timeout=10.0):
            raise SetupError(f"container {c.id}: init {c.pid} did not exit after SIGKILL")
    destroy(c)


def destroy(c: state.Container) -> None:
    """Remove what create made (the processes are gone), then the poststop hooks."""
    cg = c.cgroup()
    if cg is not None:
        own_pidns = any(ns["type"] == "pid" and not ns.get("path")
                        for ns in (c.config.get("linux") or {}).get("namespaces") or [])
        # The kernel kills the rest of a pid namespace when its init dies; without one of
        # its own, processes the init left behind may still be in the cgroup.
        if not own_pidns and cg.pids():
            cg.kill_all(SIGKILL)
        cg.destroy()
    try:
        hooks.run("poststop", c.config, c.oci_state(state.STOPPED))
    except SetupError as e:
        from .log import warn
        warn(f"poststop hook failed: {e}")
    _rmtree(c.dir)


def pause(c: state.Container) -> None:
    state.require("pause", c.status(), c.id)
    c.cgroup().freeze()


def resume(c: state.Container) -> None:
    state.require("resume", c.status(), c.id)
    c.cgroup().thaw()


def update(c: state.Container, resources: dict[str, Any]) -> None:
    state.require("update", c.status(), c.id)
    from . import cgroups
    spec.RESOURCES_SCHEMA.check(resources, "resources")
    cgroups.validate(resources, "resources")
    c.cgroup().apply(resources, field="resources")
    merged = c.config.setdefault("linux", {}).setdefault("resources", {})
    for key, value in resources.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key].update(value)
        else:
            merged[key] = value
    c.save()
