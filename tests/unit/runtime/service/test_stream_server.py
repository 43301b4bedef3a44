"""The streaming server in-process, without root: a stand-in runtime (a small script that
reads --process and runs its args on the host, or on a pty it sends over --console-socket,
as runc does), a log file for attach, a host listener for port-forward; our client."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from websockets.typing import Subprotocol

from runtime.service import streaming as S
from runtime.service.cri import stream as W

pytestmark = pytest.mark.asyncio

FAKE_RUNTIME = r'''
import fcntl, json, os, socket, sys, termios
argv = sys.argv[1:]
proc = json.load(open(argv[argv.index("--process") + 1]))
if "--tty" in argv:
    master, slave = os.openpty()
    s = socket.socket(socket.AF_UNIX)
    s.connect(argv[argv.index("--console-socket") + 1])
    socket.send_fds(s, [b"/dev/ptmx"], [master])
    s.close()
    os.close(master)
    pid = os.fork()
    if pid == 0:
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        for n in (0, 1, 2):
            os.dup2(slave, n)
        os.execvp(proc["args"][0], proc["args"])
    os.close(slave)
    sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
os.execvp(proc["args"][0], proc["args"])
'''


@pytest_asyncio.fixture
async def server(tmp_path: object) -> AsyncIterator[S.StreamServer]:
    srv = S.StreamServer("127.0.0.1:0", scratch_dir=f"{tmp_path}/streams", token_ttl=5)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.close()


def exec_spec(tmp: object, args: list[str], **kw: bool) -> S.ExecSpec:
    script = f"{tmp}/fake-runtime.py"
    with open(script, "w") as f:
        f.write(FAKE_RUNTIME)
    return S.ExecSpec(what="Container c", runtime=(sys.executable, script), container_id="c",
                      process={"args": args}, **kw)


async def run(url: str, stdin: bytes | None = None) -> tuple[bytes, bytes, int, str]:
    return await asyncio.wait_for(W.run(await W.connect(url), stdin=stdin), 20)


@pytest.mark.parametrize(("args", "stdin", "want"), [
    pytest.param(["cat"], b"a\nb", (b"a\nb", b"", 0), id="stdin-eof-v5"),
    pytest.param(["sh", "-c", "echo o; echo e >&2; exit 4"], None, (b"o\n", b"e\n", 4),
                 id="streams-and-code"),
    pytest.param(["sh", "-c", "kill -TERM $$"], None, (b"", b"", 143), id="signal"),
])
async def test_exec_pipes(server: S.StreamServer, tmp_path: object, args: list[str],
                          stdin: bytes | None, want: tuple[bytes, bytes, int]) -> None:
    url = server.url(exec_spec(tmp_path, args, stdin=stdin is not None))
    out, err, code, _ = await run(url, stdin)
    assert (out, err, code) == want


async def test_exec_without_stderr_drops_it(server: S.StreamServer, tmp_path: object) -> None:
    url = server.url(exec_spec(tmp_path, ["sh", "-c", "echo o; echo e >&2"], stderr=False))
    assert (await run(url))[:3] == (b"o\n", b"", 0)


async def test_exec_tty_resize(server: S.StreamServer, tmp_path: object) -> None:
    url = server.url(exec_spec(tmp_path, ["sh", "-c", "read x; stty size"], tty=True,
                               stdin=True, stderr=False))
    s = await W.connect(url)
    await s.resize(123, 45)
    await s.send_stdin(b"go\r")
    out, _, code, _ = await asyncio.wait_for(W.run(s), 20)
    assert code == 0 and b"45 123\r\n" in out, out


async def test_v4_client_cannot_close_stdin_but_leaving_ends_it(
        server: S.StreamServer, tmp_path: object) -> None:
    from websockets.asyncio.client import connect
    url = server.url(exec_spec(tmp_path, ["cat"], stdin=True))
    async with connect(W.ws_url(url), subprotocols=[W.V4], proxy=None) as ws:
        assert ws.subprotocol == W.V4
        assert W.decode(await ws.recv()) == (W.STDOUT, b"")  # "connected"
        await ws.send(W.encode(W.STDIN, b"x"))
        assert W.decode(await ws.recv()) == (W.STDOUT, b"x")
        await ws.send(W.encode(W.CLOSE, b"\x00"))  # not v5: ignored, cat goes on
        await ws.send(W.encode(W.STDIN, b"y"))
        assert W.decode(await ws.recv()) == (W.STDOUT, b"y")


async def test_tokens_once_and_only_for_their_kind(server: S.StreamServer,
                                                   tmp_path: object) -> None:
    url = server.url(exec_spec(tmp_path, ["true"]))
    with pytest.raises(W.StreamError, match="404"):
        await W.connect(url.replace("/exec/", "/attach/"))
    with pytest.raises(W.StreamError, match="404"):  # the wrong kind used it up
        await W.connect(url)
    with pytest.raises(W.StreamError, match="404"):
        await W.connect(f"http://127.0.0.1:{server.port}/elsewhere")


async def test_unknown_subprotocol_refused(server: S.StreamServer, tmp_path: object) -> None:
    from websockets.asyncio.client import connect
    url = server.url(exec_spec(tmp_path, ["true"]))
    with pytest.raises(Exception, match="400"):
        await connect(W.ws_url(url), subprotocols=[Subprotocol("chat")], proxy=None)


async def test_attach_follows_log_until_stopped(server: S.StreamServer,
                                                tmp_path: object) -> None:
    log = f"{tmp_path}/c.log"
    with open(log, "wb") as f:
        f.write(b"2024-01-01T00:00:00Z stdout F before attach\n")
    stop_at = time.monotonic() + 1.0
    url = server.url(S.AttachSpec(what="Container c", log_path=log,
                                  running=lambda: time.monotonic() < stop_at))
    s = await W.connect(url)

    async def write() -> None:
        await asyncio.sleep(0.2)
        with open(log, "ab") as f:
            f.write(b"2024-01-01T00:00:01Z stdout P par\n"
                    b"2024-01-01T00:00:01Z stdout F tial\n"
                    b"2024-01-01T00:00:02Z stderr F oops\n")
    writer = asyncio.create_task(write())
    out, err, code, _ = await asyncio.wait_for(W.run(s), 20)
    await writer
    assert (out, err, code) == (b"partial\n", b"oops\n", 0)


async def test_port_forward_on_the_host_netns(server: S.StreamServer) -> None:
    async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"hello " + await r.readline())
        await w.drain()
        w.close()
    listener = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        url = server.url(S.PortForwardSpec(what="Sandbox s", netns="", ports=(port,)))
        s = await W.port_forward(url, ports=[port])
        await s.send(port, b"you\n")
        got = b""
        while (frame := await asyncio.wait_for(s.recv(), 10)) is not None:
            assert (frame.port, frame.error) == (port, False)
            got += frame.data
        assert got == b"hello you\n"  # the pod side closed: the session ended
    finally:
        listener.close()
        await listener.wait_closed()


async def test_port_forward_to_a_missing_netns(server: S.StreamServer) -> None:
    url = server.url(S.PortForwardSpec(what="Sandbox s", netns="/nonexistent/netns",
                                       ports=(80,)))
    s = await W.port_forward(url, ports=[80])
    frame = await asyncio.wait_for(s.recv(), 10)
    assert frame is not None and frame.error
    assert frame.data.startswith(b"Sandbox s: port 80: connect to 127.0.0.1:80 in the pod: ")
    await s.close()


async def test_scratch_dir_removed(tmp_path: object) -> None:
    srv = S.StreamServer("127.0.0.1:0", scratch_dir=f"{tmp_path}/s")
    await srv.start()
    assert os.path.isdir(f"{tmp_path}/s") and srv.port > 0
    await srv.close()
    assert not os.path.exists(f"{tmp_path}/s")
