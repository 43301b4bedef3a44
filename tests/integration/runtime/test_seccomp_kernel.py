"""Real seccomp filters, loaded by runtime.oci.seccomp into forked children.

Each case forks; the child sets no_new_privs (unless the case says otherwise), loads the
filter, runs a probe and writes repr(result) to a pipe. The parent reaps the child (killing
it after a timeout) and asserts on the result or on the signal that ended the child.
"""

from __future__ import annotations

import ast
import ctypes
import errno
import os
import signal
import socket
import time
from collections.abc import Callable

import pytest

from runtime.oci import seccomp
from runtime.oci.errors import SetupError

pytestmark = pytest.mark.integration

PR_SET_NO_NEW_PRIVS = 38
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
MS_REC, MS_PRIVATE = 0x4000, 1 << 18
ADDR_NO_RANDOMIZE = 0x0040000
SYSLOG_ACTION_SIZE_BUFFER = 10
ALLOW, ERRNO = "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO"
DEFAULT_CAPS = None
WITH_SYS_ADMIN = ["CAP_SYS_ADMIN"]

libc = ctypes.CDLL(None, use_errno=True)

if os.geteuid() != 0:
    pytest.skip("needs root (unshare, mount, chroot probes)", allow_module_level=True)
if not seccomp.features()["enabled"]:
    pytest.skip("libseccomp.so.2 is not installed", allow_module_level=True)


class Killed:
    """The child was ended by a signal."""

    def __init__(self, sig: int) -> None:
        self.sig = sig

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Killed) and other.sig == self.sig

    def __repr__(self) -> str:
        return f"Killed({signal.Signals(self.sig).name})"


class Exited:
    """The child exited without reporting a result (it exec'd another program)."""

    def __init__(self, code: int) -> None:
        self.code = code

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Exited) and other.code == self.code

    def __repr__(self) -> str:
        return f"Exited({self.code})"


def run_in_child(config: dict[str, object] | None, probe: Callable[[], object], *,
                 nnp: bool = True, prepare: Callable[[], None] | None = None,
                 timeout: float = 20.0) -> object:
    """Load `config` in a forked child, run `probe` there and return its result; Killed or
    Exited when the child was ended by a signal or exited without writing a result."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 0
        try:
            os.close(r)
            if prepare:
                prepare()
            if nnp and libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
            if config is not None:
                seccomp.load(config)
            result = repr(probe())
        except BaseException as e:
            result = repr(("raised", type(e).__name__, str(e)))
            code = 1
        try:
            os.write(w, result.encode())
        finally:
            os._exit(code)
    os.close(w)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(r)
            pytest.fail(f"child {pid} did not finish in {timeout}s")
        time.sleep(0.005)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    if os.WIFSIGNALED(status):
        return Killed(os.WTERMSIG(status))
    if not chunks:
        return Exited(os.waitstatus_to_exitcode(status))
    return ast.literal_eval(b"".join(chunks).decode())


def errno_of(fn: Callable[[], object]) -> object:
    """'ok' if fn succeeds, else the errno of the OSError it raised."""
    try:
        fn()
    except OSError as e:
        return e.errno
    return "ok"


def c_errno(ret: int) -> object:
    """A libc call's result as 'ok' / errno (read right after the call)."""
    return ctypes.get_errno() if ret == -1 else "ok"


def syscall(name: str, *args: object) -> object:
    nr = seccomp.syscall_number(name)
    assert nr is not None and nr >= 0, name
    return c_errno(libc.syscall(nr, *args))


def personality(p: int) -> object:
    return c_errno(libc.personality(ctypes.c_ulong(p)))


def rule(names: list[str], action: str = ERRNO, **kw: object) -> dict[str, object]:
    return {"names": names, "action": action, **kw}


def allow_but(*rules: dict[str, object], **kw: object) -> dict[str, object]:
    return {"defaultAction": ALLOW, "syscalls": list(rules), **kw}


def default_profile(caps: list[str] | None = None, **override: object) -> dict[str, object]:
    return {**seccomp.default_profile(caps), **override}


@pytest.fixture
def newdir(tmp_path: os.PathLike[str]) -> str:
    return os.path.join(tmp_path, "new")


# ---------------------------------------------------------------------------------------------
# custom filters


def test_errno_ret_is_returned(newdir: str) -> None:
    config = allow_but(rule(["mkdir", "mkdirat"], errnoRet=errno.ENOSPC))
    assert run_in_child(config, lambda: errno_of(lambda: os.mkdir(newdir))) == errno.ENOSPC
    assert not os.path.exists(newdir)


