"""The container's stdin and tty in the shim (shim/stdio.py), the holder's options for them
(shim/holder.py), and an attach session's side of stdin (attach.AttachStdin): fds passed
over real unix sockets, real pipes and a real pty; the WebSocket is a list of frames."""

from __future__ import annotations

import fcntl
import os
import select
import socket
import struct
import termios
import time
import tty
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import pytest

from runtime.service.attach import AttachStdin
from runtime.service.cri import stream as W
from runtime.service.shim import holder, stdio
from runtime.service.shim import protocol as P
from runtime.service.shim.main import Shim


@pytest.mark.parametrize(("eager", "chunks", "want"), [
    pytest.param(True, [b"/ # ", b"ls\n"], [b"P / # ", b"F ls"], id="tty-prompt-at-once"),
    pytest.param(False, [b"/ # ", b"ls\n"], [b"F / # ls"], id="pipe-whole-lines"),
    pytest.param(True, [b"a\nb"], [b"F a", b"P b"], id="tty-line-and-rest"),
])
def test_tty_output_logged_before_its_line_ends(eager: bool, chunks: list[bytes],
                                                want: list[bytes]) -> None:
    log = P.CriLog("stdout", eager=eager)
    out = b"".join(log.feed(c, 0) for c in chunks) + log.close(0)
    assert [line.split(b" ", 2)[2] for line in out.splitlines()] == want


def test_fd_passed_with_a_frame_is_the_same_pipe() -> None:
    a, b = socket.socketpair()
    r, w = os.pipe()
    try:
        stdio.send_with_fd(a, P.encode({"ok": True}), w)
        data, anc, _, _ = b.recvmsg(4096, socket.CMSG_SPACE(16))
        fds = stdio.fds_of(anc)
        assert P.Decoder().feed(data) == [{"ok": True}]
        assert len(fds) == 1 and fds[0] != w
        os.write(fds[0], b"through the copy")
        os.close(fds[0])
        assert os.read(r, 100) == b"through the copy"
    finally:
        for s in (a, b):
            s.close()
        os.close(r)
        os.close(w)


def test_console_receives_the_pty_master_and_cleans_up() -> None:
    console = stdio.Console(P.CONSOLE)
    master, slave = os.openpty()
    try:
        with socket.socket(socket.AF_UNIX) as runtime_side:  # what corral-runc does
            runtime_side.connect(console.path)
            runtime_side.sendmsg([b"/dev/ptmx"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                                   struct.pack("i", master))])
        got = console.receive(what="container c1")
        assert os.isatty(got)
        tty.setraw(slave)
        os.write(got, b"x")  # the same terminal: what goes in comes out of the slave
        os.close(got)
        assert read_for(slave, 0.3) == b"x"
    finally:
        console.close()
        os.close(master)
        os.close(slave)
    assert not os.path.exists(console.dir)


def test_console_without_a_terminal_names_the_container() -> None:
    console = stdio.Console(P.CONSOLE)
    try:
        with pytest.raises(RuntimeError, match="container c1: tty: the runtime sent no"):
            console.receive(what="container c1", timeout=0.1)
    finally:
        console.close()


@pytest.fixture
def shim(tmp_path: Any) -> Iterator[Shim]:
    s = Shim({"id": "c1", "runtime": ["/bin/true"], "runtime_root": str(tmp_path),
              "holder": "/bin/holder", "log_path": str(tmp_path / "log"), "stdin": True})
    s.listener = socket.socket(socket.AF_UNIX)
    s.status = P.RUNNING
    yield s
    s.listener.close()
    if s.stdin_fd >= 0:
        os.close(s.stdin_fd)


def answer(shim: Shim) -> tuple[dict[str, Any], list[int]]:
    a, b = socket.socketpair()
    with a, b:
        stdio.attach(shim, a)
        data, anc, _, _ = b.recvmsg(4096, socket.CMSG_SPACE(16))
    return P.Decoder().feed(data)[0], stdio.fds_of(anc)


@pytest.mark.parametrize(("once", "left"), [
    pytest.param(False, True, id="held-for-the-next"),
    pytest.param(True, False, id="stdin-once-lets-go"),
])
def test_attach_hands_a_copy_of_stdin(shim: Shim, once: bool, left: bool) -> None:
    r, shim.stdin_fd = os.pipe()
    shim.stdin_once = once
    try:
        reply, fds = answer(shim)
        assert reply == {"ok": True, "tty": False} and len(fds) == 1
        assert (shim.stdin_fd >= 0) == left
        os.close(fds[0])
        os.set_blocking(r, False)
        if left:
            with pytest.raises(BlockingIOError):  # the shim's copy: no EOF
                os.read(r, 1)
        else:
            assert os.read(r, 1) == b""  # the one copy closed: EOF
    finally:
        os.close(r)


