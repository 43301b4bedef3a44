"""The attacks that broke runc, replayed through corral-runc: each one must fail.

    CVE-2019-5736   a `#!/proc/self/exe` entrypoint; a neighbour opening the waiting
                    init's exe  ->  the host's interpreter is never run nor written
    CVE-2024-21626  process.cwd = /proc/self/fd/N; host fds inherited by corral-runc
                    ->  no host directory reaches the container's process
    CVE-2021-30465  mount destinations through symlinks out of the rootfs, swapped
                    while mounting  ->  every mount lands inside the rootfs
    CVE-2025-31133, the image's /dev/null and /dev/console made links to /proc/sys/...;
    -52565, -52881  sysctl keys that climb out of /proc/sys  ->  no mask or console
                    becomes a mount of a host file; sysctls stay in the container
    CVE-2022-29162  capability sets granted unasked  ->  inheritable/ambient stay empty

Where it helps, a control runs the same mechanism where it is legitimate (a file the
container owns, a real null device, a listed capability) to show the attack itself works
and is stopped only by the protection. Every container is named after `tag` so the leak
check (conftest) sees whatever a test leaves behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.oci.capabilities import ALL as ALL_CAPS
from tests.conftest import ROOT, MakeBundle, Runc
from tests.support import busybox

HOST_PYTHON = os.path.realpath(os.path.join(ROOT, ".venv", "bin", "python3"))
HOST_FILES = (HOST_PYTHON, os.path.join(ROOT, ".venv", "bin", "corral-runc"))
CORE_PATTERN = "/proc/sys/kernel/core_pattern"
# What the kernel answers to a write on a running, sealed or protected executable.
REFUSED = ("Text file busy", "Operation not permitted", "Permission denied")


# ---- helpers ---------------------------------------------------------------------------

def sh(script: str) -> list[str]:
    return ["/bin/sh", "-c", script]


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def host_fingerprint() -> dict[str, str]:
    """What an escape would change on the host: the runtime's interpreter and launcher,
    and the kernel's core_pattern."""
    fp = {p: sha256(p) for p in HOST_FILES}
    fp[CORE_PATTERN] = Path(CORE_PATTERN).read_text()
    return fp


def host_mountpoints(*under: str) -> list[str]:
    """The host's mount points at or below any of UNDER (other sessions mount elsewhere)."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return sorted(mp for mp in points
                  if any(mp == u or mp.startswith(u.rstrip("/") + "/") for u in under))


def fs_path(path: str) -> str:
    """PATH as the root field of a bind mount of it reads: relative to its filesystem."""
    with open("/proc/self/mountinfo") as f:
        mounts = [(line.split()[3], line.split()[4]) for line in f]
    root, mp = max(((r, m) for r, m in mounts
                    if path == m or path.startswith(m.rstrip("/") + "/")),
                   key=lambda rm: len(rm[1]))
    return os.path.normpath(os.path.join(root, path[len(mp):].lstrip("/")))


def mountinfo(text: str) -> list[tuple[str, str]]:
    """(root within the filesystem, mount point) of every line of a mountinfo."""
    return [(line.split()[3], line.split()[4]) for line in text.splitlines() if line.strip()]


def lines_kv(out: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in out.decode().splitlines() if "=" in line)


def status_caps(text: str) -> dict[str, int]:
    return {k: int(v, 16) for k, v in (line.split(":\t") for line in text.splitlines())
            if k.startswith("Cap")}


def ns_pid(host_pid: int) -> int:
    """HOST_PID as its own pid namespace numbers it."""
    with open(f"/proc/{host_pid}/status") as f:
        for line in f:
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    raise AssertionError(f"no NSpid for {host_pid}")


def read_pid(path: Path) -> int:
    return int(path.read_text())


MakeImage = Callable[[], Path]


@pytest.fixture(scope="module")
def image_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(busybox.build_rootfs(str(tmp_path_factory.mktemp("security") / "rootfs")))


@pytest.fixture
def image(image_template: Path, tmp_path: Path) -> MakeImage:
    """image() -> a private busybox rootfs the test may plant things in (the shared one
    is read-only): a copy of one built once for this module."""
    def make() -> Path:
        dest = tmp_path / "rootfs"
        subprocess.run(["cp", "-a", str(image_template), str(dest)], check=True)
        return dest
    return make


def own_bundle(tmp_path: Path, tag: str, rootfs: Path, args: list[str], *, name: str = "bundle",
               edit: Callable[[dict[str, Any]], None] | None = None) -> str:
    cfg = busybox.config(args)
    cfg["linux"]["cgroupsPath"] = f"/{tag}-{name}"  # type: ignore[index]
    if edit:
        edit(cfg)
    return busybox.write_bundle(str(tmp_path / name), str(rootfs), cfg)


edit_bundle = busybox.edit_config


def with_fds(runc: Runc, tmp_path: Path, fds: dict[int, str]) -> Runc:
    """corral-runc started with FDS (number -> host path, opened read-only) already open,
    as a careless caller (a shell, a daemon) would hand them down."""
    wrapper = tmp_path / f"runc-with-fds-{'-'.join(map(str, fds))}"
    redirs = " ".join(f"{n}<{shlex.quote(p)}" for n, p in fds.items())
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(runc.binary)} "$@" {redirs}\n')
    wrapper.chmod(0o755)
    return Runc(str(wrapper), runc.root)


def host_dir(tmp_path: Path) -> Path:
    """A host directory that must never be reached: a marker file and a script that
    announces an escape if it ever runs."""
    d = tmp_path / "host-secret"
    d.mkdir(exist_ok=True)
    (d / "HOST-MARKER").write_text("host\n")
    script = d / "escape"
    script.write_text("#!/bin/sh\necho HOST-ESCAPE\n")
    script.chmod(0o755)
    return d


def wait_for(pred: Callable[[], bool], what: str, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@contextlib.contextmanager
def exec_in_background(runc: Runc, tag: str, args: list[str], pidfile: Path, *,
                       flags: tuple[str, ...] = (), pass_fds: tuple[int, ...] = ()
                       ) -> Iterator[int]:
    """`corral-runc exec` left running, attached: it stays the parent (subreaper) of the
    process and reaps it as soon as the container is deleted, where an `exec -d` process
    would wait for the host's init to reap it. Yields the process's host pid."""
    cmd = [runc.binary, "--root", runc.root, "exec", *flags, "--pid-file", str(pidfile),
           tag, *args]
    err = pidfile.with_suffix(".stderr")
    with open(err, "wb") as f:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=f, pass_fds=pass_fds)
    try:
        wait_for(lambda: pidfile.exists() or p.poll() is not None, "the exec'd process")
        assert pidfile.exists(), f"exec exited {p.returncode}: {err.read_text()}"
        yield read_pid(pidfile)
    finally:
        runc("delete", "--force", tag, check=False)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.fixture
def host_unchanged() -> Iterator[None]:
    before = host_fingerprint()
    yield
    after = host_fingerprint()
    if after[CORE_PATTERN] != before[CORE_PATTERN]:  # put it back before failing
        Path(CORE_PATTERN).write_text(before[CORE_PATTERN])
    assert after == before, "the host's interpreter or core_pattern changed"


# ---- 1. CVE-2019-5736: the host interpreter behind /proc/self/exe ----------------------

EVIL = "#!/proc/self/exe\n"  # the kernel runs the *caller's* executable as interpreter

ATTACK_RUNNING_EXE = r"""
P=%d
echo "exe=$(readlink /proc/$P/exe)"
if echo pwned >/proc/$P/exe; then echo direct=written; else echo direct=refused; fi
(
  exec 3</proc/$P/exe || { echo reopen=no-handle; exit 0; }
  if echo pwned >>/proc/self/fd/3; then echo reopen=written; else echo reopen=refused; fi
)
"""


def test_control_proc_self_exe_script_runs_the_caller(tmp_path: Path) -> None:
    """The premise, on the host: exec'ing a `#!/proc/self/exe` script straight from Python
    runs the Python interpreter itself. corral-runc's init is that Python process."""
    script = tmp_path / "evil"
    script.write_text(EVIL + "import os; print(os.path.realpath('/proc/self/exe'))\n")
    script.chmod(0o755)
    p = subprocess.run([sys.executable, "-c", f"import os; os.execv({str(script)!r}, ['evil'])"],
                       stdout=subprocess.PIPE, timeout=10, check=True)
    assert p.stdout.decode().strip() == os.path.realpath(sys.executable)


