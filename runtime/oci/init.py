"""The container's side of create: from fork to the user's process.

    bootstrap()   in the forked child, still on the host
        non-dumpable; setsid
        user namespace (join, or create and wait for the parent to write id maps)
        join the other namespaces by path, unshare the new ones but the cgroup one
        (meanwhile the parent creates the cgroup), join the cgroup, then its namespace
        fork again if there is a pid namespace the parent could not enter for us (it
        does when there is no new user namespace: then this child is already PID 1)
    setup()       the init, inside the new namespaces
        rootfs: propagation, mounts, devices, sysctls; hooks (createRuntime by the
        parent, createContainer here); pivot_root; console; hostname; read-only root;
        masked and read-only paths; keyring; look up the program
    drop_privileges()   rlimits, user, capabilities, no_new_privs, seccomp (the program
                        create compiled: seccomp_bpf.py), fds, cwd
        -> "ready": create returns
    exec the sealed helper (exechelper.py), which waits for `start` (blocks opening
    exec.fifo) and execs the user's process; with startContainer hooks, Python waits
    and runs them first.

Every failure before "ready" goes back to the parent as an error message and ends the
child; the parent removes whatever was made.
"""

from __future__ import annotations

import fcntl
import os
import resource
import stat

# Everything used after pivot_root must be imported before it: the host's files (these
# modules, libseccomp) are out of reach once the container's root is /. (cgroupfs is used
# before it, but imported here too: a fork of the shim, which preloads this module, then
# has it, instead of importing it again in each container's init.)
from . import capabilities, cgroupfs, exechelper, hooks, mounts, rlimits, signals  # noqa: F401
from .channel import Channel
from .errors import ConfigError, SetupError
from .linux import (
    CLONE_NEWCGROUP,
    CLONE_NEWPID,
    PR_SET_DUMPABLE,
    PR_SET_KEEPCAPS,
    PR_SET_NO_NEW_PRIVS,
    PROC_SUPER_MAGIC,
    RESOLVE_BENEATH,
    RESOLVE_NO_SYMLINKS,
    SYS,
    fs_type,
)
from .namespaces import Plan

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Init:
    """Everything the child needs, handed over by fork."""

    def __init__(self, *, config: dict[str, Any], rootfs: str, plan: Plan, chan: Channel,
                 join_fds: dict[str, int], fifo_fd: int, console_fd: int,
                 mounts: list[mounts.MountSpec], preserve_fds: int, no_pivot: bool,
                 no_new_keyring: bool, cid: str, bundle: str, cgroup: Any,
                 pidns_ready: bool, seccomp_program: Any = None) -> None:
        self.config = config
        self.cid = cid
        self.bundle = bundle
        self.process: dict[str, Any] = config["process"]
        self.linux: dict[str, Any] = config.get("linux") or {}
        self.rootfs = rootfs
        self.plan = plan
        self.chan = chan
        self.join_fds = join_fds
        self.fifo_fd = fifo_fd
        self.console_fd = console_fd
        self.mounts = mounts
        self.preserve_fds = preserve_fds
        self.no_pivot = no_pivot
        self.no_new_keyring = no_new_keyring
        self.cgroup = cgroup
        self.pidns_ready = pidns_ready
        self.seccomp_program = seccomp_program  # seccomp_bpf.Program, compiled by create
        self.exe_path = ""

    # -- stage 1: namespaces ------------------------------------------------------------

    def bootstrap(self) -> NoReturn:
        try:
            SYS.prctl(PR_SET_DUMPABLE, 0)
            close_inherited_fds(self.preserve_fds)
            os.setsid()
            # A new user namespace would take away our rights over the host's cgroup
            # files: then join first (and make the cgroup namespace after the others).
            early_join = self.plan.has("user")
            if early_join:
                self.chan.expect("go")
                join_cgroup(self.cgroup, self.linux)
            if "user" in self.join_fds:
                self.plan.join_all({"user": self.join_fds.pop("user")}, skip_user=False)
                os.setresgid(0, 0, 0)  # our host ids are unmapped in there (EOVERFLOW)
                os.setresuid(0, 0, 0)
            elif "user" in self.plan.new:
                from .linux import CLONE_NEWUSER
                SYS.unshare(CLONE_NEWUSER)
                self.chan.send("idmap")
                self.chan.expect("ok")
                os.setresgid(0, 0, 0)
                os.setresuid(0, 0, 0)
            self.plan.join_all(self.join_fds)
            flags = self.plan.unshare_flags() & ~CLONE_NEWCGROUP
            if self.pidns_ready:  # we are PID 1 of it already
                flags &= ~CLONE_NEWPID
            SYS.unshare(flags)
            # The parent creates the cgroup while we made the namespaces above; join it
            # before the cgroup namespace, which is rooted where we are when it is made.
            if not early_join:
                self.chan.expect("go")
                join_cgroup(self.cgroup, self.linux)
            if "cgroup" in self.plan.new:
                SYS.unshare(CLONE_NEWCGROUP)
            if self.plan.needs_fork() and not self.pidns_ready:
                if self.chan.fork_sending_pid():
                    os._exit(0)
                # The forked init must lead its own session, or TIOCSCTTY on its
                # terminal fails with EPERM (runc's nsexec does setsid in stage 2).
                os.setsid()
            self.setup()
            env, helper = drop_privileges(self.process, self.linux, self.preserve_fds,
                                          keep_fd=self.fifo_fd,
                                          seccomp_program=self.seccomp_program)
            self.chan.send("ready")
            if (self.config.get("hooks") or {}).get("startContainer"):
                if self.fifo_fd >= 0:
                    self.wait_for_start()  # in Python: hooks run between start and exec
                hooks.run("startContainer", self.config, self._state("running"))
                exechelper.exec_process(helper, self.exe_path, self.process["args"], env)
            if self.fifo_fd >= 0:
                # Wait for `start` in the sealed helper, not as the host's Python: a
                # neighbour in a shared pid namespace must not find our interpreter at
                # /proc/1/exe. (Without a fifo, `run` is waiting for the channel to close
                # with our exec.)
                self.chan.close()
                self.chan.wfd = -1
            exechelper.exec_process(helper, self.exe_path, self.process["args"], env,
                                    fifo_fd=self.fifo_fd)
        except BaseException as e:
            if self.chan.wfd >= 0:
                self.chan.send_error(e)
            else:
                _report_late(e)
            os._exit(1)
        os._exit(1)

    # -- stage 2: the rootfs and the rest of the container -----------------------------

    def setup(self) -> None:
        cfg, linux = self.config, self.linux
        userns = self.plan.has("user")
        mounts.prepare_root(self.rootfs, linux.get("rootfsPropagation"))
        root = mounts.Rootfs(self.rootfs, cgroup=self.cgroup, cgroupns=self.plan.has("cgroup"),
                             joined_unified=self.cgroup.mode == "v2" or _wants_hugetlb(linux))
        try:
            for m in self.mounts:
                root.mount(m)
            if not any(m.dest.rstrip("/") == "/dev" and m.is_bind for m in self.mounts):
                from .devices import create_devices
                create_devices(root, cfg, bind=userns)
                _ptmx_link(root)
        finally:
            root.close()
        if linux.get("sysctl") or self.process.get("oomScoreAdj") is not None:
            self._write_proc_settings()

        if has_runtime_hooks(cfg):
            self.chan.send("hooks")
            self.chan.expect("ok")
        hooks.run("createContainer", cfg, self._state("creating"))

        preload_for_finalize(cfg, compiled=self.seccomp_program is not None)
        if self.process.get("terminal"):
            from . import console
        if self.no_pivot:
            mounts.move_root(self.rootfs)
        else:
            mounts.pivot(self.rootfs)
        if self.process.get("terminal"):
            from . import console
            if self.console_fd < 0:
                raise ConfigError("process.terminal", "a terminal needs --console-socket")
            console.setup(self.console_fd, self.process, mount_console=True)
            self.console_fd = -1
        if cfg.get("hostname"):
            SYS.sethostname(cfg["hostname"])
        if cfg.get("domainname"):
            SYS.setdomainname(cfg["domainname"])
        if cfg["root"].get("readonly"):
            mounts.readonly_root()
        if linux.get("maskedPaths"):
            devnull = mounts.open_devnull()
            try:
                mounts.mask_paths(linux["maskedPaths"], devnull)
            finally:
                os.close(devnull)
        mounts.readonly_paths(linux.get("readonlyPaths") or [])
        if not self.no_new_keyring:
            try:
                SYS.join_session_keyring(None)
            except OSError as e:
                # Disabled by some kernels / seccomp profiles of outer containers: runc
                # carries on too.
                if e.errno not in (38, 1):  # ENOSYS, EPERM
                    raise
        if linux.get("personality"):
            SYS.personality(0x0008 if linux["personality"]["domain"] == "LINUX32" else 0)
        self.exe_path = lookup(self.process)

    def _write_proc_settings(self) -> None:
        """linux.sysctl and process.oomScoreAdj, through the host's verified procfs."""
        proc = _open_proc()
        try:
            for key, value in (self.linux.get("sysctl") or {}).items():
                _write_proc(proc, "sys/" + key.replace(".", "/"), value,
                            f"linux.sysctl[{key!r}]")
            if self.process.get("oomScoreAdj") is not None:
                me = os.readlink("/proc/self")  # our pid as this (host) procfs numbers it
                _write_proc(proc, f"{me}/oom_score_adj", str(self.process["oomScoreAdj"]),
                            "process.oomScoreAdj")
        finally:
            os.close(proc)

    def _state(self, status: str) -> dict[str, Any]:
        return {"ociVersion": self.config.get("ociVersion", ""), "id": self.cid,
                "status": status, "pid": os.getpid(), "bundle": self.bundle,
                "annotations": self.config.get("annotations") or {}}

    def wait_for_start(self) -> None:
        # As the sealed helper would, in Python: startContainer hooks run between `start`
        # and the exec (poststart hooks then run after both, as the spec says).
        exechelper.wait_for_start(self.fifo_fd)
        self.chan.close()
        self.chan.wfd = -1


