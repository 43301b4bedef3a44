"""tests/support/process.py with real child processes: start, wait, stop, kill, log tails."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.support import process


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_start_appends_both_streams_to_the_log_with_stdin_from_dev_null(
        tmp_path: Path) -> None:
    log = tmp_path / "p.log"
    log.write_bytes(b"before\n")
    code = ("import os, sys; print('out', os.environ['X'], os.getcwd()); "
            "print('err', file=sys.stderr); print('in', repr(sys.stdin.read()))")
    proc = process.start(py(code), log_path=str(log), env={**os.environ, "X": "1"},
                         cwd=str(tmp_path))
    assert proc.wait(10) == 0
    lines = log.read_text().splitlines()
    assert lines[0] == "before" and f"out 1 {tmp_path}" in lines
    assert "err" in lines and "in ''" in lines


@pytest.mark.parametrize("new_session", [
    pytest.param(True, id="own-session"),
    pytest.param(False, id="our-session"),
])
def test_start_new_session(tmp_path: Path, new_session: bool) -> None:
    proc = process.start(py("import time; time.sleep(30)"), log_path=str(tmp_path / "l"),
                         new_session=new_session)
    try:
        assert (os.getsid(proc.pid) == proc.pid) is new_session
    finally:
        assert process.kill(proc)


def test_wait_until_ready_returns_once_ready(tmp_path: Path) -> None:
    flag = tmp_path / "ready"
    proc = process.start(py(f"import time; time.sleep(0.3); open({str(flag)!r}, 'w'); "
                            "time.sleep(30)"), log_path=str(tmp_path / "l"))
    try:
        process.wait_until_ready(proc, name="p", condition="ready", ready=flag.exists,
                                 timeout=10, tail=lambda: "")
        assert flag.exists() and proc.poll() is None
    finally:
        process.stop(proc)


def test_wait_until_ready_raises_exited_with_the_tail(tmp_path: Path) -> None:
    log = str(tmp_path / "l")
    proc = process.start(py("import sys; print('bad flag'); sys.exit(3)"), log_path=log)
    with pytest.raises(process.Exited, match=r"^etcd m0 exited 3: bad flag"):
        process.wait_until_ready(proc, name="etcd m0", condition="healthy",
                                 ready=lambda: False, timeout=10,
                                 tail=lambda: process.log_tail(log))


def test_wait_until_ready_raises_not_ready_after_the_timeout(tmp_path: Path) -> None:
    proc = process.start(py("import time; time.sleep(30)"), log_path=str(tmp_path / "l"))
    try:
        t0 = time.monotonic()
        with pytest.raises(process.NotReady, match=r"^registry not serving after 0\.3 s: "
                                                   r"the tail$") as err:
            process.wait_until_ready(proc, name="registry", condition="serving",
                                     ready=lambda: False, timeout=0.3,
                                     tail=lambda: "the tail")
        assert 0.3 <= time.monotonic() - t0 < 5
        assert isinstance(err.value, TimeoutError) and isinstance(err.value, RuntimeError)
    finally:
        process.stop(proc)


@pytest.mark.parametrize("code, timeout, signal_seen", [
    pytest.param("import time; time.sleep(30)", 5, -signal.SIGTERM, id="sigterm-ends-it"),
    pytest.param("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                 "print('ignoring', flush=True); time.sleep(30)", 0.3, -signal.SIGKILL,
                 id="sigterm-ignored-then-sigkill"),
])
def test_stop(tmp_path: Path, code: str, timeout: float, signal_seen: int) -> None:
    log = tmp_path / "l"
    proc = process.start(py(code), log_path=str(log))
    if "ignoring" in code:  # the handler is set before SIGTERM comes
        process.wait_until_ready(proc, name="p", condition="ready",
                                 ready=lambda: b"ignoring" in log.read_bytes(), timeout=10,
                                 tail=lambda: "")
    assert process.stop(proc, timeout=timeout) is True
    assert proc.returncode == signal_seen


def test_stop_and_kill_of_nothing_or_an_exited_process(tmp_path: Path) -> None:
    assert process.stop(None) and process.kill(None)
    proc = process.start(py("pass"), log_path=str(tmp_path / "l"))
    proc.wait(10)
    assert process.stop(proc) and process.kill(proc) and proc.returncode == 0


def test_kill_is_sigkill(tmp_path: Path) -> None:
    proc = process.start(py("import time; time.sleep(30)"), log_path=str(tmp_path / "l"))
    assert process.kill(proc, timeout=None) and proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("content, kwargs, want", [
    pytest.param(b"".join(b"l%d\n" % i for i in range(30)), {}, "".join(
        f"l{i}\n" for i in range(10, 30)), id="last-20-lines"),
    pytest.param(b"a\nb\nc", {"lines": 2}, "b\nc", id="last-line-unterminated"),
    pytest.param(b"a\nb\n", {"lines": None}, "a\nb\n", id="all-lines"),
    pytest.param(b"0123456789abc", {"max_bytes": 3, "lines": None}, "abc",
                 id="only-the-last-bytes"),
    pytest.param(b"caf\xc3\xa9 \xff\n", {}, "caf\u00e9 \ufffd\n", id="bad-utf8-replaced"),
])
def test_log_tail(tmp_path: Path, content: bytes, kwargs: dict[str, int | None],
                  want: str) -> None:
    (tmp_path / "log").write_bytes(content)
    assert process.log_tail(str(tmp_path / "log"), **kwargs) == want  # type: ignore[arg-type]


def test_log_tail_of_a_missing_file(tmp_path: Path) -> None:
    assert process.log_tail(str(tmp_path / "none")) == "(no log)"
    assert process.log_tail(str(tmp_path / "none"), missing="") == ""


class Recorder(process.Managed):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def start(self) -> Recorder:
        self.calls.append("start")
        return self

    def cleanup(self) -> None:
        self.calls.append("cleanup")


def test_managed_starts_on_entry_and_cleans_up_however_the_block_ends() -> None:
    with Recorder() as r:
        assert r.calls == ["start"]
    assert r.calls == ["start", "cleanup"]
    failing = Recorder()
    with pytest.raises(ValueError), failing:
        raise ValueError("boom")
    assert failing.calls == ["start", "cleanup"]


def test_managed_base_has_no_start_or_cleanup() -> None:
    with pytest.raises(NotImplementedError):
        process.Managed().start()
    with pytest.raises(NotImplementedError):
        process.Managed().cleanup()
