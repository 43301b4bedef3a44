"""corral-runc run in a forked child of the shim (shim/inproc.py) behaves as the exec'd
launcher: the same output, exit codes and error messages; and the child starts as a
fresh process would (only stdio open, PATH the whole environment, default signals)."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from runtime.service.shim import inproc

ROOT = Path(__file__).resolve().parents[4]
LAUNCHER = ROOT / ".venv" / "bin" / "corral-runc"
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}


def via_fork(argv: list[str], entry: object = None) -> tuple[int, bytes, bytes]:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            open(os.devnull, "rb") as null:
        pid = inproc.spawn(argv, stdio=(null.fileno(), out.fileno(), err.fileno()), env=ENV,
                           entry=entry)  # type: ignore[arg-type]
        _, status = os.waitpid(pid, 0)
        out.seek(0)
        err.seek(0)
        return os.waitstatus_to_exitcode(status), out.read(), err.read()


def via_exec(argv: list[str]) -> tuple[int, bytes, bytes]:
    p = subprocess.run([str(LAUNCHER), *argv], capture_output=True, env=ENV, check=False,
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


@pytest.mark.parametrize(("argv", "code"), [
    pytest.param(["--version"], 0, id="version"),
    pytest.param(["no-such-verb"], 1, id="unknown-verb"),
    pytest.param(["--log-format", "xml", "list"], 1, id="bad-global-flag"),
    pytest.param(["--root", "{root}", "state", "nope"], 1, id="state-of-missing-container"),
    pytest.param(["--root", "{root}", "delete", "nope"], 1, id="delete-of-missing-container"),
    pytest.param(["--root", "{root}", "kill", "nope", "9"], 1,
                 id="kill-of-missing-container"),
    pytest.param(["--root", "{root}", "create", "--bundle", "{root}/none", "c1"], 1,
                 id="create-without-bundle"),
    pytest.param(["--root", "{root}", "list"], 0, id="list-empty"),
])
def test_same_result_as_the_exec_launcher(argv: list[str], code: int, tmp_path: Path) -> None:
    if not LAUNCHER.exists():
        pytest.fail(f"{LAUNCHER}: missing (scripts/make_launchers.py writes it)")
    args = [a.format(root=tmp_path) for a in argv]
    forked, execd = via_fork(args), via_exec(args)
    assert forked == execd
    assert forked[0] == code
    assert forked[1 if code == 0 else 2]  # something said, on the right stream


def report_state(argv: list[str]) -> int:
    """As the runtime's CLI would be called: tell the test what the child started with."""
    handlers = {name: signal.getsignal(getattr(signal, name))
                for name in ("SIGCHLD", "SIGTERM", "SIGHUP", "SIGINT", "SIGPIPE")}
    sys.stdout.write(json.dumps({
        "argv": argv, "env": dict(os.environ), "fds": sorted(os.listdir("/proc/self/fd")),
        "wakeup": signal.set_wakeup_fd(-1),
        "handlers": {k: v.name if isinstance(v, signal.Handlers) else getattr(v, "__name__", "")
                     for k, v in handlers.items()},
    }))
    return 7


def test_child_starts_as_if_exec(tmp_path: Path) -> None:
    # what a shim holds when it forks: a wakeup fd, Python handlers, other open fds
    r, w = os.pipe()
    os.set_blocking(w, False)
    keep = os.open(tmp_path, os.O_RDONLY)  # inheritable or not: fork keeps both
    os.set_inheritable(keep, True)
    old_wakeup = signal.set_wakeup_fd(w)
    old = {s: signal.signal(s, lambda *_: None) for s in (signal.SIGCHLD, signal.SIGTERM)}
    os.environ["CORRAL_TEST_SECRET"] = "1"
    try:
        rc, out, err = via_fork(["a", "b"], entry=report_state)
    finally:
        del os.environ["CORRAL_TEST_SECRET"]
        signal.set_wakeup_fd(old_wakeup)
        for s, h in old.items():
            signal.signal(s, h)
        for fd in (r, w, keep):
            os.close(fd)
    assert (rc, err) == (7, b"")
    state = json.loads(out)
    assert state["argv"] == ["a", "b"]
    assert state["env"] == ENV
    assert state["fds"] == ["0", "1", "2", "3"]  # 3: listdir's own fd of /proc/self/fd
    assert state["wakeup"] == -1
    assert state["handlers"] == {"SIGCHLD": "SIG_DFL", "SIGTERM": "SIG_DFL", "SIGHUP": "SIG_DFL",
                                 "SIGINT": "default_int_handler", "SIGPIPE": "SIG_IGN"}


