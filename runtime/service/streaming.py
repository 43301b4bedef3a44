"""The daemon's CRI streaming server: exec, attach and port-forward sessions over WebSocket.

::

    RuntimeServicer.Exec/Attach/PortForward ── validate, resolve to a plain *Spec ──►
        StreamServer.url(spec) ── TokenCache.insert ──► "http://127.0.0.1:PORT/exec/<token>"
    client ──WebSocket GET /exec/<token>──► process_request: TokenCache.consume (once,
        before it expires; else 404) ──► subprotocol (v5/v4.channel.k8s.io; port-forward:
        portforward.k8s.io or v4) ──► one session:
      exec          `RUNTIME exec --process FILE [--tty --console-socket S] ID`: pipes, or
                    the pty master received over S; frames 0 -> stdin, 4 -> TIOCSWINSZ,
                    255 -> stdin EOF (v5); stdout/stderr -> 1/2; the exit -> 3 (Status)
      attach        follows the container's CRI log file from its end: stdout/stderr lines
                    -> 1/2, until the container stops (Success on 3) or the client leaves;
                    with stdin, the shim hands over the container's stdin fd (its pipe, or
                    its pty master: tasks.attach): frames 0 -> it, 4 -> TIOCSWINSZ
                    (attach.py)
      port-forward  per port: a TCP socket made on a thread that entered the sandbox's
                    network namespace, connected to 127.0.0.1:PORT; bytes both ways on
                    channels 2i (data) and 2i+1 (error), first frame = the port (LE16):
                    portforward.py, imported on the first such session

The frame codec is cri/stream.py's (shared with the client). A client that leaves ends its
session: stdin is closed, and an exec still running after a grace is terminated.

The port is bound and listening from start(); the ``websockets`` server (and the library,
~2 MB of an idle daemon's RSS) starts on it when the first connection waits in its backlog,
so a node that never streams never loads it. ctypes (for setns) loads on the first
port-forward into a sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import struct
import tempfile
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from websockets.asyncio.server import Server, ServerConnection
    from websockets.http11 import Request, Response
    from websockets.typing import Subprotocol

from runtime.service.attach import LogFollower, attach, parse_log_line
from runtime.service.cri import stream as W

log = logging.getLogger("corral.runtimed.streaming")
TOKEN_TTL = 60.0  # seconds, as Kubernetes' streaming server
MAX_TOKENS = 1000
EXIT_GRACE = 5.0  # seconds an exec may outlive its client before it is terminated


# ---- what a session runs (resolved by the servicer) ---------------------------------------


@dataclass(frozen=True)
class ExecSpec:
    what: str  # "Container 3f2a..." for messages
    runtime: tuple[str, ...]  # the runtime command and its global options (--root R)
    container_id: str
    process: dict[str, Any]  # the OCI process: args = the command, terminal = tty
    tty: bool = False
    stdin: bool = False
    stdout: bool = True
    stderr: bool = True


@dataclass(frozen=True)
class AttachSpec:
    what: str
    log_path: str
    running: Callable[[], bool]  # blocking; asked from a thread now and then
    tty: bool = False
    stdout: bool = True
    stderr: bool = True
    # stdin: blocking; (fd, is a tty) of the container's stdin, from its shim, when the
    # session opens: a pipe's write end or the pty master, closed when the session ends
    open_stdin: Callable[[], tuple[int, bool]] | None = None
    stdin_once: bool = False  # on a tty the session's end sends ^D (a pty cannot close)


@dataclass(frozen=True)
class PortForwardSpec:
    what: str  # "Sandbox 9c1e..."
    netns: str  # "" : the host's network namespace
    ports: tuple[int, ...]


Spec = ExecSpec | AttachSpec | PortForwardSpec
__all__ = ["AttachSpec", "ExecSpec", "LogFollower", "PortForwardSpec", "StreamServer",
           "parse_log_line"]
KINDS: dict[type[Any], str] = {ExecSpec: "exec", AttachSpec: "attach",
                               PortForwardSpec: "portforward"}


# ---- tokens -------------------------------------------------------------------------------


@dataclass
class TokenCache:
    """Single-use tokens that expire TTL seconds after they were handed out."""

    ttl: float = TOKEN_TTL
    clock: Callable[[], float] = time.monotonic
    limit: int = MAX_TOKENS
    _items: dict[str, tuple[float, Spec]] = field(default_factory=dict)

    def insert(self, spec: Spec) -> str:
        now = self.clock()
        for tok in [t for t, (exp, _) in self._items.items() if exp <= now]:
            del self._items[tok]
        if len(self._items) >= self.limit:
            raise OverflowError(f"streaming: {self.limit} sessions wait to be opened already")
        token = secrets.token_urlsafe(12)
        self._items[token] = (now + self.ttl, spec)
        return token

    def consume(self, token: str) -> Spec | None:
        """The spec of TOKEN, once; None when unknown, used or expired."""
        item = self._items.pop(token, None)
        if item is None or item[0] <= self.clock():
            return None
        return item[1]


def parse_address(address: str) -> tuple[str, int]:
    """HOST:PORT of a loopback address (the streaming server never listens elsewhere)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"stream_address: expected HOST:PORT, got {address!r}")
    if host not in ("127.0.0.1", "localhost"):
        raise ValueError(f"stream_address: must be on 127.0.0.1, got {host!r}")
    return "127.0.0.1", int(port)