@pytest.mark.parametrize("via", [pytest.param("run", id="entrypoint"),
                                 pytest.param("exec", id="exec")])
def test_proc_self_exe_script_does_not_reach_host_interpreter(
        runc: Runc, image: MakeImage, tag: str, tmp_path: Path, host_unchanged: None,
        via: str) -> None:
    rootfs = image()
    (rootfs / "evil").write_text(EVIL)
    (rootfs / "evil").chmod(0o755)
    pidfile = tmp_path / "victim.pid"
    with contextlib.ExitStack() as stack:
        if via == "run":
            b = own_bundle(tmp_path, tag, rootfs, ["/evil"])
            runc("run", "-d", "--pid-file", str(pidfile), "--bundle", b, tag)
            victim = read_pid(pidfile)
        else:
            b = own_bundle(tmp_path, tag, rootfs, ["/bin/sleep", "1000"])
            runc("run", "-d", "--bundle", b, tag)
            victim = stack.enter_context(exec_in_background(runc, tag, ["/evil"], pidfile))
        _attack_running_exe(runc, tag, victim)
        runc("delete", "--force", tag)


def _attack_running_exe(runc: Runc, tag: str, victim: int) -> None:
    """VICTIM (a host pid) runs a `#!/proc/self/exe` script in container TAG."""
    # From the host: whatever the victim runs is not the host's interpreter.
    exe, py = os.stat(f"/proc/{victim}/exe"), os.stat(HOST_PYTHON)
    assert (exe.st_dev, exe.st_ino) != (py.st_dev, py.st_ino)
    assert os.readlink(f"/proc/{victim}/exe") != HOST_PYTHON

    # From inside: the CVE's attacker opens the victim's exe and tries to write it.
    p = runc("exec", tag, *sh(ATTACK_RUNNING_EXE % ns_pid(victim)), check=False)
    out = lines_kv(p.stdout)
    assert out["exe"] and out["exe"] != HOST_PYTHON, p.stdout
    assert out["direct"] == "refused", p.stdout
    assert out["reopen"] in ("refused", "no-handle"), p.stdout
    errors = [line for line in p.stderr.decode().splitlines() if line.startswith("/bin/sh:")]
    assert len(errors) == 2 and all(any(r in e for r in REFUSED) for e in errors), p.stderr


ATTACK_AFTER_EXIT = r"""
P=%d
(
  exec 3</proc/$P/exe || { echo write=no-handle; exit 0; }
  kill -9 $P
  while readlink /proc/$P/exe >/dev/null 2>&1; do usleep 10000; done
  if echo pwned >>/proc/self/fd/3; then echo write=done; else echo write=refused; fi
)
"""