@pytest.mark.parametrize("config, expected", [
    pytest.param(allow_but(rule(["mkdir", "mkdirat"])), errno.EPERM, id="errno-defaults-eperm"),
    pytest.param(allow_but(rule(["mkdir", "mkdirat"], action="SCMP_ACT_LOG")), "ok", id="log"),
    pytest.param(allow_but(rule(["mkdir", "mkdirat"], action="SCMP_ACT_TRACE")), errno.ENOSYS,
                 id="trace-without-tracer-enosys"),
    pytest.param(allow_but(rule(["mkdir", "mkdirat"], action="SCMP_ACT_KILL_PROCESS")),
                 Killed(signal.SIGSYS), id="kill-process"),
    pytest.param(allow_but(rule(["mkdir", "mkdirat"], action="SCMP_ACT_KILL")),
                 Killed(signal.SIGSYS), id="kill-thread"),
    pytest.param(allow_but(rule(["mkdir", "mkdirat"], action="SCMP_ACT_TRAP")),
                 Killed(signal.SIGSYS), id="trap"),
    pytest.param(allow_but(rule(["no_such_syscall_xyz", "mkdir", "mkdirat"])), errno.EPERM,
                 id="unknown-name-skipped"),
    pytest.param(allow_but(rule(["rmdir"])), "ok", id="other-syscall-unaffected"),
])
def test_actions(newdir: str, config: dict[str, object], expected: object) -> None:
    assert run_in_child(config, lambda: errno_of(lambda: os.mkdir(newdir))) == expected


def test_allowed_syscalls_still_work(tmp_path: os.PathLike[str]) -> None:
    config = allow_but(rule(["mkdir", "mkdirat"]))

    def probe() -> object:
        with open(os.path.join(tmp_path, "f"), "w") as f:
            f.write("x")
        return sorted(os.listdir(tmp_path)), os.getpid() > 0

    assert run_in_child(config, probe) == (["f"], True)


def test_argument_condition_ne() -> None:
    # deny personality unless its argument is 0
    config = allow_but(rule(["personality"], errnoRet=errno.EACCES,
                            args=[{"index": 0, "op": "SCMP_CMP_NE", "value": 0}]))
    got = run_in_child(config, lambda: (personality(0xFFFFFFFF), personality(0)))
    assert got == (errno.EACCES, "ok")


def test_same_argument_conditions_or_like_runc() -> None:
    config = allow_but(rule(["personality"], args=[
        {"index": 0, "op": "SCMP_CMP_EQ", "value": 0x0008},
        {"index": 0, "op": "SCMP_CMP_EQ", "value": 0x20000}]))
    got = run_in_child(config, lambda: (personality(0x0008), personality(0x20000),
                                        personality(0)))
    assert got == (errno.EPERM, errno.EPERM, "ok")


def test_different_argument_conditions_and_with_masked_eq() -> None:
    # socket(AF_UNIX, SOCK_DGRAM | any flags) is denied; either condition alone is not enough
    config = allow_but(rule(["socket"], errnoRet=errno.EACCES, args=[
        {"index": 0, "op": "SCMP_CMP_EQ", "value": socket.AF_UNIX},
        {"index": 1, "op": "SCMP_CMP_MASKED_EQ", "value": 0xF, "valueTwo": socket.SOCK_DGRAM}]))

    def open_close(family: int, kind: int) -> object:
        return errno_of(lambda: socket.socket(family, kind).close())

    def probe() -> object:
        return (open_close(socket.AF_UNIX, socket.SOCK_DGRAM),  # + SOCK_CLOEXEC: masked away
                open_close(socket.AF_UNIX, socket.SOCK_STREAM),
                open_close(socket.AF_INET, socket.SOCK_DGRAM))

    assert run_in_child(config, probe) == (errno.EACCES, "ok", "ok")


def test_default_errno_ret() -> None:
    config = {"defaultAction": ERRNO, "defaultErrnoRet": errno.ENOSYS,
              "syscalls": seccomp.default_profile()["syscalls"]}
    assert run_in_child(config, lambda: c_errno(
        libc.klogctl(SYSLOG_ACTION_SIZE_BUFFER, None, 0))) == errno.ENOSYS


def test_architectures_listed(newdir: str) -> None:
    archs = {"x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
             "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]}.get(os.uname().machine)
    if archs is None:
        pytest.skip("no compat architectures known for this machine")
    config = allow_but(rule(["mkdir", "mkdirat"]), architectures=archs)
    assert run_in_child(config, lambda: errno_of(lambda: os.mkdir(newdir))) == errno.EPERM


@pytest.mark.parametrize("flag", [pytest.param(f, id=f) for f in seccomp.features()["knownFlags"]])
def test_flags_match_features(newdir: str, flag: str) -> None:
    config = allow_but(rule(["mkdir", "mkdirat"]), flags=[flag])
    got = run_in_child(config, lambda: errno_of(lambda: os.mkdir(newdir)))
    if flag in seccomp.features()["supportedFlags"]:
        assert got == errno.EPERM
    else:
        assert isinstance(got, tuple) and got[:2] == ("raised", "SetupError")
        assert f"flag {flag} is not supported" in got[2]


def test_load_without_no_new_privs_or_cap_sys_admin_fails() -> None:
    def drop_to_nobody() -> None:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)

    got = run_in_child(allow_but(rule(["mkdir"])), lambda: "loaded", nnp=False,
                       prepare=drop_to_nobody)
    assert isinstance(got, tuple) and got[:2] == ("raised", SetupError.__name__)
    assert "set no_new_privs or hold CAP_SYS_ADMIN" in got[2]