# ---- the server ---------------------------------------------------------------------------


class StreamServer:
    def __init__(self, address: str, *, scratch_dir: str, token_ttl: float = TOKEN_TTL
                 ) -> None:
        self.host, self.port = parse_address(address)
        self.scratch_dir = scratch_dir
        self.tokens = TokenCache(ttl=token_ttl)
        self._server: Server | None = None
        self._sock: socket.socket | None = None
        self._starting: asyncio.Task[None] | None = None
        self._pending: dict[ServerConnection, Spec] = {}

    async def start(self) -> None:
        """Bind and listen now (the port is known, URLs can be handed out); the WebSocket
        server itself starts when the first connection arrives (_first_connection)."""
        os.makedirs(self.scratch_dir, mode=0o700, exist_ok=True)
        self._sock = socket.create_server((self.host, self.port), backlog=128)
        self._sock.setblocking(False)
        self.port = self._sock.getsockname()[1]
        asyncio.get_running_loop().add_reader(self._sock.fileno(), self._first_connection)

    def _first_connection(self) -> None:
        assert self._sock is not None
        asyncio.get_running_loop().remove_reader(self._sock.fileno())
        self._starting = asyncio.ensure_future(self._serve(self._sock))

    async def _serve(self, sock: socket.socket) -> None:
        from websockets.asyncio.server import serve

        try:
            self._server = await serve(
                self._handle, sock=sock, process_request=self._process_request,
                select_subprotocol=self._select, compression=None, ping_interval=None,
                max_size=None, close_timeout=2)
        except Exception:
            log.exception("streaming server on %s:%d: could not start", self.host, self.port)
            raise

    async def close(self) -> None:
        if self._starting is not None:
            await asyncio.gather(self._starting, return_exceptions=True)
        elif self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        elif self._sock is not None:
            self._sock.close()
        self._server = self._sock = self._starting = None
        shutil.rmtree(self.scratch_dir, ignore_errors=True)

    def url(self, spec: Spec) -> str:
        """The URL a client opens to run SPEC (valid once, for ``tokens.ttl`` seconds)."""
        return f"http://{self.host}:{self.port}/{KINDS[type(spec)]}/{self.tokens.insert(spec)}"

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        parts = request.path.split("?", 1)[0].strip("/").split("/")
        if len(parts) != 2 or parts[0] not in KINDS.values():
            return conn.respond(404, f"{request.path}: not a streaming endpoint\n")
        spec = self.tokens.consume(parts[1])
        if spec is None or KINDS[type(spec)] != parts[0]:
            return conn.respond(404, f"{parts[0]}: token not found, used or expired\n")
        self._pending[conn] = spec
        return None

    def _select(self, conn: ServerConnection, offered: Any) -> Subprotocol | None:
        from websockets.exceptions import NegotiationError

        spec = self._pending.get(conn)
        mine = W.PORT_FORWARD_PROTOCOLS if isinstance(spec, PortForwardSpec) \
            else W.EXEC_PROTOCOLS
        for p in mine:
            if p in offered:
                return p
        self._pending.pop(conn, None)
        raise NegotiationError(f"subprotocol: expected one of {', '.join(mine)}, "
                               f"offered {', '.join(offered) or 'none'}")

    async def _handle(self, conn: ServerConnection) -> None:
        from websockets.exceptions import ConnectionClosed

        spec = self._pending.pop(conn, None)
        if spec is None:
            await conn.close(1011, "no session")
            return
        try:
            if isinstance(spec, ExecSpec):
                await ExecSession(conn, spec, scratch=self.scratch_dir).run()
            elif isinstance(spec, AttachSpec):
                await attach(conn, spec)
            else:
                from runtime.service.portforward import port_forward

                await port_forward(conn, spec)
        except ConnectionClosed:
            pass
        except Exception as e:  # the session's own failure: tell the client, keep serving
            log.warning("%s: %s session: %s: %s", spec.what, KINDS[type(spec)],
                        type(e).__name__, e)
            with contextlib.suppress(ConnectionClosed):
                if not isinstance(spec, PortForwardSpec):
                    await conn.send(W.encode(W.ERROR, W.status_failure(f"{spec.what}: {e}")))
        finally:
            await conn.close()