def finalize(process: dict[str, Any], linux: dict[str, Any], exe: str,
             preserve_fds: int, *, seccomp_program: Any = None) -> NoReturn:
    """Drop to the configured identity and privileges, then exec (for `exec`)."""
    env, helper = drop_privileges(process, linux, preserve_fds,
                                  seccomp_program=seccomp_program)
    exechelper.exec_process(helper, exe, process["args"], env)


def drop_privileges(process: dict[str, Any], linux: dict[str, Any], preserve_fds: int,
                    *, keep_fd: int = -1, seccomp_program: Any = None
                    ) -> tuple[list[str], int | None]:
    """Become the configured user with the configured capabilities, rlimits, umask,
    no_new_privs, cwd and seccomp filter, ready to exec. Returns the environment and the
    exec helper's memfd (made while the seccomp filter cannot refuse memfd_create).
    KEEP_FD survives the exec into the helper (the exec fifo). SECCOMP_PROGRAM is
    linux.seccomp compiled (seccomp_bpf.Program); without it, libseccomp compiles here."""
    rlimits.apply(process.get("rlimits") or [])
    caps = process.get("capabilities") or {}
    nnp = bool(process.get("noNewPrivileges"))
    seccomp = linux.get("seccomp")
    user = process.get("user") or {"uid": 0, "gid": 0}
    env = list(process.get("env") or [])
    if not any(e.startswith("HOME=") for e in env):
        env.append("HOME=" + _home(user["uid"]))
    helper = exechelper.sealed_memfd()
    if seccomp and not nnp:
        # Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: do it while we have it.
        _load_seccomp(seccomp, seccomp_program)
    capabilities.drop_bounding(caps)
    SYS.prctl(PR_SET_KEEPCAPS, 1)
    os.setgroups(user.get("additionalGids") or [])
    os.setresgid(user["gid"], user["gid"], user["gid"])
    os.setresuid(user["uid"], user["uid"], user["uid"])
    SYS.prctl(PR_SET_KEEPCAPS, 0)
    capabilities.apply(caps)
    os.umask(user.get("umask", 0o022))
    if nnp:
        SYS.prctl(PR_SET_NO_NEW_PRIVS, 1)
    signals.reset_for_exec()
    _close_fds_on_exec(preserve_fds)
    if keep_fd >= 0:
        os.set_inheritable(keep_fd, True)
    cwd = process.get("cwd") or "/"
    try:
        os.chdir(cwd)
        os.getcwd()  # fails if the directory lies outside our root (CVE-2024-21626)
    except OSError as e:
        raise SetupError(f"process.cwd: chdir {cwd}: {e.strerror}") from None
    if seccomp and nnp:
        _load_seccomp(seccomp, seccomp_program)
    return env, helper


