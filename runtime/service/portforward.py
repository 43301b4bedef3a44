"""The daemon's port-forward session (CRI PortForward): bytes between a WebSocket client
and TCP ports inside a sandbox's network namespace.

::

    StreamServer._handle(conn, PortForwardSpec) ──► port_forward(conn, spec)
      first frames: per port i, the port (LE16) on channels 2i (data) and 2i+1 (error)
      per port ──► _forward_one: socket_in_netns(spec.netns) ── a thread enters the netns
                   (setns), makes the socket, comes back ──► connect 127.0.0.1:PORT
                   client frames on 2i ──► inbox queue ──► the socket (EOF when it leaves)
                   the socket ──► pump ──► frames on 2i; a failed connect ──► text on 2i+1
      the session ends when every port has (pod side) or, after a flush, when the client
      leaves

streaming.py imports this module on the first port-forward session, so ctypes (for
setns) loads only then.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from concurrent.futures import Future
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ctypes

    from websockets.asyncio.server import ServerConnection

from runtime.service.cri import stream as W
from runtime.service.streaming import PortForwardSpec, pump

CLONE_NEWNET = 0x40000000


@cache
def _libc() -> ctypes.CDLL:
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
    return libc


def _setns(fd: int, what: str) -> None:
    if _libc().setns(fd, CLONE_NEWNET) != 0:
        import ctypes

        e = ctypes.get_errno()
        raise OSError(e, f"setns into {what}: {os.strerror(e)}")


def socket_in_netns(netns: str) -> socket.socket:
    """A TCP socket of the network namespace at NETNS ("" : ours). Made on a thread of its
    own that enters the namespace and comes back: setns moves only the calling thread, and
    a thread that could not come back ends instead of serving anything else."""
    if not netns:
        return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    result: Future[socket.socket] = Future()

    def work() -> None:
        try:
            own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                target = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    _setns(target, netns)
                finally:
                    os.close(target)
                try:
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                finally:
                    _setns(own, "the daemon's network namespace")
            finally:
                os.close(own)
            result.set_result(s)
        except BaseException as e:
            result.set_exception(e)

    t = threading.Thread(target=work, name="netns-socket", daemon=True)
    t.start()
    t.join()
    return result.result()


async def _forward_one(conn: ServerConnection, spec: PortForwardSpec, index: int,
                       inbox: asyncio.Queue[bytes | None]) -> None:
    port = spec.ports[index]
    data_ch, err_ch = 2 * index, 2 * index + 1
    try:
        sock = await asyncio.to_thread(socket_in_netns, spec.netns)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(
                sock, ("127.0.0.1", port)), timeout=10)
        except BaseException:
            sock.close()
            raise
    except (OSError, TimeoutError) as e:
        why = os.strerror(e.errno) if e.errno else str(e) or "timed out"
        await conn.send(W.encode(err_ch, f"{spec.what}: port {port}: connect to "
                                 f"127.0.0.1:{port} in the pod: {why}".encode()))
        return
    reader, writer = await asyncio.open_connection(sock=sock)

    async def upstream() -> None:
        while (data := await inbox.get()) is not None:
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    up = asyncio.create_task(upstream())
    try:
        await pump(reader, conn, data_ch)
    finally:
        up.cancel()
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def port_forward(conn: ServerConnection, spec: PortForwardSpec) -> None:
    for i, port in enumerate(spec.ports):
        await conn.send(W.encode(2 * i, W.port_prefix(port)))
        await conn.send(W.encode(2 * i + 1, W.port_prefix(port)))
    inboxes: list[asyncio.Queue[bytes | None]] = [asyncio.Queue() for _ in spec.ports]
    ports = [asyncio.create_task(_forward_one(conn, spec, i, q))
             for i, q in enumerate(inboxes)]

    async def inbound() -> None:
        from websockets.exceptions import ConnectionClosed

        with contextlib.suppress(ConnectionClosed):
            async for frame in conn:
                channel, payload = W.decode(frame)
                if channel % 2 == 0 and channel // 2 < len(inboxes) and payload:
                    inboxes[channel // 2].put_nowait(payload)
        for q in inboxes:
            q.put_nowait(None)

    reading = asyncio.create_task(inbound())
    try:
        await asyncio.wait([*ports, reading], return_when=asyncio.FIRST_COMPLETED)
        if reading.done():  # the client left: give the pod side a moment to flush
            await asyncio.wait(ports, timeout=2)
        else:  # the pod side ended first: the session ends when every port has
            await asyncio.wait(ports)
    finally:
        for t in (*ports, reading):
            t.cancel()
        await asyncio.gather(*ports, reading, return_exceptions=True)