@pytest.mark.parametrize("victim_args,expect_written", [
    pytest.param(["/evil"], False, id="runtime-interpreter-via-evil-script"),
    pytest.param(["/busybox-victim", "sleep", "1000"], True, id="control-container-binary"),
])
def test_exe_handle_cannot_be_written_after_the_process_exits(
        runc: Runc, image: MakeImage, tag: str, tmp_path: Path, host_unchanged: None,
        victim_args: list[str], expect_written: bool) -> None:
    """CVE-2019-5736 proper: hold an fd of the victim's executable, wait until the victim
    is gone (no more "text file busy"), then write through the fd. It works on a binary
    the container owns; what a `#!/proc/self/exe` script reaches must stay unwritable."""
    rootfs = image()
    (rootfs / "evil").write_text(EVIL)
    (rootfs / "evil").chmod(0o755)
    victim_bin = rootfs / "busybox-victim"
    victim_bin.write_bytes(Path(busybox.BUSYBOX).read_bytes())
    victim_bin.chmod(0o755)
    b = own_bundle(tmp_path, tag, rootfs, ["/bin/sleep", "1000"],
                   edit=lambda c: c["root"].update(readonly=False))
    runc("run", "-d", "--bundle", b, tag)
    with exec_in_background(runc, tag, victim_args, tmp_path / "victim.pid") as victim:
        p = runc("exec", tag, *sh(ATTACK_AFTER_EXIT % ns_pid(victim)), check=False)
    assert lines_kv(p.stdout).get("write") == ("done" if expect_written else "refused"), \
        p.stdout + p.stderr
    assert victim_bin.read_bytes().endswith(b"pwned\n") == expect_written


PROBE_INIT = r"""
chk() { n=$1; shift; if "$@" >/dev/null 2>&1; then echo "$n=reachable"; else echo "$n=denied"; fi; }
chk exe cat /proc/1/exe
chk cwd ls /proc/1/cwd/
chk root ls /proc/1/root/
chk hostfd ls /proc/1/fd/7/
chk environ cat /proc/1/environ
echo "exe-link=$(readlink /proc/1/exe)"
"""