@pytest.mark.parametrize(("raised", "code", "message"), [
    pytest.param(SystemExit(3), 3, b"", id="sys-exit-code"),
    pytest.param(SystemExit("bye"), 1, b"", id="sys-exit-message"),
    pytest.param(RuntimeError("boom"), 1, b"corral-runc: RuntimeError: boom\n",
                 id="uncaught-exception"),
])
def test_exit_code_of_a_raising_entry(raised: BaseException, code: int,
                                      message: bytes) -> None:
    def entry(argv: list[str]) -> int:
        raise raised
    rc, _, err = via_fork([], entry=entry)
    assert (rc, err) == (code, message)


def test_preload_imports_the_runtime_without_running_it() -> None:
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
            "from runtime.service.shim import inproc; inproc.preload(); "
            "print(all(m in sys.modules for m in inproc.MODULES))")
    p = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                       check=True, cwd="/")
    assert p.stdout == b"True\n" and p.stderr == b""


# What the parent does once for its children (preload, use_environ): a fresh interpreter
# plays the parent, so the test process's own environment and fds 0-2 stay as they are.
PARENT = """
import json, os, sys
sys.path.insert(0, {root!r})
from runtime.service.shim import inproc
{setup}
def entry(argv):
    sys.stdout.write("out:" + json.dumps({{"env": dict(os.environ),
        "inheritable": [os.get_inheritable(n) for n in range(3)]}}))
    sys.stderr.write("err")
    return 5
pid = inproc.spawn([], stdio={stdio}, env={env!r}, entry=entry)
print(json.dumps({{"rc": os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]),
                   "parent_env": dict(os.environ),
                   "streams_made": inproc._made is not None}}), file=open({report!r}, "w"))
"""


def as_parent(*, setup: str, stdio: str, tmp_path: Path,
              close_stdin: bool = False) -> tuple[dict[str, object], bytes, bytes]:
    """Run PARENT with fd 1 -> tmp/a, fd 2 -> tmp/b; (its report, a's and b's bytes)."""
    a, b, report = tmp_path / "a", tmp_path / "b", tmp_path / "report"
    code = PARENT.format(root=str(ROOT), setup=setup, stdio=stdio, env=ENV,
                         report=str(report))
    with open(a, "wb") as fa, open(b, "wb") as fb:
        subprocess.run([sys.executable, "-I", "-S", "-c", code], stdout=fa, stderr=fb,
                       stdin=subprocess.DEVNULL, check=False, cwd="/",
                       env={"PATH": "/usr/bin:/bin", "CORRAL_TEST_SECRET": "1"},
                       preexec_fn=(lambda: os.close(0)) if close_stdin else None)
    return json.loads(report.read_bytes()), a.read_bytes(), b.read_bytes()


PRELOADED = f"inproc.preload(); inproc.use_environ({ENV!r})"  # as the fork server does


@pytest.mark.parametrize(("setup", "stdio", "close_stdin", "out_in"), [
    pytest.param("", "(0, 1, 2)", False, "a", id="in-place"),
    pytest.param("", "(0, 2, 1)", False, "b", id="crossed"),
    pytest.param(PRELOADED, "(0, 1, 2)", False, "a", id="preloaded-in-place"),
    pytest.param(PRELOADED, "(0, 2, 1)", False, "b", id="preloaded-crossed"),
    # fd 0 closed when the parent makes its children's stream objects: each child makes its
    # own (stdin from a /dev/null kept at fd 10, out of 0-2's way)
    pytest.param("r = os.open('/dev/null', os.O_RDONLY); fd = os.dup2(r, 10); os.close(r)\n"
                 "inproc.preload()", "(fd, 1, 2)", True, "a", id="parent-without-stdin"),
])
def test_child_stdio_and_environment(setup: str, stdio: str, close_stdin: bool, out_in: str,
                                     tmp_path: Path) -> None:
    report, a, b = as_parent(setup=setup, stdio=stdio, tmp_path=tmp_path,
                             close_stdin=close_stdin)
    out, err = (a, b) if out_in == "a" else (b, a)
    assert report["rc"] == 5
    assert err == b"err"
    assert out.startswith(b"out:")
    child = json.loads(out[4:])
    assert child["env"] == ENV  # whether or not the parent set it for its children
    assert child["inheritable"] == [True, True, True]  # as exec's stdio is
    used = "use_environ" in setup
    assert (report["parent_env"] == ENV) == used  # only use_environ changes the parent's
    assert report["streams_made"] is not close_stdin  # made once by the parent if it can