@pytest.mark.parametrize(("stdin", "exited", "message"), [
    pytest.param(False, False, "container c1: stdin: the container was created without stdin",
                 id="no-stdin"),
    pytest.param(True, False, "container c1: stdin: closed: stdin_once", id="used-once"),
    pytest.param(True, True, "container c1 is running, not running", id="exited"),
])
def test_attach_errors_name_the_container(shim: Shim, stdin: bool, exited: bool,
                                          message: str) -> None:
    shim.spec["stdin"] = stdin
    if exited:
        shim.exit = {"exit_code": 0}
    with pytest.raises(RuntimeError, match=message):
        answer(shim)


@pytest.mark.parametrize(("stdin_fd", "once", "is_tty", "want"), [
    pytest.param(7, True, False, ["--stdin", "7", "--stdin-once", "1", "--tty", "0"],
                 id="pipe-once"),
    pytest.param(8, False, True, ["--stdin", "8", "--stdin-once", "0", "--tty", "1"],
                 id="tty"),
    pytest.param(-1, True, False, ["--stdin-closed", "1"], id="used-once"),
])
def test_holder_gets_the_stdin(shim: Shim, stdin_fd: int, once: bool, is_tty: bool,
                               want: list[str]) -> None:
    shim.stdin_fd, shim.stdin_once, shim.tty = stdin_fd, once, is_tty
    try:
        argv, fds = holder.command(shim)
    finally:
        shim.stdin_fd = -1
    joined = " ".join(argv[:argv.index("--")])
    assert " ".join(want) in joined
    if stdin_fd >= 0:
        assert stdin_fd in fds  # inherited across the exec
    else:
        assert "--stdin " not in joined


class Frames:
    """A client's frames, as the server's connection yields them."""

    def __init__(self, *frames: bytes) -> None:
        self.frames = frames
        self.subprotocol = W.V5

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for f in self.frames:
            yield f


@pytest.mark.asyncio
async def test_session_writes_stdin_and_closes_on_eof() -> None:
    r, w = os.pipe()
    try:
        s = AttachStdin(w, False, once=False, v5=True)
        await s.relay(cast(Any, Frames(W.encode(W.STDIN, b"hel"), W.encode(W.STDIN, b"lo\n"),
                                       W.encode(W.RESIZE, W.resize_payload(80, 24)),
                                       W.encode(W.CLOSE, bytes((W.STDIN,))))))
        assert s.fd == -1
        assert os.read(r, 100) == b"hello\n"
        assert os.read(r, 100) == b""  # our copy was the only one
    finally:
        os.close(r)


def read_for(fd: int, seconds: float) -> bytes:
    """What arrives on FD within SECONDS (a pty passes bytes on asynchronously)."""
    got = b""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if select.select([fd], [], [], left)[0]:
            got += os.read(fd, 100)
    return got


@pytest.mark.parametrize(("once", "tail"), [
    pytest.param(True, b"\x04", id="stdin-once-sends-eot"),
    pytest.param(False, b"", id="plain-detach-sends-nothing"),
])
@pytest.mark.asyncio
async def test_session_on_a_tty_resizes(once: bool, tail: bytes) -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        s = AttachStdin(os.dup(master), True, once=once, v5=True)
        await s.relay(cast(Any, Frames(W.encode(W.RESIZE, W.resize_payload(120, 40)),
                                       W.encode(W.STDIN, b"ls\r"))))
        rows, cols = struct.unpack("HHHH", fcntl.ioctl(slave, termios.TIOCGWINSZ,
                                                       bytes(8)))[:2]
        assert (rows, cols) == (40, 120)
        s.close()
        assert read_for(slave, 0.3) == b"ls\r" + tail
    finally:
        os.close(master)
        os.close(slave)


@pytest.mark.parametrize(("writes", "want"), [
    pytest.param([b"a1\na2\na3\n"], [b"a1\na2\n", b"a3\n"], id="burst-split-at-lines"),
    pytest.param([b"a1\n", b"a2\n", b"a3\n"], [b"a1\na2\n", b"a3\n"], id="one-by-one"),
    pytest.param([b"a1\n", b"long-line\nb\n"], [b"long-line\n", b"b\n"], id="long-line-alone"),
])
def test_python_shim_log_never_passes_its_limit(tmp_path: Any, writes: list[bytes],
                                                want: list[bytes]) -> None:
    log = tmp_path / "c.log"
    s = Shim({"id": "c1", "runtime": ["/bin/true"], "runtime_root": str(tmp_path),
              "log_path": str(log), "log_max_bytes": 6})
    s.open_log()
    try:
        for w in writes:
            s.write_log(w)
    finally:
        os.close(s.log_fd)
    assert [(tmp_path / "c.log.1").read_bytes(), log.read_bytes()] == want