def _all_caps_in_userns(c: dict[str, Any], *, join_pid: int = 0) -> None:
    """Run as root with every capability, inside a user namespace of its own (new, or
    JOIN_PID's): the capability-subset rule of ptrace access then no longer protects the
    waiting init (same user namespace, caps a superset of its caps); only its being
    non-dumpable does (its memory belongs to the host's user namespace)."""
    linux = c["linux"]
    if join_pid:
        linux["namespaces"].append({"type": "user", "path": f"/proc/{join_pid}/ns/user"})
    else:
        linux["namespaces"].append({"type": "user"})
        linux["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    c["process"]["capabilities"] = {k: list(ALL_CAPS) for k in ("bounding", "effective",
                                                              "permitted")}
    # sysfs and cgroupfs cannot be mounted from a user namespace: the host's /sys instead
    c["mounts"] = [m for m in c["mounts"] if not m["destination"].startswith("/sys")] + [
        {"destination": "/sys", "type": "bind", "source": "/sys",
         "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]}]


def _peer_in_pidns(tmp_path: Path, tag: str, rootfs: Path, init_pid: int, name: str,
                   userns: bool) -> str:
    def join(c: dict[str, Any]) -> None:
        for ns in c["linux"]["namespaces"]:
            if ns["type"] == "pid":
                ns["path"] = f"/proc/{init_pid}/ns/pid"
        if userns:
            _all_caps_in_userns(c, join_pid=init_pid)
    return own_bundle(tmp_path, tag, rootfs, sh(PROBE_INIT), name=name, edit=join)


@pytest.fixture
def public_image(image_template: Path) -> Iterator[Path]:
    """A rootfs copy the root of a user namespace can reach (pytest's own temporary
    directories are 0700 to the host's root)."""
    with tempfile.TemporaryDirectory(prefix="corral-security-") as d:
        os.chmod(d, 0o755)
        dest = Path(d) / "rootfs"
        subprocess.run(["cp", "-a", str(image_template), str(dest)], check=True)
        yield dest


@pytest.mark.parametrize("neighbour,userns", [
    pytest.param("exec", False, id="exec-into-created"),
    pytest.param("peer", False, id="container-sharing-pidns"),
    pytest.param("exec", True, id="exec-into-created-userns-all-caps"),
    pytest.param("peer", True, id="container-sharing-pidns-userns-all-caps"),
])
def test_waiting_init_is_unreachable_from_its_pid_namespace(
        runc: Runc, rootfs: str, public_image: Path, tag: str, tmp_path: Path,
        host_unchanged: None, neighbour: str, userns: bool) -> None:
    """While created, PID 1 waits in the sealed exec helper, non-dumpable, and the
    caller's fds (here a host directory as fd 7) are closed: nothing in its pid namespace
    may open its exe, cwd, root, fds or environ. With the default capabilities the kernel already refuses (the neighbour's
    caps are no superset of the init's); in a user namespace with all capabilities only
    the init being non-dumpable stands in the way (the runtime's prctl, and the kernel's
    own rule once the init changed its uid). Once started, PID 1 is the user's program:
    the same probe then reaches it (the control)."""
    image = public_image if userns else Path(rootfs)
    b = own_bundle(tmp_path, tag, image, ["/bin/sleep", "1000"],
                   edit=_all_caps_in_userns if userns else None)
    pidfile = tmp_path / "init.pid"
    with_fds(runc, tmp_path, {7: str(host_dir(tmp_path))})(
        "create", "--pid-file", str(pidfile), "--bundle", b, tag)
    init = read_pid(pidfile)

    def probe(when: str) -> dict[str, str]:
        if neighbour == "exec":
            return lines_kv(runc("exec", tag, *sh(PROBE_INIT)).stdout)
        peer = f"{tag}-peer-{when}"
        p = runc("run", "--bundle",
                 _peer_in_pidns(tmp_path, tag, image, init, f"peer-{when}", userns), peer)
        return lines_kv(p.stdout)

    got = probe("created")
    if userns:
        # CAP_SYS_PTRACE in the container's own user namespace does reach the waiting
        # PID 1 (the exec helper runs in that namespace), but all it finds is the
        # container's own: the sealed memfd as exe, the container's root, cwd, environ.
        assert got["exe-link"] == "/memfd:corral-exec (deleted)"
        assert got["hostfd"] == "denied"
    else:
        assert got == {"exe": "denied", "cwd": "denied", "root": "denied",
                       "hostfd": "denied", "environ": "denied", "exe-link": ""}
    runc("start", tag)
    after = probe("running")
    assert after["exe-link"] == "/bin/busybox"
    assert (after["exe"], after["cwd"], after["root"]) == ("reachable",) * 3
    assert after["hostfd"] == "denied"  # closed at exec
    runc("delete", "--force", tag)


PROBE_INIT_FDS = r"""
for f in /proc/1/fd/*; do [ -d "$f/" ] && echo "dir-fd-${f##*/}=$(readlink "$f")"; done
echo "exe=$(readlink /proc/1/exe)"
"""


@pytest.mark.parametrize("what", [
    pytest.param("host-directory-fd", id="host-directory-fd"),
    pytest.param("host-interpreter", id="host-interpreter"),
])
def test_waiting_init_with_ptrace_capable_neighbour(
        runc: Runc, bundle: MakeBundle, tag: str, tmp_path: Path, what: str) -> None:
    """Non-dumpable is no barrier to CAP_SYS_PTRACE (a debug sidecar in a shared pid
    namespace has it): what the waiting init holds must then be harmless on its own."""
    def add_ptrace(c: dict[str, Any]) -> None:
        for kind in ("bounding", "effective", "permitted"):
            c["process"]["capabilities"][kind].append("CAP_SYS_PTRACE")
    b = edit_bundle(bundle(["/bin/sleep", "1000"]), add_ptrace)
    with_fds(runc, tmp_path, {7: str(host_dir(tmp_path))})("create", "--bundle", b, tag)
    out = lines_kv(runc("exec", tag, *sh(PROBE_INIT_FDS)).stdout)
    runc("delete", "--force", tag)
    assert out["exe"], "the probe could not read the init's exe at all"
    if what == "host-directory-fd":
        assert not {k: v for k, v in out.items() if k.startswith("dir-fd-")}
    else:
        assert out["exe"] != HOST_PYTHON


# ---- 2. CVE-2024-21626: host fds and a host cwd --------------------------------------

CWD_PROBE = "pwd; ls; cat HOST-MARKER 2>/dev/null; echo done"


def _cwd_verdict(p: subprocess.CompletedProcess[bytes]) -> str:
    """'refused', 'in-container', or what went wrong."""
    if b"HOST-MARKER" in p.stdout or b"host" in p.stdout:
        return f"reached the host directory: {p.stdout!r}"
    if p.returncode != 0:
        return "refused" if b"process.cwd" in p.stderr else f"failed otherwise: {p.stderr!r}"
    pwd = p.stdout.split(b"\n")[0]
    return "in-container" if pwd.startswith(b"/") and not pwd.startswith(b"/tmp") \
        else f"unexpected cwd {pwd!r}"


@pytest.mark.parametrize("verb", ["run", "exec"])
def test_cwd_through_proc_self_fd_is_refused(
        runc: Runc, bundle: MakeBundle, tag: str, tmp_path: Path, verb: str) -> None:
    """process.cwd (or exec --cwd) = /proc/self/fd/N for every N in 3..10 the runtime or
    its caller may hold open; corral-runc is also handed a host directory as fd 7. (One
    container for all N: each refused exec costs a container delete ~1 s, finding 3.)"""
    hostile = with_fds(runc, tmp_path, {7: str(host_dir(tmp_path))})
    if verb == "exec":
        runc("run", "-d", "--bundle", bundle(["/bin/sleep", "1000"]), tag)
    verdicts = {}
    for n in range(3, 11):
        cwd = f"/proc/self/fd/{n}"
        if verb == "run":
            b = edit_bundle(bundle(sh(CWD_PROBE), name=f"cwd-{n}"),
                            lambda c: c["process"].update(cwd=cwd))  # noqa: B023
            p = hostile("run", "--bundle", b, f"{tag}-{n}", check=False)
        else:
            p = hostile("exec", "--cwd", cwd, tag, *sh(CWD_PROBE), check=False)
        verdicts[n] = _cwd_verdict(p)
    runc("delete", "--force", tag, check=False)
    assert {n: v for n, v in verdicts.items() if v not in ("refused", "in-container")} == {}


ESCAPES = [
    pytest.param(["/proc/self/fd/7/escape"], id="host-script"),
    pytest.param(["/proc/self/fd/7/busybox-escape", "echo", "HOST-ESCAPE"], id="host-binary"),
]


@pytest.mark.parametrize("args", ESCAPES)
@pytest.mark.parametrize("verb", ["run", "exec"])
def test_program_through_inherited_host_fd_does_not_run(
        runc: Runc, bundle: MakeBundle, tag: str, tmp_path: Path, verb: str,
        args: list[str]) -> None:
    """args[0] = /proc/self/fd/7/..., fd 7 being a host directory corral-runc inherited:
    the host's program must not run (the fd is gone by the time it is exec'd)."""
    secret = host_dir(tmp_path)
    (secret / "busybox-escape").write_bytes(Path(busybox.BUSYBOX).read_bytes())
    (secret / "busybox-escape").chmod(0o755)
    hostile = with_fds(runc, tmp_path, {7: str(secret)})
    if verb == "run":
        p = hostile("run", "--bundle", bundle(args), tag, check=False)
    else:
        runc("run", "-d", "--bundle", bundle(["/bin/sleep", "1000"]), tag)
        p = hostile("exec", tag, *args, check=False)
    assert b"HOST-ESCAPE" not in p.stdout
    assert p.returncode != 0
    runc("delete", "--force", tag, check=False)


@pytest.mark.parametrize("verb,preserve", [
    pytest.param("run", 0, id="run"),
    pytest.param("run", 1, id="run-preserve-fds-1"),
    pytest.param("exec", 0, id="exec"),
    pytest.param("exec", 1, id="exec-preserve-fds-1"),
])
def test_only_stdio_and_preserved_fds_reach_the_process(
        runc: Runc, bundle: MakeBundle, tag: str, tmp_path: Path, verb: str,
        preserve: int) -> None:
    """corral-runc inherits a host directory as fd 3 and another one as an arbitrary fd
    (pass_fds); the container's process holds 0, 1, 2 and, with --preserve-fds 1, fd 3."""
    secret = host_dir(tmp_path)
    stray = os.open(secret, os.O_RDONLY | os.O_DIRECTORY)
    try:
        hostile = with_fds(runc, tmp_path, {3: str(tmp_path)})
        flags = ["--preserve-fds", str(preserve)] if preserve else []
        pidfile = tmp_path / "proc.pid"
        sleeper = ["/bin/sleep", "1000"]
        with contextlib.ExitStack() as stack:
            if verb == "run":
                hostile("run", "-d", *flags, "--pid-file", str(pidfile), "--bundle",
                        bundle(sleeper), tag, pass_fds=(stray,))
                pid = read_pid(pidfile)
            else:
                runc("run", "-d", "--bundle", bundle(sleeper), tag)
                pid = stack.enter_context(exec_in_background(
                    hostile, tag, sleeper, pidfile, flags=tuple(flags), pass_fds=(stray,)))
            os.close(stray)
            stray = -1
            fds = {int(n): os.readlink(f"/proc/{pid}/fd/{n}")
                   for n in os.listdir(f"/proc/{pid}/fd")}
            # The same, as the container sees it.
            seen = runc("exec", tag, *sh(f"ls /proc/{ns_pid(pid)}/fd; :")).stdout.split()
            runc("delete", "--force", tag)
    finally:
        if stray >= 0:
            os.close(stray)
    expected = {0, 1, 2} | ({3} if preserve else set())
    assert set(fds) == expected, fds
    assert sorted(map(int, seen)) == sorted(expected)
    leaked = {n: t for n, t in fds.items() if n > 2 and t.startswith(str(tmp_path))}
    assert leaked == ({3: str(tmp_path)} if preserve else {}), fds


# ---- 3. CVE-2021-30465: mount destinations through symlinks --------------------------

# (links to plant: name in the rootfs -> target; mount destination; where the mount
# must show up in the container, with @H standing for the host directory's path and @T for
# the test's tag; whether
# that in-root target exists beforehand). Targets that do not exist in the rootfs may make
# the mount fail, but never escape.
MOUNT_CASES = [
    pytest.param({"mnt": "@H"}, "/mnt/data", "@H/data", True, id="abs-link-to-host-dir"),
    pytest.param({"mnt": "@H"}, "/mnt", "@H", True, id="abs-link-as-last-component"),
    pytest.param({"mnt": "/"}, "/mnt/@T", "/@T", True, id="link-to-host-root"),
    pytest.param({"up": "../../../../../../../.."}, "/up/@T", "/@T", True, id="dotdot-link"),
    pytest.param({"a": "/b", "b": "@H"}, "/a/data", "@H/data", True, id="link-chain"),
    pytest.param({}, "/../../../../../../..@H/data", "@H/data", True,
                 id="dotdot-in-destination"),
    pytest.param({"mnt": "@H"}, "/mnt/data", "@H/data", False,
                 id="abs-link-dangling-in-root"),
    pytest.param({"etc/victim": "@H/HOST-MARKER"}, "/etc/victim", "@H/HOST-MARKER", True,
                 id="file-through-abs-link"),
]


@pytest.mark.parametrize("links,dest,resolved,precreate", MOUNT_CASES)
def test_mount_destination_through_symlink_stays_in_root(
        runc: Runc, image: MakeImage, tag: str, tmp_path: Path, links: dict[str, str],
        dest: str, resolved: str, precreate: bool) -> None:
    host = host_dir(tmp_path)
    host_before = sorted(os.listdir(host)), (host / "HOST-MARKER").read_text()

    def sub(text: str) -> str:
        return text.replace("@H", str(host)).replace("@T", tag)
    dest, resolved = sub(dest), sub(resolved)
    is_file = resolved.endswith("HOST-MARKER")
    src = tmp_path / ("src-file" if is_file else "src")
    if is_file:
        src.write_text("volume\n")
    else:
        src.mkdir()
        (src / "marker").write_text("volume\n")
    rootfs = image()
    for name, target in links.items():
        (rootfs / name).symlink_to(sub(target))
    if precreate:
        in_root = rootfs / resolved.lstrip("/")
        in_root.parent.mkdir(parents=True, exist_ok=True)
        if is_file:
            in_root.write_text("image\n")
        else:
            in_root.mkdir(exist_ok=True)
    read = dest if is_file else dest + "/marker"
    b = own_bundle(tmp_path, tag, rootfs, sh(f"cat {read}; cat /proc/self/mountinfo"),
                   edit=lambda c: c["mounts"].append(
                       {"destination": dest, "type": "bind", "source": str(src),
                        "options": ["rbind"]}))
    watched = (str(tmp_path), "/" + tag)
    mounts_before = host_mountpoints(*watched)
    p = runc("run", "--bundle", b, tag, check=False)

    # The host: nothing mounted, nothing created, nothing written.
    assert host_mountpoints(*watched) == mounts_before
    assert (sorted(os.listdir(host)), (host / "HOST-MARKER").read_text()) == host_before
    assert not os.path.lexists("/" + tag)
    if not precreate and p.returncode != 0:
        assert b"mounts[" in p.stderr, p.stderr
        return
    assert p.returncode == 0, p.stderr
    # The container: the volume is where the link leads *inside* the rootfs.
    assert p.stdout.startswith(b"volume\n")
    assert (fs_path(str(src)), resolved) in mountinfo(p.stdout.decode().split("\n", 1)[1])


# Exchanges two paths atomically (renameat2 RENAME_EXCHANGE) until killed, as the CVE's
# exploit did from a second container; a process of its own, so the GIL does not slow
# the runs down.
SWAPPER = r"""
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
a, b = sys.argv[1].encode(), sys.argv[2].encode()
print("swapping", flush=True)
while True:
    if libc.renameat2(-100, a, -100, b, 2) != 0:
        sys.exit(ctypes.get_errno())
"""


def test_mount_destination_swapped_during_create_stays_in_root(
        runc: Runc, image: MakeImage, tag: str, tmp_path: Path) -> None:
    """The CVE's race: while corral-runc mounts on /mnt/data, another process keeps
    exchanging /mnt (a directory) with a symlink to a host directory. Each run must put
    the mount at one of the two in-root places, never on the host."""
    host = host_dir(tmp_path)
    host_before = sorted(os.listdir(host))
    src = tmp_path / "src"
    src.mkdir()
    (src / "marker").write_text("volume\n")
    rootfs = image()
    (rootfs / "mnt").mkdir(exist_ok=True)
    (rootfs / "mnt-link").symlink_to(str(host))
    (rootfs / str(host).lstrip("/")).mkdir(parents=True)
    b = own_bundle(tmp_path, tag, rootfs, sh("cat /proc/self/mountinfo"),
                   edit=lambda c: c["mounts"].append(
                       {"destination": "/mnt/data", "type": "bind", "source": str(src),
                        "options": ["rbind"]}))
    swapper = subprocess.Popen([sys.executable, "-c", SWAPPER, str(rootfs / "mnt"),
                                str(rootfs / "mnt-link")], stdout=subprocess.PIPE)
    places: set[str] = set()
    try:
        assert swapper.stdout is not None and swapper.stdout.readline() == b"swapping\n"
        for i in range(12):
            p = runc("run", "--bundle", b, f"{tag}-{i}", check=False)
            if p.returncode != 0:
                assert b"mounts[" in p.stderr, p.stderr
                continue
            mine = [mp for root, mp in mountinfo(p.stdout.decode()) if root == fs_path(str(src))]
            # (a directory mounted on may have been renamed to mnt-link since)
            assert len(mine) == 1 and mine[0] in (
                "/mnt/data", "/mnt-link/data", f"{host}/data"), mine
            places.add(mine[0])
        assert swapper.poll() is None, f"the swapper stopped: errno {swapper.returncode}"
    finally:
        swapper.kill()
        swapper.wait()
        swapper.stdout.close()  # type: ignore[union-attr]
    assert places, "no run succeeded"
    assert sorted(os.listdir(host)) == host_before


# ---- 4. CVE-2025-31133 / 52565 / 52881: /dev/null, /dev/console, sysctls --------------

def _dev_from_image(rootfs: Path) -> Callable[[dict[str, Any]], None]:
    """Mount the image's own dev directory on /dev (so the runtime creates no devices)."""
    def edit(c: dict[str, Any]) -> None:
        for m in c["mounts"]:
            if m["destination"] == "/dev":
                m.clear()
                m.update(destination="/dev", type="bind", source=str(rootfs / "dev"),
                         options=["rbind", "nosuid"])
    return edit


def _plant(path: Path, kind: str) -> None:
    if kind == "missing":
        return
    if kind.startswith("symlink:"):
        path.symlink_to(kind.split(":", 1)[1])
    elif kind == "file":
        path.write_text("")
    elif kind == "dir":
        path.mkdir()
    elif kind.startswith("chr:"):
        major, minor = map(int, kind[4:].split(","))
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(major, minor))


@pytest.mark.parametrize("null,refused", [
    pytest.param(f"symlink:{CORE_PATTERN}", True, id="symlink-to-core-pattern"),
    pytest.param("symlink:../proc/sys/kernel/core_pattern", True, id="relative-symlink"),
    pytest.param("file", True, id="regular-file"),
    pytest.param("dir", True, id="directory"),
    pytest.param("chr:1,5", True, id="zero-device"),
    pytest.param("missing", True, id="missing"),
    pytest.param("chr:1,3", False, id="control-real-null-device"),
])
def test_masked_paths_refuse_a_fake_dev_null(
        runc: Runc, image: MakeImage, tag: str, tmp_path: Path, host_unchanged: None,
        null: str, refused: bool) -> None:
    rootfs = image()
    _plant(rootfs / "dev" / "null", null)
    script = ("wc -c </proc/timer_list; grep -c ' /proc/timer_list ' /proc/self/mountinfo; "
              "stat -c %t,%T /proc/timer_list")
    b = own_bundle(tmp_path, tag, rootfs, sh(script), edit=_dev_from_image(rootfs))
    p = runc("run", "--bundle", b, tag, check=False)
    if refused:
        assert p.returncode != 0
        assert b"/dev/null" in p.stderr, p.stderr
    else:
        # With a real null device the mask works: the file reads empty and is the device.
        assert p.returncode == 0, p.stderr
        assert p.stdout.split() == [b"0", b"1", b"1,3"], p.stdout


def _recv_fd(conn: socket.socket) -> int:
    _, anc, _, _ = conn.recvmsg(64, socket.CMSG_SPACE(4))
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            return int(struct.unpack("i", data[:4])[0])
    raise AssertionError("no fd on the console socket")


@contextlib.contextmanager
def console_socket(tmp_path: Path) -> Iterator[tuple[str, Callable[[], int]]]:
    """A --console-socket: its path, and a function that takes the pty master sent to it."""
    path = str(tmp_path / "console.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    srv.settimeout(10)
    held: list[int] = []

    def take() -> int:
        conn, _ = srv.accept()
        with conn:
            held.append(_recv_fd(conn))
        return held[-1]
    try:
        yield path, take
    finally:
        srv.close()
        for fd in held:
            os.close(fd)


@pytest.mark.parametrize("console,refused", [
    pytest.param(f"symlink:{CORE_PATTERN}", True, id="symlink-to-core-pattern"),
    pytest.param("symlink:../proc/sysrq-trigger", True, id="relative-symlink"),
    pytest.param("dir", True, id="directory"),
    pytest.param("file", False, id="control-regular-file"),
])
def test_console_is_not_mounted_through_a_planted_link(
        runc: Runc, image: MakeImage, tag: str, tmp_path: Path, host_unchanged: None,
        console: str, refused: bool) -> None:
    """process.terminal with /dev from the image, whose dev/console the image chose."""
    rootfs = image()
    _plant(rootfs / "dev" / "null", "chr:1,3")
    (rootfs / "dev" / "ptmx").symlink_to("pts/ptmx")
    _plant(rootfs / "dev" / "console", console)

    def edit(c: dict[str, Any]) -> None:
        _dev_from_image(rootfs)(c)
        c["process"]["terminal"] = True
    b = own_bundle(tmp_path, tag, rootfs, ["/bin/sleep", "1000"], edit=edit)
    pidfile = tmp_path / "init.pid"
    with console_socket(tmp_path) as (sock, take_master):
        p = runc("create", "--console-socket", sock, "--pid-file", str(pidfile),
                 "--bundle", b, tag, check=False)
        if refused:
            assert p.returncode != 0
            assert b"console" in p.stderr, p.stderr
            return
        assert p.returncode == 0, p.stderr
        take_master()
        with open(f"/proc/{read_pid(pidfile)}/mountinfo") as f:
            points = [mp for _, mp in mountinfo(f.read())]
        runc("delete", "--force", tag)
    assert "/dev/console" in points
    assert not any(mp.startswith(("/proc/sys", "/proc/sysrq")) and mp != "/proc/sys"
                   for mp in points), points


@pytest.mark.parametrize("key", [
    pytest.param("kernel/core_pattern", id="slash"),
    pytest.param("net..ipv4.ip_forward", id="empty-component"),
    pytest.param("..kernel.core_pattern", id="leading-dots"),
    pytest.param(".kernel.core_pattern", id="leading-dot"),
    pytest.param("net.ipv4/../../kernel/core_pattern", id="slash-dotdot"),
    pytest.param("", id="empty"),
])
def test_sysctl_key_that_could_leave_proc_sys_is_rejected(
        runc: Runc, bundle: MakeBundle, tag: str, host_unchanged: None, key: str) -> None:
    # The value is the host's own: should the key get through, the host does not change.
    value = Path(CORE_PATTERN).read_text().rstrip("\n")
    b = edit_bundle(bundle(["/bin/true"]), lambda c: c["linux"].update(sysctl={key: value}))
    p = runc("run", "--bundle", b, tag, check=False)
    assert p.returncode == 1
    assert b"linux.sysctl" in p.stderr and b"not a valid sysctl name" in p.stderr, p.stderr
    assert not os.path.exists(os.path.join(runc.root, tag))


def test_control_sysctl_lands_in_the_container_namespace(
        runc: Runc, bundle: MakeBundle, tag: str) -> None:
    key = "/proc/sys/kernel/shm_rmid_forced"  # an ipc-namespace sysctl
    host_value = Path(key).read_text()
    new = "0" if host_value.strip() == "1" else "1"
    b = edit_bundle(bundle(["/bin/cat", key]),
                    lambda c: c["linux"].update(sysctl={"kernel.shm_rmid_forced": new}))
    try:
        assert runc("run", "--bundle", b, tag).stdout.decode().strip() == new
    finally:
        leaked = Path(key).read_text()
        if leaked != host_value:
            Path(key).write_text(host_value)
    assert leaked == host_value, "the write reached the host's ipc namespace"


def _drop_namespace(kind: str) -> Callable[[dict[str, Any]], None]:
    def edit(c: dict[str, Any]) -> None:
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != kind]
    return edit


@pytest.mark.parametrize("sysctl,ns_edit", [
    pytest.param("kernel.core_pattern", None, id="kernel.core_pattern-not-namespaced"),
    pytest.param("net.ipv4.ip_forward", "network", id="net-without-network-namespace"),
])
def test_sysctl_outside_the_container_namespaces_is_refused(
        runc: Runc, bundle: MakeBundle, tag: str, host_unchanged: None, sysctl: str,
        ns_edit: str | None) -> None:
    # The current host value: if the runtime does write it, the host does not change.
    current = Path("/proc/sys/" + sysctl.replace(".", "/")).read_text().rstrip("\n")

    def edit(c: dict[str, Any]) -> None:
        c["linux"]["sysctl"] = {sysctl: current}
        if ns_edit:
            _drop_namespace(ns_edit)(c)
    p = runc("run", "--bundle", edit_bundle(bundle(["/bin/true"]), edit), tag, check=False)
    assert p.returncode == 1
    assert b"linux.sysctl" in p.stderr, p.stderr


# ---- 5. CVE-2022-29162: capabilities nobody asked for --------------------------------

NET_BIND, KILL, AUDIT_WRITE = 1 << 10, 1 << 5, 1 << 29
BASE = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]