def after_preload(code: str) -> bytes:
    """What CODE prints in a fresh interpreter (-I -S, as the fork server) after
    inproc.preload()."""
    prelude = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
               "from runtime.service.shim import inproc; inproc.preload()\n")
    return subprocess.run([sys.executable, "-I", "-S", "-c", prelude + code],
                          capture_output=True, check=True, cwd="/").stdout


def test_preload_computes_the_host_identity_once() -> None:
    """After preload, host_identity() does not ask libseccomp again (a child would)."""
    assert after_preload(
        "from runtime.oci import seccomp_bpf\n"
        "before = seccomp_bpf._host\n"
        "def fail() -> str:\n    raise AssertionError('asked libseccomp again')\n"
        "seccomp_bpf.libseccomp_version = fail\n"
        "print(before is not None and seccomp_bpf.host_identity() == before)") == b"True\n"


def test_preload_reads_the_cgroup_mounts_once_for_every_child() -> None:
    """A child forked after preload finds the host's hierarchies in place: it does not read
    /proc/self/mountinfo, whose size grows with every pod's mounts."""
    assert after_preload(
        "import builtins; from runtime.oci.cgroups import host\n"
        "real, seen = builtins.open, []\n"
        "def spy(f, *a, **k):\n    seen.append(str(f)); return real(f, *a, **k)\n"
        "builtins.open = spy; got = host.read_host()\n"
        "print(bool(host._hosts), got is host.read_host(), "
        "any('mountinfo' in f for f in seen))") == b"True True False\n"


@pytest.mark.parametrize(("result", "code", "message"), [
    pytest.param(0, 0, b"", id="ok"),
    pytest.param(SystemExit(3), 3, b"", id="sys-exit-code"),
    pytest.param(RuntimeError("boom"), 1, b"corral-runc: RuntimeError: boom\n",
                 id="uncaught-exception"),
])
def test_call_runs_start_in_the_caller(result: int | BaseException, code: int,
                                       message: bytes) -> None:
    seen: dict[str, object] = {}

    def entry(argv: list[str]) -> int:
        seen.update(argv=argv, pid=os.getpid())
        sys.stdout.write("said")
        if isinstance(result, BaseException):
            raise result
        return result

    streams, collecting = (sys.stdin, sys.stdout, sys.stderr), gc.isenabled()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            open(os.devnull, "rb") as null:
        rc = inproc.call(["start", "c1"], runtime_flags=["--root", "/r", "--log", "/l"],
                         entry=entry, stdio=(null.fileno(), out.fileno(), err.fileno()))
        os.lseek(out.fileno(), 0, os.SEEK_SET)
        os.lseek(err.fileno(), 0, os.SEEK_SET)
        said, complained = out.read(), err.read()
    assert (rc, said, complained) == (code, b"said", message)
    assert seen == {"argv": ["--root", "/r", "--log", "/l", "start", "c1"], "pid": os.getpid()}
    assert (sys.stdin, sys.stdout, sys.stderr) == streams  # the caller's, back in place
    assert gc.isenabled() == collecting


@pytest.mark.parametrize("args, verb", [
    pytest.param(["create", "--bundle", "/b", "c1"], "create", id="create"),
    pytest.param(["delete", "c1"], "delete", id="delete"),
    pytest.param(["kill", "--all", "c1", "9"], "kill", id="kill"),
    pytest.param([], "no verb", id="no-verb"),
    pytest.param(["c1", "start"], "c1", id="verb-not-first"),
])
def test_call_refuses_what_must_fork(args: list[str], verb: str) -> None:
    def entry(argv: list[str]) -> int:
        raise AssertionError("ran in the caller")
    with pytest.raises(ValueError, match=f"^inproc.call: {verb}: only start runs in the caller"):
        inproc.call(args, runtime_flags=["--root", "/r"], stdio=(0, 1, 2), entry=entry)
