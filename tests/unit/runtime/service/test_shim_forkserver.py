"""The fork server's runtime socket (shim/forkserver.py) on its own, as a holder speaks to
it (runcall.c): corral-runc run in a forked child gives what the exec'd launcher gives
(exit status, stdout, stderr, in the caller's directory); bad requests are answered and
run nothing; other users are refused; the socket goes when the daemon's end closes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.service.shim.client import ForkServer

ROOT = Path(__file__).resolve().parents[4]
LAUNCHER = ROOT / ".venv" / "bin" / "corral-runc"
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ForkServer]:
    fs = ForkServer(runtime_socket=str(tmp_path / "runtime-fork.sock"))
    fs.start()
    yield fs
    fs.close()


def call(path: str, data: bytes, fds: list[int]) -> list[bytes]:
    """One request; every reply until the server closes the connection."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        s.settimeout(30)
        s.connect(path)
        socket.send_fds(s, [data], fds)
        replies: list[bytes] = []
        while True:
            msg = s.recv(4096)
            if not msg:
                return replies
            replies.append(msg)


def via_server(path: str, argv: list[str], cwd: str) -> tuple[int, bytes, bytes]:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            open(os.devnull, "rb") as null:
        req = b"\0".join([b"run", cwd.encode(), *(a.encode() for a in argv)]) + b"\0"
        replies = call(path, req, [null.fileno(), out.fileno(), err.fileno()])
        assert len(replies) == 2 and replies[0].startswith(b"pid "), replies
        assert replies[1].startswith(b"exit "), replies
        out.seek(0)
        err.seek(0)
        return os.waitstatus_to_exitcode(int(replies[1][5:])), out.read(), err.read()


def via_exec(argv: list[str], cwd: str) -> tuple[int, bytes, bytes]:
    p = subprocess.run([str(LAUNCHER), *argv], capture_output=True, env=ENV, check=False,
                       stdin=subprocess.DEVNULL, cwd=cwd)
    return p.returncode, p.stdout, p.stderr


@pytest.mark.parametrize(("argv", "code"), [
    pytest.param(["--version"], 0, id="version"),
    pytest.param(["no-such-verb"], 1, id="unknown-verb"),
    pytest.param(["--root", "root", "state", "nope"], 1, id="state-of-missing-relative-root"),
    pytest.param(["--root", "root", "delete", "nope"], 1, id="delete-of-missing-container"),
    pytest.param(["--root", "root", "kill", "nope", "9"], 1, id="kill-of-missing-container"),
    pytest.param(["--root", "root", "list"], 0, id="list-empty"),
])
def test_same_result_as_the_exec_launcher(server: ForkServer, tmp_path: Path, argv: list[str],
                                          code: int) -> None:
    if not LAUNCHER.exists():
        pytest.fail(f"{LAUNCHER}: missing (scripts/make_launchers.py writes it)")
    assert server.runtime_socket is not None
    work = tmp_path / "work"
    work.mkdir()
    forked = via_server(server.runtime_socket, argv, str(work))
    execd = via_exec(argv, str(work))
    assert forked == execd
    assert forked[0] == code
    assert forked[1 if code == 0 else 2]  # something said, on the right stream


@pytest.mark.parametrize(("data", "nfds", "error"), [
    pytest.param(b"exec\0/\0--version\0", 3, b"error request: want", id="not-run"),
    pytest.param(b"run\0/\0", 3, b"error request: want", id="no-argv"),
    pytest.param(b"run\0/\0--version\0", 1, b"error request: want 3 stdio fds, got 1",
                 id="one-fd"),
    pytest.param(b"run\0/nonexistent-dir\0--version\0", 3, b"error ", id="bad-cwd"),
])
def test_bad_request_answered_and_nothing_runs(server: ForkServer, data: bytes, nfds: int,
                                               error: bytes) -> None:
    assert server.runtime_socket is not None
    with open(os.devnull, "wb") as null:
        replies = call(server.runtime_socket, data, [null.fileno()] * nfds)
    if error == b"error ":  # the cwd is only entered in the child: it fails, exit 1
        assert replies[0].startswith(b"pid ") and replies[1] == b"exit 256"
    else:
        assert replies == [replies[0]] and replies[0].startswith(error), replies


def test_other_users_are_refused(server: ForkServer, tmp_path: Path) -> None:
    """A user other than the daemon's gets nothing run, even with the socket open to all."""
    assert server.runtime_socket is not None
    os.chmod(server.runtime_socket, 0o666)
    open_dir = tempfile.mkdtemp(prefix="rx-runcall-")
    try:
        os.chmod(open_dir, 0o755)
        link = os.path.join(open_dir, "sock")
        os.link(server.runtime_socket, link)
        marker = os.path.join(open_dir, "ran")
        script = (
            "import os, socket, sys\n"
            "s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n"
            "s.connect(sys.argv[1])\n"
            "req = b'run\\0/\\0--log\\0' + sys.argv[2].encode() + b'\\0state\\0nope\\0'\n"
            "try:\n"  # the server may close before the send (EPIPE) or after it
            "    socket.send_fds(s, [req], [0, 1, 2])\n"
            "    print(repr(s.recv(100)))\n"
            "except (BrokenPipeError, ConnectionResetError):\n"
            "    print(repr(b''))\n")
        p = subprocess.run([sys.executable, "-I", "-c", script, link, marker], user=65534,
                           capture_output=True, timeout=30, check=False)
        assert p.returncode == 0, p.stderr
        assert p.stdout.strip() == b"b''"  # closed without an answer
        assert not os.path.exists(marker)  # `corral-runc --log MARKER state nope` never ran
        # the same request from our own uid runs, and writes the log: the marker works
        with open(os.devnull, "wb") as null:
            req = b"run\0/\0--log\0" + marker.encode() + b"\0state\0nope\0"
            replies = call(server.runtime_socket, req, [null.fileno()] * 3)
        assert replies[1] == b"exit 256" and os.path.exists(marker)
    finally:
        for name in os.listdir(open_dir):
            os.unlink(os.path.join(open_dir, name))
        os.rmdir(open_dir)


def test_socket_removed_when_the_daemon_end_closes(tmp_path: Path) -> None:
    path = str(tmp_path / "runtime-fork.sock")
    fs = ForkServer(runtime_socket=path)
    fs.start()
    assert (os.stat(path).st_mode & 0o777) == 0o600
    proc = fs._proc
    assert proc is not None
    fs.close()
    assert proc.returncode == 0
    assert not os.path.exists(path)
    with pytest.raises(FileNotFoundError), \
            socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        s.connect(path)


def test_stale_socket_replaced(tmp_path: Path) -> None:
    """A socket file left by a fork server killed with its daemon: the next one binds."""
    path = str(tmp_path / "runtime-fork.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    stale.bind(path)
    stale.close()
    fs = ForkServer(runtime_socket=path)
    try:
        fs.start()
        with open(os.devnull, "wb") as null:
            replies = call(path, b"run\0/\0--version\0", [null.fileno()] * 3)
        assert replies[0].startswith(b"pid ") and replies[1] == b"exit 0"
    finally:
        fs.close()