@pytest.mark.parametrize("caps,uid,expected", [
    pytest.param({"bounding": BASE, "effective": BASE, "permitted": BASE}, 0,
                 {"CapInh": 0, "CapAmb": 0, "CapEff": NET_BIND | KILL | AUDIT_WRITE},
                 id="root-bounding-effective-permitted-only"),
    pytest.param({"bounding": BASE, "effective": BASE, "permitted": BASE,
                  "ambient": ["CAP_NET_BIND_SERVICE"]}, 1000,
                 {"CapInh": 0, "CapAmb": 0, "CapEff": 0, "CapPrm": 0},
                 id="ambient-listed-without-inheritable"),
    pytest.param({"bounding": BASE, "effective": BASE, "permitted": BASE}, 1000,
                 {"CapInh": 0, "CapAmb": 0, "CapEff": 0, "CapPrm": 0},
                 id="non-root-without-ambient"),
    pytest.param({"bounding": BASE, "effective": BASE, "permitted": BASE,
                  "inheritable": ["CAP_NET_BIND_SERVICE"],
                  "ambient": ["CAP_NET_BIND_SERVICE"]}, 1000,
                 {"CapInh": NET_BIND, "CapAmb": NET_BIND, "CapEff": NET_BIND},
                 id="control-ambient-and-inheritable-listed"),
])
def test_capability_sets_are_exactly_what_was_asked(
        runc: Runc, bundle: MakeBundle, tag: str, caps: dict[str, list[str]], uid: int,
        expected: dict[str, int]) -> None:
    def edit(c: dict[str, Any]) -> None:
        c["process"]["capabilities"] = caps
        c["process"]["user"] = {"uid": uid, "gid": uid}
    p = runc("run", "--bundle", edit_bundle(bundle(["/bin/cat", "/proc/self/status"]), edit),
             tag)
    got = status_caps(p.stdout.decode())
    assert {k: got[k] for k in expected} == expected