def test_load_as_root_without_no_new_privs(newdir: str) -> None:
    # libseccomp must not set no_new_privs by itself: that is process.noNewPrivileges' job
    got = run_in_child(allow_but(rule(["mkdir", "mkdirat"])), lambda: (
        errno_of(lambda: os.mkdir(newdir)), libc.prctl(39, 0, 0, 0, 0)), nnp=False)
    assert got == (errno.EPERM, 0)  # PR_GET_NO_NEW_PRIVS == 0


# ---------------------------------------------------------------------------------------------
# Docker's default profile


def unshare_ns() -> object:
    return c_errno(libc.unshare(CLONE_NEWNS))


def raw_clone_newuts() -> object:
    """clone(CLONE_NEWUTS | SIGCHLD) through the raw syscall; reaps a child if one appears."""
    nr = seccomp.syscall_number("clone")
    assert nr is not None and nr >= 0
    pid = libc.syscall(nr, ctypes.c_ulong(CLONE_NEWUTS | signal.SIGCHLD), None, None, None,
                       None)
    if pid == 0:
        os._exit(0)
    if pid > 0:
        os.waitpid(pid, 0)
        return "ok"
    return ctypes.get_errno()


def fork_and_reap() -> object:
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def spawn_true() -> object:
    pid = os.posix_spawn("/bin/true", ["true"], dict(os.environ))
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def mount_private_root() -> object:
    if libc.unshare(CLONE_NEWNS) != 0:
        return ("unshare", ctypes.get_errno())
    return c_errno(libc.mount(b"none", b"/", None, ctypes.c_ulong(MS_REC | MS_PRIVATE), None))


@pytest.mark.parametrize("caps, probe, expected", [
    pytest.param(DEFAULT_CAPS, unshare_ns, errno.EPERM, id="unshare-denied"),
    pytest.param(WITH_SYS_ADMIN, unshare_ns, "ok", id="unshare-sys-admin"),
    pytest.param(DEFAULT_CAPS, mount_private_root, ("unshare", errno.EPERM),
                 id="mount-denied"),
    pytest.param(WITH_SYS_ADMIN, mount_private_root, "ok", id="mount-sys-admin"),
    pytest.param(DEFAULT_CAPS, lambda: syscall("clone3", None, 0), errno.ENOSYS,
                 id="clone3-enosys"),
    pytest.param(WITH_SYS_ADMIN, lambda: syscall("clone3", None, 0), errno.EINVAL,
                 id="clone3-sys-admin-reaches-kernel"),
    pytest.param(DEFAULT_CAPS, raw_clone_newuts, errno.EPERM, id="clone-newuts-denied"),
    pytest.param(WITH_SYS_ADMIN, raw_clone_newuts, "ok", id="clone-newuts-sys-admin"),
    pytest.param(DEFAULT_CAPS, fork_and_reap, 7, id="fork-allowed"),
    pytest.param(DEFAULT_CAPS, spawn_true, 0, id="posix-spawn-falls-back-from-clone3"),
    pytest.param(DEFAULT_CAPS, lambda: (personality(ADDR_NO_RANDOMIZE), personality(0),
                                        personality(0xFFFFFFFF)),
                 (errno.EPERM, "ok", "ok"), id="personality-restricted"),
    pytest.param(DEFAULT_CAPS, lambda: (
        errno_of(lambda: socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM).close()),
        errno_of(lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).close())),
        (errno.EPERM, "ok"), id="socket-vsock-denied"),
    pytest.param(DEFAULT_CAPS, lambda: errno_of(lambda: os.chroot("/")), "ok",
                 id="chroot-with-default-caps"),
    pytest.param([], lambda: errno_of(lambda: os.chroot("/")), errno.EPERM,
                 id="chroot-without-sys-chroot"),
    pytest.param(DEFAULT_CAPS, lambda: c_errno(libc.klogctl(SYSLOG_ACTION_SIZE_BUFFER, None, 0)),
                 errno.EPERM, id="syslog-denied"),
    pytest.param(["CAP_SYSLOG"], lambda: c_errno(
        libc.klogctl(SYSLOG_ACTION_SIZE_BUFFER, None, 0)), "ok", id="syslog-cap-syslog"),
])
def test_default_profile(caps: list[str] | None, probe: Callable[[], object],
                         expected: object) -> None:
    assert run_in_child(default_profile(caps), probe) == expected


@pytest.mark.parametrize("argv, expected", [
    pytest.param(["/bin/true"], Exited(0), id="true"),
    pytest.param(["/bin/sh", "-c", "mkdir /proc/1/x 2>/dev/null; exit 3"], Exited(3),
                 id="shell-exit-code"),
])
def test_default_profile_execve(argv: list[str], expected: Exited) -> None:
    # the pipe to the parent is close-on-exec: a successful exec reports nothing but its exit
    assert run_in_child(default_profile(), lambda: os.execv(argv[0], argv)) == expected
