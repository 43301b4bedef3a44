"""corral-ctr run -i/-t: this terminal relayed to the container's CRI Attach session.

    Attach(stdin, tty) ──► url ──► cri/stream.py connect (v5.channel.k8s.io)
        our stdin (raw mode when -t and it is a terminal) ──► channel 0, in order;
            its end ──► close stdin (v5): the container was created stdin_once, so it
            sees EOF
        our terminal's size now and on each SIGWINCH ──► channel 4
        channels 1 / 2 ──► our stdout / stderr
    until the server ends the session (the container stopped); the terminal is restored.
"""

from __future__ import annotations

import asyncio
import os
import signal
import termios

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from runtime.service.cri.stream import ChannelStream


def attach(conn: Any, cid: str, *, stdin: bool, tty: bool) -> None:
    """Relay this process's stdio to container CID (CONN: ctr/conn.Conn) until it stops."""
    from runtime.service.cri import api_pb2 as pb

    url = conn.rt("Attach", pb.AttachRequest(container_id=cid, stdin=stdin, tty=tty,
                                             stdout=True, stderr=not tty)).url
    asyncio.run(relay(url, stdin=stdin, tty=tty))


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


async def relay(url: str, *, stdin: bool, tty: bool, infd: int = 0, outfd: int = 1,
                errfd: int = 2) -> None:
    from runtime.service.cri import stream as W

    s = await W.connect(url)
    loop = asyncio.get_running_loop()
    saved = termios.tcgetattr(infd) if tty and stdin and os.isatty(infd) else None
    sizes = tty and os.isatty(outfd)
    queue: asyncio.Queue[bytes | tuple[int, int]] = asyncio.Queue()  # input, or a size

    def on_input() -> None:
        try:
            data = os.read(infd, 4096)
        except BlockingIOError:
            return
        if not data:
            loop.remove_reader(infd)
        queue.put_nowait(data)

    def on_winch() -> None:
        size = os.get_terminal_size(outfd)
        queue.put_nowait((size.columns, size.lines))

    sender: asyncio.Task[None] | None = None
    try:
        if saved is not None:
            import tty as ttymode

            ttymode.setraw(infd, termios.TCSANOW)  # keep what was typed ahead
        if sizes:
            on_winch()
            loop.add_signal_handler(signal.SIGWINCH, on_winch)
        if stdin:
            loop.add_reader(infd, on_input)
        sender = asyncio.create_task(_send(s, queue))
        while (frame := await s.recv()) is not None:
            channel, data = frame
            if channel == W.ERROR:
                break
            _write(errfd if channel == W.STDERR else outfd, data)
    finally:
        if stdin:
            loop.remove_reader(infd)
        if sizes:
            loop.remove_signal_handler(signal.SIGWINCH)
        if sender is not None:
            sender.cancel()
        if saved is not None:
            termios.tcsetattr(infd, termios.TCSANOW, saved)
        await s.close()


async def _send(s: ChannelStream, queue: asyncio.Queue[bytes | tuple[int, int]]) -> None:
    """Our input and sizes to the session in their order; EOF (b"") closes its stdin."""
    while (item := await queue.get()) != b"":
        if isinstance(item, tuple):
            await s.resize(*item)
        else:
            await s.send_stdin(item)
    await s.close_stdin()