def _file_caps(inheritable: int) -> bytes:
    """security.capability (VFS_CAP_REVISION_2): file-inheritable INHERITABLE, no
    file-permitted, the effective bit set (what `setcap CAPS+ei` writes)."""
    return struct.pack("<IIIII", 0x02000001, 0, inheritable, 0, 0)


@pytest.mark.parametrize("inheritable,gained", [
    pytest.param([], 0, id="inheritable-not-listed"),
    pytest.param(["CAP_NET_BIND_SERVICE"], NET_BIND, id="control-inheritable-listed"),
])
def test_file_inheritable_capabilities_give_nothing_unasked(
        runc: Runc, image: MakeImage, tag: str, tmp_path: Path, inheritable: list[str],
        gained: int) -> None:
    """The CVE's way in: a binary in the image with file-inheritable capabilities, run by
    a non-root user, gains whatever inheritable set the runtime left it."""
    rootfs = image()
    capbin = rootfs / "busybox-caps"
    capbin.write_bytes(Path(busybox.BUSYBOX).read_bytes())
    capbin.chmod(0o755)
    os.setxattr(capbin, "security.capability", _file_caps(NET_BIND | KILL))

    def edit(c: dict[str, Any]) -> None:
        c["process"]["user"] = {"uid": 1000, "gid": 1000}
        c["process"]["noNewPrivileges"] = False
        c["process"]["capabilities"] = {"bounding": BASE, "effective": BASE, "permitted": BASE,
                                        "inheritable": inheritable}
    b = own_bundle(tmp_path, tag, rootfs, ["/busybox-caps", "cat", "/proc/self/status"],
                   edit=edit)
    got = status_caps(runc("run", "--bundle", b, tag).stdout.decode())
    assert got["CapEff"] == gained and got["CapPrm"] == gained, got