def _load_seccomp(seccomp: dict[str, Any], program: Any) -> None:
    if program is not None:
        from . import seccomp_bpf
        seccomp_bpf.install(program)
    else:
        from . import seccomp as sc
        sc.load(seccomp)


def join_cgroup(cg: Any, linux: dict[str, Any]) -> None:
    """Join the container's cgroup from inside (see cgroups.Manager.join_self)."""
    cg.join_self(hugetlb=_wants_hugetlb(linux))


def _wants_hugetlb(linux: dict[str, Any]) -> bool:
    return bool((linux.get("resources") or {}).get("hugepageLimits"))


def has_runtime_hooks(config: dict[str, Any]) -> bool:
    """Whether create must stop for the parent to run prestart/createRuntime hooks."""
    h = config.get("hooks") or {}
    return bool(h.get("prestart") or h.get("createRuntime"))


def preload_for_finalize(config: dict[str, Any], *, compiled: bool = False) -> None:
    """Import what finalize() and the startContainer hooks will need, and load
    libseccomp (unless the filter is COMPILED already), while the host's files are
    still reachable."""
    if (config.get("linux") or {}).get("seccomp"):
        from . import seccomp, seccomp_bpf  # noqa: F401
        if not compiled:
            seccomp.preload()
    if (config.get("hooks") or {}).get("startContainer"):
        import subprocess  # noqa: F401


