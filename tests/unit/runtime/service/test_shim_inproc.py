"""corral-runc run in a forked child of the shim (shim/inproc.py) behaves as the exec'd
launcher: the same output, exit codes and error messages; and the child starts as a
fresh process would (only stdio open, PATH the whole environment, default signals)."""

from __future__ import annotations

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