@pytest.mark.parametrize("nnp,expected", [pytest.param(True, "1", id="noNewPrivileges"),
                                          pytest.param(False, "0", id="control-off")])
def test_no_new_privs(runc: Runc, bundle: MakeBundle, tag: str, nnp: bool,
                      expected: str) -> None:
    b = edit_bundle(bundle(["/bin/cat", "/proc/self/status"]),
                    lambda c: c["process"].update(noNewPrivileges=nnp))
    status = runc("run", "--bundle", b, tag).stdout.decode()
    assert f"NoNewPrivs:\t{expected}\n" in status


def test_host_mounts_are_invisible(runc: Runc, bundle: MakeBundle, tag: str) -> None:
    """Every mount point the container sees is its root or one the config asked for."""
    b = bundle(["/bin/cat", "/proc/self/mountinfo"])
    with open(os.path.join(b, "config.json")) as f:
        cfg = json.load(f)
    asked = ([m["destination"] for m in cfg["mounts"]] + cfg["linux"]["maskedPaths"]
             + cfg["linux"]["readonlyPaths"])
    points = [mp for _, mp in mountinfo(runc("run", "--bundle", b, tag).stdout.decode())]
    assert points[0] == "/" and len(points) > len(cfg["mounts"])
    stray = [mp for mp in points[1:]
             if not any(mp == a or mp.startswith(a.rstrip("/") + "/") for a in asked)]
    assert not stray, stray
    assert not [mp for mp in points if mp.startswith(("/work", "/tmp", "/home", "/run"))]
