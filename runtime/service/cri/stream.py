"""CRI streaming on the wire: Kubernetes' channel protocol over WebSocket, and its client.

``Exec``/``Attach``/``PortForward`` answer with a URL on the runtime's streaming server
(ours: runtime/service/streaming.py; containerd's CRI plugin has its own). The caller opens
a WebSocket to it and speaks, one binary frame per message::

    frame = channel byte + payload
      exec/attach   0 stdin   1 stdout   2 stderr   3 error (a JSON metav1.Status, once, at
                    the end)   4 resize (JSON {"Width": w, "Height": h})
                    255 close (v5.channel.k8s.io only): payload = the channel to close,
                    so the client can signal stdin EOF
      port-forward  2i data, 2i+1 error for the i-th requested port; the server's first
                    frame on each carries the port, 2 bytes little-endian

    connect(url) ──► ChannelStream: send_stdin / close_stdin / resize / recv / close
    port_forward(url) ──► PortForwardStream: send(port, data) / recv / close
    exit_code(status_json) -> (code, message)

The codec (``encode``, ``decode``, ``status_*``) is shared with the server. Nothing here
blocks; everything else is the ``websockets`` library, imported by the first session (not
by importing this module: an idle agent never pays for it; see bench/node_footprint.py).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection
    from websockets.typing import Subprotocol

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE = 255  # v5: "close this channel"
# websockets' Subprotocol is a NewType of str: the plain strings, typed as it, without
# importing websockets here
V5 = cast("Subprotocol", "v5.channel.k8s.io")
V4 = cast("Subprotocol", "v4.channel.k8s.io")
PORT_FORWARD = cast("Subprotocol", "portforward.k8s.io")
EXEC_PROTOCOLS = (V5, V4)
PORT_FORWARD_PROTOCOLS = (PORT_FORWARD, V4)


class StreamError(Exception):
    """A streaming session that could not be opened or spoke something else."""


# ---- the codec (pure) ---------------------------------------------------------------------


def encode(channel: int, payload: bytes) -> bytes:
    if not 0 <= channel <= 255:
        raise ValueError(f"frame: channel: must be 0..255, got {channel}")
    return bytes((channel,)) + payload


def decode(frame: bytes | str) -> tuple[int, bytes]:
    """(channel, payload) of one binary frame; text frames and empty frames are errors."""
    if isinstance(frame, str):
        raise StreamError("frame: a text frame on a binary channel protocol")
    if not frame:
        raise StreamError("frame: empty (no channel byte)")
    return frame[0], bytes(frame[1:])


def resize_payload(width: int, height: int) -> bytes:
    for name, v in (("Width", width), ("Height", height)):
        if not 0 <= v <= 0xFFFF:
            raise ValueError(f"resize: {name}: must be 0..65535, got {v}")
    return json.dumps({"Width": width, "Height": height}).encode()


def parse_resize(payload: bytes) -> tuple[int, int]:
    """(width, height) of a channel-4 payload."""
    try:
        raw = json.loads(payload)
        w, h = int(raw["Width"]), int(raw["Height"])
    except (ValueError, KeyError, TypeError):
        raise StreamError(f"resize: expected {{\"Width\": w, \"Height\": h}}, got "
                          f"{payload[:80]!r}") from None
    if not (0 <= w <= 0xFFFF and 0 <= h <= 0xFFFF):
        raise StreamError(f"resize: size {w}x{h} out of range 0..65535")
    return w, h


def status_success() -> bytes:
    return json.dumps({"metadata": {}, "status": "Success"}).encode()


def status_exit(code: int, cmd: list[str]) -> bytes:
    """The channel-3 Status of a command that ended with CODE (Success when 0)."""
    if code == 0:
        return status_success()
    return json.dumps({
        "metadata": {}, "status": "Failure",
        "message": f"command terminated with non-zero exit code: error executing command "
                   f"{cmd}, exit code {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}).encode()


def status_failure(message: str, reason: str = "InternalError") -> bytes:
    return json.dumps({"metadata": {}, "status": "Failure", "message": message,
                       "reason": reason}).encode()


def exit_code(status_json: bytes) -> tuple[int, str]:
    """A channel-3 Status as (exit code, message): (0, "") for Success, (N, message) for
    NonZeroExitCode, and (-1, message) for any other failure (the command did not run, or
    the session broke)."""
    try:
        st: Any = json.loads(status_json)
    except ValueError:
        return -1, f"status: not JSON: {status_json[:80]!r}"
    if not isinstance(st, dict):
        return -1, f"status: not an object: {status_json[:80]!r}"
    if st.get("status") == "Success":
        return 0, ""
    message = str(st.get("message") or st.get("reason") or "unknown failure")
    if st.get("reason") == "NonZeroExitCode":
        for cause in (st.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode":
                try:
                    return int(cause.get("message", "")), message
                except ValueError:
                    break
    return -1, message


def port_prefix(port: int) -> bytes:
    return struct.pack("<H", port)


def parse_port(payload: bytes) -> int:
    if len(payload) < 2:
        raise StreamError(f"port-forward: first frame too short for a port: {payload!r}")
    port: int = struct.unpack("<H", payload[:2])[0]
    return port


def ws_url(url: str) -> str:
    """The WebSocket form of a streaming URL (CRI answers http://...)."""
    for plain, ws in (("http://", "ws://"), ("https://", "wss://")):
        if url.startswith(plain):
            return ws + url[len(plain):]
    if url.startswith(("ws://", "wss://")):
        return url
    raise StreamError(f"url {url!r}: expected http://, https://, ws:// or wss://")


async def _open(url: str, protocols: tuple[Subprotocol, ...], timeout: float
                ) -> ClientConnection:
    from websockets.asyncio.client import connect as ws_connect

    try:
        conn = await ws_connect(ws_url(url), subprotocols=list(protocols), compression=None,
                                open_timeout=timeout, ping_interval=None, proxy=None,
                                max_size=None, close_timeout=2)
    except (OSError, TimeoutError) as e:
        raise StreamError(f"url {url}: {e}") from e
    except Exception as e:  # websockets' InvalidStatus, InvalidHandshake, ...
        raise StreamError(f"url {url}: {e}") from e
    if conn.subprotocol not in protocols:
        await conn.close()
        raise StreamError(f"url {url}: server chose subprotocol {conn.subprotocol!r}, "
                          f"offered {', '.join(protocols)}")
    return conn


# ---- exec / attach ------------------------------------------------------------------------


class ChannelStream:
    """One exec or attach session (from ``connect``)."""

    def __init__(self, conn: ClientConnection) -> None:
        self._conn = conn
        self.protocol: str = str(conn.subprotocol)

    async def send_stdin(self, data: bytes) -> None:
        await self._conn.send(encode(STDIN, data))

    async def close_stdin(self) -> None:
        """Signal stdin EOF. Only v5.channel.k8s.io can (channel 255); on v4 (e.g.
        containerd 1.6) this does nothing, and the command sees EOF when ``close`` ends
        the session."""
        if self.protocol == V5:
            await self._conn.send(encode(CLOSE, bytes((STDIN,))))

    async def resize(self, width: int, height: int) -> None:
        await self._conn.send(encode(RESIZE, resize_payload(width, height)))

    async def recv(self) -> tuple[int, bytes] | None:
        """The next (channel, payload); None once the server has closed the session.
        Empty frames (the server's "connected" signal) are skipped."""
        from websockets.exceptions import ConnectionClosed

        while True:
            try:
                frame = await self._conn.recv()
            except ConnectionClosed:
                return None
            channel, payload = decode(frame)
            if payload or channel == ERROR:
                return channel, payload

    async def close(self) -> None:
        await self._conn.close()


async def connect(url: str, *, timeout: float = 10.0) -> ChannelStream:
    """Open the exec/attach session at URL (v5.channel.k8s.io preferred, else v4)."""
    return ChannelStream(await _open(url, EXEC_PROTOCOLS, timeout))


async def run(stream: ChannelStream, *, stdin: bytes | None = None
              ) -> tuple[bytes, bytes, int, str]:
    """Convenience: send STDIN (then EOF when the protocol can), collect everything;
    (stdout, stderr, exit code, message) as ``exit_code`` reads channel 3."""
    if stdin is not None:
        await stream.send_stdin(stdin)
        await stream.close_stdin()
    out, err = bytearray(), bytearray()
    code, message = -1, "the session ended without a status"
    while (item := await stream.recv()) is not None:
        channel, payload = item
        if channel == STDOUT:
            out += payload
        elif channel == STDERR:
            err += payload
        elif channel == ERROR:
            code, message = exit_code(payload)
    await stream.close()
    return bytes(out), bytes(err), code, message


# ---- port-forward -------------------------------------------------------------------------


@dataclass(frozen=True)
class PortFrame:
    port: int
    error: bool  # from the port's error channel (a message text), else data
    data: bytes


class PortForwardStream:
    """One port-forward session (from ``port_forward``): ``ports`` in request order."""

    def __init__(self, conn: ClientConnection, ports: list[int]) -> None:
        self._conn = conn
        self.protocol: str = str(conn.subprotocol)
        self.ports = ports
        self._pending: list[PortFrame] = []

    async def send(self, port: int, data: bytes) -> None:
        try:
            i = self.ports.index(port)
        except ValueError:
            raise StreamError(f"port-forward: port {port}: not in the session "
                              f"({self.ports})") from None
        await self._conn.send(encode(2 * i, data))

    async def recv(self) -> PortFrame | None:
        """The next frame from the pod; None once the session is closed."""
        from websockets.exceptions import ConnectionClosed

        if self._pending:
            return self._pending.pop(0)
        while True:
            try:
                channel, payload = decode(await self._conn.recv())
            except ConnectionClosed:
                return None
            if payload and channel // 2 < len(self.ports):
                return PortFrame(self.ports[channel // 2], bool(channel % 2), payload)

    async def close(self) -> None:
        await self._conn.close()


async def port_forward(url: str, *, ports: list[int], timeout: float = 10.0
                       ) -> PortForwardStream:
    """Open the port-forward session at URL for PORTS (as given to PortForward, in order);
    reads the server's port-prefix frames, two per port."""
    from websockets.exceptions import ConnectionClosed

    conn = await _open(url, PORT_FORWARD_PROTOCOLS, timeout)
    stream = PortForwardStream(conn, list(ports))
    seen: set[int] = set()
    try:
        while len(seen) < 2 * len(ports):
            channel, payload = decode(await conn.recv())
            if channel >= 2 * len(ports):
                continue
            if channel in seen:  # data before every prefix arrived: keep it for recv()
                stream._pending.append(PortFrame(ports[channel // 2], bool(channel % 2),
                                                 payload))
                continue
            got = parse_port(payload)
            if got != ports[channel // 2]:
                raise StreamError(f"port-forward: channel {channel}: server says port "
                                  f"{got}, requested {ports[channel // 2]}")
            seen.add(channel)
            if payload[2:]:
                stream._pending.append(PortFrame(got, bool(channel % 2), payload[2:]))
    except ConnectionClosed:
        raise StreamError(f"url {url}: closed before every port was announced") from None
    except BaseException:
        await conn.close()
        raise
    return stream
