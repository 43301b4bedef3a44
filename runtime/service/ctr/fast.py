"""corral-ctr's private fast path to the daemon: `run` in one call, without gRPC.

    CLI (stdlib only: no grpc, no protobuf)      daemon (runtime/service/ctrsock.py)
    connect SOCKET + ".ctr"  ──{"op": "run", namespace, image, name, args, rm, detach}──►
                             ◄──{"ok", "id", "log_path"}    sandbox + container started
                             ◄──{"ok", "exit_code"}         when the shim reports the exit
    drain the CRI log        ──{"op": "done"}──►
                             ◄──{"ok"}                      removed (with --rm)

Frames are the shim protocol's (length, newline, JSON). An error is {"ok": false,
"code": "<gRPC status name>", "error": message}, mapped to exit codes by ctr/main.py as a
gRPC error would be. Importing grpc costs about 150 ms, several times what the daemon
needs to start and remove a container, so `run` goes here whenever the socket exists.
"""

from __future__ import annotations

import _socket
import select

from runtime.service.shim import protocol as P

TYPE_CHECKING = False
if TYPE_CHECKING:  # only builtin modules at run time: the CLI starts in ~15 ms
    from typing import Any

SUFFIX = ".ctr"


def private_socket(cri_socket: str) -> str:
    """The private socket the daemon serves next to its CRI socket (as containerd's
    ``.ttrpc`` next to its gRPC one)."""
    return cri_socket + SUFFIX


class CallError(Exception):
    """The daemon answered with an error; CODE is a gRPC status name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Client:
    def __init__(self, cri_socket: str) -> None:
        self.sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        try:
            self.sock.connect(private_socket(cri_socket))
        except OSError:
            self.sock.close()
            raise
        self.decoder = P.Decoder()
        self.pending: list[dict[str, Any]] = []

    def send(self, msg: dict[str, Any]) -> None:
        self.sock.sendall(P.encode(msg))

    def recv(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next reply; None if TIMEOUT seconds pass first."""
        while not self.pending:
            if timeout is not None and not select.select([self.sock], [], [], timeout)[0]:
                return None
            data = self.sock.recv(65536)
            if not data:
                raise CallError("UNAVAILABLE", "the daemon closed the connection")
            self.pending.extend(self.decoder.feed(data))
        reply = self.pending.pop(0)
        if not reply.get("ok"):
            raise CallError(str(reply.get("code") or "UNKNOWN"), str(reply.get("error")))
        return reply

    def close(self) -> None:
        self.sock.close()