# ---- exec ---------------------------------------------------------------------------------


async def pump(reader: asyncio.StreamReader, conn: ServerConnection, channel: int) -> None:
    """READER's bytes as frames on CHANNEL until its EOF (exec's output, a forwarded port)."""
    while True:
        try:
            chunk = await reader.read(32768)
        except OSError:  # EIO: the pty's last holder is gone
            return
        if not chunk:
            return
        await conn.send(W.encode(channel, chunk))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            time.sleep(0.005)


class ExecSession:
    def __init__(self, conn: ServerConnection, spec: ExecSpec, *, scratch: str) -> None:
        self.conn, self.spec, self.scratch = conn, spec, scratch
        self.v5 = conn.subprotocol == W.V5
        self.master = -1  # the pty's master (tty)
        self.proc: asyncio.subprocess.Process | None = None

    async def run(self) -> None:
        spec = self.spec
        work = tempfile.mkdtemp(prefix="exec-", dir=self.scratch)
        try:
            proc_file = os.path.join(work, "process.json")
            with open(proc_file, "w") as f:
                json.dump(dict(spec.process, terminal=spec.tty), f)
            argv = [*spec.runtime, "exec", "--process", proc_file]
            console: socket.socket | None = None
            if spec.tty:
                console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                console.bind(os.path.join(work, "console.sock"))
                console.listen(1)
                console.setblocking(False)
                argv += ["--tty", "--console-socket", os.path.join(work, "console.sock")]
            pipe, null = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
            self.proc = await asyncio.create_subprocess_exec(
                *argv, spec.container_id,
                stdin=pipe if spec.stdin and not spec.tty else null,
                stdout=pipe if spec.stdout and not spec.tty else null,
                stderr=pipe if (spec.stderr or spec.tty) else null, start_new_session=True)
            try:
                await self._relay(console)
            finally:
                if console is not None:
                    console.close()
                if self.master >= 0:
                    os.close(self.master)
                await self._reap()
        finally:
            shutil.rmtree(work, ignore_errors=True)

    async def _receive_pty(self, console: socket.socket) -> int:
        """The pty master the runtime sends over the console socket (or -1 if it exits
        without sending one)."""
        assert self.proc is not None
        loop = asyncio.get_running_loop()
        accept = asyncio.ensure_future(loop.sock_accept(console))
        exited = asyncio.ensure_future(self.proc.wait())
        await asyncio.wait({accept, exited}, timeout=30,
                           return_when=asyncio.FIRST_COMPLETED)
        if not accept.done():
            accept.cancel()
            exited.cancel()
            return -1
        exited.cancel()
        peer, _ = accept.result()
        with peer:
            peer.settimeout(30)
            _, fds, _, _ = await asyncio.to_thread(socket.recv_fds, peer, 4096, 1)
        if not fds:
            return -1
        for extra in fds[1:]:
            os.close(extra)
        return fds[0]

    async def _relay(self, console: socket.socket | None) -> None:
        spec, proc, conn = self.spec, self.proc, self.conn
        assert proc is not None
        loop = asyncio.get_running_loop()
        pumps: list[asyncio.Task[None]] = []
        if console is not None:
            self.master = await self._receive_pty(console)
            if self.master >= 0:
                reader = asyncio.StreamReader()
                read_end = os.fdopen(os.dup(self.master), "rb", buffering=0)
                await loop.connect_read_pipe(
                    lambda: asyncio.StreamReaderProtocol(reader), read_end)
                pumps.append(asyncio.create_task(pump(reader, conn, W.STDOUT)))
        else:
            for stream, channel in ((proc.stdout, W.STDOUT), (proc.stderr, W.STDERR)):
                if stream is not None:
                    pumps.append(asyncio.create_task(pump(stream, conn, channel)))
        # "connected": an empty frame on the lowest channel we write (as Kubernetes does)
        first = W.STDOUT if spec.stdout or spec.tty else W.STDERR if spec.stderr else W.ERROR
        await conn.send(W.encode(first, b""))
        inbound = asyncio.create_task(self._inbound())
        exited = asyncio.create_task(proc.wait())
        await asyncio.wait({inbound, exited}, return_when=asyncio.FIRST_COMPLETED)
        if not exited.done():  # the client left: EOF, then a grace, then SIGTERM
            self._close_stdin()
            await asyncio.wait({exited}, timeout=EXIT_GRACE)
            if not exited.done():
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)  # corral-runc passes it on
                await asyncio.wait({exited}, timeout=EXIT_GRACE)
            for p in pumps:
                p.cancel()
            return
        code = exited.result()
        code = 128 - code if code < 0 else code  # the runtime itself killed by a signal
        # what the command wrote is in the pipes; a child of it may hold them open longer
        if pumps:
            await asyncio.wait(pumps, timeout=2)
        for p in pumps:
            p.cancel()
        if console is not None and self.master < 0 and proc.stderr is not None:
            why = (await proc.stderr.read(4096)).decode(errors="replace").strip()
            await conn.send(W.encode(W.ERROR, W.status_failure(
                f"{spec.what}: exec {spec.process['args'][0]}: {why or 'no terminal'}")))
        else:
            await conn.send(W.encode(W.ERROR, W.status_exit(code, list(spec.process["args"]))))
        inbound.cancel()

    def _close_stdin(self) -> None:
        proc = self.proc
        if proc is not None and proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()

    async def _inbound(self) -> None:
        """Client frames until the client closes: stdin, resize, close (v5)."""
        spec, proc = self.spec, self.proc
        assert proc is not None
        async for frame in self.conn:
            channel, payload = W.decode(frame)
            if channel == W.STDIN and spec.stdin:
                if self.master >= 0:
                    await asyncio.to_thread(_write_all, self.master, payload)
                elif proc.stdin is not None and not proc.stdin.is_closing():
                    proc.stdin.write(payload)
                    with contextlib.suppress(ConnectionError):
                        await proc.stdin.drain()
            elif channel == W.RESIZE and self.master >= 0:
                width, height = W.parse_resize(payload)
                fcntl.ioctl(self.master, termios.TIOCSWINSZ,
                            struct.pack("HHHH", height, width, 0, 0))
            elif channel == W.CLOSE and self.v5 and payload[:1] == bytes((W.STDIN,)):
                if self.master >= 0:
                    await asyncio.to_thread(_write_all, self.master, b"\x04")  # ^D
                else:
                    self._close_stdin()

    async def _reap(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