def lookup(process: dict[str, Any]) -> str:
    """Find process.args[0] in the container (after pivot_root), as execvp would."""
    name = process["args"][0]
    if "/" in name:
        candidates = [name if name.startswith("/") else os.path.join(
            process.get("cwd") or "/", name)]
    else:
        path = DEFAULT_PATH
        for e in process.get("env") or []:
            if e.startswith("PATH="):
                path = e[5:]
        candidates = [os.path.join(d or ".", name) for d in path.split(":")]
    for c in candidates:
        try:
            st = os.stat(c)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
            return c
        if "/" in name:
            raise ConfigError("process.args[0]", f"exec: {name!r}: permission denied")
    where = "no such file or directory" if "/" in name else "executable file not found in $PATH"
    raise ConfigError("process.args[0]", f"exec: {name!r}: {where}")


def _home(uid: int) -> str:
    try:
        with open("/etc/passwd") as f:
            for line in f:
                parts = line.rstrip("\n").split(":")
                if len(parts) >= 6 and parts[2] == str(uid):
                    return parts[5] or "/"
    except OSError:
        pass
    return "/"


def _ptmx_link(root: mounts.Rootfs) -> None:
    dev = root.mkdir_all("/dev")
    try:
        try:
            os.unlink("ptmx", dir_fd=dev)
        except FileNotFoundError:
            pass
        os.symlink("pts/ptmx", "ptmx", dir_fd=dev)
    finally:
        os.close(dev)


def _open_proc() -> int:
    fd = os.open("/proc", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    if fs_type(fd) != PROC_SUPER_MAGIC:
        os.close(fd)
        raise SetupError("/proc on the host is not procfs")
    return fd


def _write_proc(proc_fd: int, rel: str, value: str, field: str) -> None:
    """Write a /proc file reached without symlinks or leaving procfs (CVE-2025-52881)."""
    try:
        fd = SYS.openat2(proc_fd, rel, os.O_WRONLY, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)
    except OSError as e:
        raise ConfigError(field, f"/proc/{rel}: {e.strerror}") from None
    try:
        if fs_type(fd) != PROC_SUPER_MAGIC:
            raise SetupError(f"{field}: /proc/{rel} is not on procfs")
        os.write(fd, value.encode())
    except OSError as e:
        raise ConfigError(field, f"writing {value!r} to /proc/{rel}: {e.strerror}") from None
    finally:
        os.close(fd)


def close_inherited_fds(preserve: int) -> None:
    """Close what our caller left open by mistake (inheritable fds above the preserved
    ones), first thing in the child: held until `start`, a host directory among them
    would be one /proc/<init>/fd/N away from the container. Ours are all close-on-exec
    (PEP 446), so they stay."""
    for fd in [int(n) for n in os.listdir("/proc/self/fd")]:
        if fd < 3 + preserve:
            continue
        try:
            if not fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC:
                os.close(fd)
        except OSError:  # the listing's own fd, gone by now
            pass


def _close_fds_on_exec(preserve: int) -> None:
    """Every fd but stdio and the preserved ones is closed by the exec: no host fd (a
    directory of the host, the state dir) can reach the container's process."""
    keep = 3 + preserve
    try:
        fds = [int(n) for n in os.listdir("/proc/self/fd")]
    except OSError:  # no /proc in this container: walk the whole fd table instead
        fds = list(range(3, min(resource.getrlimit(resource.RLIMIT_NOFILE)[0], 1 << 16)))
    for fd in fds:
        if fd < 3:
            continue
        if fd < keep:
            os.set_inheritable(fd, True)
            continue
        try:
            flags = fcntl.fcntl(fd, fcntl.F_GETFD)
            fcntl.fcntl(fd, fcntl.F_SETFD, flags | fcntl.FD_CLOEXEC)
        except OSError:
            pass


def _report_late(e: BaseException) -> None:
    """After create returned, errors can only go to the container's stderr."""
    try:
        os.write(2, f"corral-runc init: {e}\n".encode())
    except OSError:
        pass
