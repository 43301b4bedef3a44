"""CRI Attach sessions of the streaming server (streaming.py): the container's output from
its CRI log, and its stdin through the fd its shim hands over.

::

    StreamServer._handle ── AttachSpec ──► attach(conn, spec)
        LogFollower(log_path) from the log's end: each new line ("TIME STREAM P|F TEXT",
            rotation followed) -> channel 1 (stdout) or 2 (stderr; 1 on a tty), until the
            container stops (Success on 3) or the client leaves
        spec.open_stdin() (tasks.attach: the shim's "attach", SCM_RIGHTS) -> AttachStdin:
            frames 0 -> written to the fd (a pipe's write end, or the pty master)
                   4 -> TIOCSWINSZ on the pty master
                   255 + stdin (v5) -> the fd closed (^D first on a tty)
            the session's end closes the fd: with stdin_once the shim closed its own copy
            when it handed this one out, so the container sees EOF (a tty gets ^D)
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import struct
import termios
import time
from typing import TYPE_CHECKING

from runtime.service.cri import stream as W

if TYPE_CHECKING:
    from websockets.asyncio.server import ServerConnection

    from runtime.service.streaming import AttachSpec

LOG_POLL = 0.05


def parse_log_line(line: bytes) -> tuple[str, bytes] | None:
    """(stream, content) of one CRI log line ("TIME STREAM P|F CONTENT"); content of an F
    line ends with a newline, of a P line (part of a longer one) without. None if garbled."""
    parts = line.rstrip(b"\n").split(b" ", 3)
    if len(parts) < 3 or parts[1] not in (b"stdout", b"stderr") or parts[2] not in (b"P", b"F"):
        return None
    content = parts[3] if len(parts) == 4 else b""
    return parts[1].decode(), content + (b"\n" if parts[2] == b"F" else b"")


class LogFollower:
    """New whole lines of a log file the shim appends to and rotates (rename, then a new
    file): a changed inode or a smaller file starts over from the new file's beginning."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.f = open(path, "rb")  # noqa: SIM115 - closed by close()
        self.f.seek(0, os.SEEK_END)
        self.partial = b""

    def lines(self) -> list[bytes]:
        data = self.f.read()
        if not data:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                return []
            if st.st_ino != os.fstat(self.f.fileno()).st_ino or st.st_size < self.f.tell():
                self.f.close()
                self.f = open(self.path, "rb")  # noqa: SIM115
                self.partial = b""
                data = self.f.read()
        data = self.partial + data
        *whole, self.partial = data.split(b"\n")
        return [w + b"\n" for w in whole]

    def close(self) -> None:
        self.f.close()


async def attach(conn: ServerConnection, spec: AttachSpec) -> None:
    follower = await asyncio.to_thread(LogFollower, spec.log_path)
    stdin: AttachStdin | None = None
    try:
        if spec.open_stdin is not None:
            fd, tty = await asyncio.to_thread(spec.open_stdin)
            stdin = AttachStdin(fd, tty, once=spec.stdin_once, v5=conn.subprotocol == W.V5)
        await _follow(conn, spec, follower, stdin)
    finally:
        follower.close()
        if stdin is not None:
            stdin.close()


async def _follow(conn: ServerConnection, spec: AttachSpec, follower: LogFollower,
                  stdin: AttachStdin | None) -> None:
    channels = {"stdout": W.STDOUT if spec.stdout else -1,
                "stderr": (W.STDOUT if spec.tty else W.STDERR) if spec.stderr else -1}
    first = W.STDOUT if spec.stdout else W.STDERR if spec.stderr else W.ERROR
    await conn.send(W.encode(first, b""))
    inbound = asyncio.create_task(_drain(conn) if stdin is None else stdin.relay(conn))
    try:
        last_check, stopped = 0.0, False
        while not inbound.done():
            for line in follower.lines():
                parsed = parse_log_line(line)
                if parsed and channels[parsed[0]] >= 0:
                    await conn.send(W.encode(channels[parsed[0]], parsed[1]))
            if stopped:
                await conn.send(W.encode(W.ERROR, W.status_success()))
                return
            if time.monotonic() - last_check > 0.25:
                last_check = time.monotonic()
                stopped = not await asyncio.to_thread(spec.running)
                continue  # one more read after the stop: the last lines
            await asyncio.sleep(LOG_POLL)
    finally:
        inbound.cancel()


class AttachStdin:
    """An attach session's side of the container's stdin: the client's frames written to
    the fd the shim handed over; closed (^D first on a stdin_once tty) at the end."""

    def __init__(self, fd: int, tty: bool, *, once: bool, v5: bool) -> None:
        self.fd, self.tty, self.once, self.v5 = fd, tty, once, v5
        os.set_blocking(fd, False)  # written from the loop: no thread outlives the session

    async def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view and self.fd >= 0:
            try:
                view = view[os.write(self.fd, view):]
            except BlockingIOError:  # a full pipe: the container reads slower
                await asyncio.sleep(0.005)

    async def relay(self, conn: ServerConnection) -> None:
        from websockets.exceptions import ConnectionClosed

        with contextlib.suppress(ConnectionClosed):
            async for frame in conn:
                channel, payload = W.decode(frame)
                if channel == W.STDIN and self.fd >= 0:
                    try:
                        await self._write(payload)
                    except OSError:  # EPIPE: the container closed its stdin
                        self.close()
                elif channel == W.RESIZE and self.tty and self.fd >= 0:
                    width, height = W.parse_resize(payload)
                    fcntl.ioctl(self.fd, termios.TIOCSWINSZ,
                                struct.pack("HHHH", height, width, 0, 0))
                elif channel == W.CLOSE and self.v5 and payload[:1] == bytes((W.STDIN,)):
                    self.close(eof=True)

    def close(self, *, eof: bool = False) -> None:
        """Let go of the fd: the container sees EOF if ours was the last copy (stdin_once);
        a tty gets ^D when the client closed stdin (EOF) or the session was stdin_once."""
        fd, self.fd = self.fd, -1
        if fd < 0:
            return
        try:
            if self.tty and (eof or self.once):
                with contextlib.suppress(OSError):
                    os.write(fd, b"\x04")
        finally:
            os.close(fd)


async def _drain(conn: ServerConnection) -> None:
    """Read (and drop: attach has no stdin) the client's frames until it closes."""
    from websockets.exceptions import ConnectionClosed

    with contextlib.suppress(ConnectionClosed):
        async for _ in conn:
            pass
