"""The container's stdin and terminal in the shim (CRI ContainerConfig stdin, stdin_once, tty).

    create   stdin: a pipe; its read end is the runtime's stdin (so the container's), its
                    write end stays in the shim, then in the holder, while the container
                    runs: a `cat` does not see EOF because no one is attached
             tty:   process.terminal; `runtime create --console-socket S`: the runtime
                    sends the pty master over S (Console; S sits in a short directory of
                    its own, as sun_path holds 108 bytes); the shim reads the master as
                    the container's stdout (CRI log: F per line, and what there is of a
                    line not ended yet as P at once: a prompt) and holds it
    attach   the reply to "attach" carries a copy of that fd (send_with_fd, SCM_RIGHTS):
             the daemon writes the session's stdin into it and sets the window size on
             the master (TIOCSWINSZ). stdin_once: the shim closes its own copy of the
             pipe once it has handed one out, so the container sees EOF when that first
             session ends (a tty cannot be closed: the daemon sends ^D instead)

Builtin modules only (and protocol.py): the shim stays small (main.py).
"""

from __future__ import annotations

import _socket
import os
import sys
import time

from runtime.service.shim import protocol as P

TYPE_CHECKING = False
if TYPE_CHECKING:
    from runtime.service.shim.main import Shim

FD_SIZE = 4  # an int in SCM_RIGHTS data


def fd_bytes(fd: int) -> bytes:
    return fd.to_bytes(FD_SIZE, sys.byteorder, signed=True)


def send_with_fd(sock: _socket.socket, data: bytes, fd: int) -> bool:
    """DATA (one reply frame) with a copy of FD attached, in one sendmsg, then the rest;
    whether the copy went out (False: the caller hung up)."""
    sock.setblocking(True)
    sent = 0
    try:
        sent = sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fd_bytes(fd))])
        if sent < len(data):
            sock.sendall(data[sent:])
    except OSError:
        pass
    sock.setblocking(False)
    return sent > 0


def attach(shim: Shim, sock: _socket.socket) -> None:
    """Answer "attach": a copy of the container's stdin to the caller on SOCK; with
    stdin_once, our own copy of the pipe closed (EOF when that one session lets go)."""
    if shim.exit is not None:
        raise RuntimeError(f"container {shim.id} is {shim.status}, not running")
    if shim.stdin_fd < 0:
        why = "closed: stdin_once, and a session attached before" \
            if shim.spec.get("stdin") else "the container was created without stdin"
        raise RuntimeError(f"container {shim.id}: stdin: {why}")
    sent = send_with_fd(sock, P.encode({"ok": True, "tty": shim.tty}), shim.stdin_fd)
    if sent and shim.stdin_once and not shim.tty:
        os.close(shim.stdin_fd)
        shim.stdin_fd = -1


def fds_of(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    """The fds in recvmsg's ancillary data (SCM_RIGHTS)."""
    out = []
    for level, kind, data in ancdata:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            usable = len(data) - len(data) % FD_SIZE
            out += [int.from_bytes(data[i:i + FD_SIZE], sys.byteorder, signed=True)
                    for i in range(0, usable, FD_SIZE)]
    return out


class Console:
    """The console socket of `runtime create --console-socket`: listening before the
    runtime runs, the pty master taken from it after (the runtime sent it meanwhile)."""

    def __init__(self, name: str) -> None:
        self.dir = f"/tmp/corral-console-{os.getpid()}-{time.time_ns()}"
        os.mkdir(self.dir, 0o700)
        self.path = f"{self.dir}/{name}"
        self.sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            self.sock.bind(self.path)
            self.sock.listen(1)
        except BaseException:
            self.close()
            raise

    def receive(self, *, what: str, timeout: float = 10.0) -> int:
        """The pty master the runtime sent (it has ended: the connection waits queued)."""
        self.sock.settimeout(timeout)
        try:
            cfd, _ = self.sock._accept()  # type: ignore[attr-defined]  # _socket's
        except TimeoutError:
            raise RuntimeError(f"{what}: tty: the runtime sent no terminal") from None
        conn = _socket.socket(fileno=cfd)
        try:
            conn.settimeout(timeout)
            _, anc, _, _ = conn.recvmsg(4096, _socket.CMSG_SPACE(FD_SIZE * 4),
                                        _socket.MSG_CMSG_CLOEXEC)
        finally:
            conn.close()
        fds = fds_of(anc)
        if not fds:
            raise RuntimeError(f"{what}: tty: the runtime sent no terminal")
        for extra in fds[1:]:
            os.close(extra)
        return fds[0]

    def close(self) -> None:
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.rmdir(self.dir)
