"""The line protocol between `corral-runc create` (parent) and the container's init.

Two pipes; each message is one line `<verb> <json>`. The child reports errors as
`error {"type": ..., "field": ..., "message": ...}` so the parent can re-raise the same
error type with the same field path.
"""

from __future__ import annotations

import os

from . import _json
from .errors import ConfigError, OCIError, SetupError, Unsupported

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class Channel:
    def __init__(self, rfd: int, wfd: int) -> None:
        self.rfd = rfd
        self.wfd = wfd
        self._buf = b""

    @classmethod
    def pair(cls) -> tuple[Channel, Channel]:
        """(parent side, child side); all four fds are close-on-exec."""
        r1, w1 = os.pipe()
        r2, w2 = os.pipe()
        return cls(r1, w2), cls(r2, w1)

    def send(self, verb: str, payload: Any = None) -> None:
        line = (verb + " " + _json.dumps(payload) + "\n").encode()
        os.write(self.wfd, line)

    def recv(self) -> tuple[str, Any]:
        """The next message; ("eof", None) when the other side closed."""
        while b"\n" not in self._buf:
            chunk = os.read(self.rfd, 65536)
            if not chunk:
                return "eof", None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        verb, _, payload = line.decode().partition(" ")
        return verb, _json.loads(payload) if payload else None

    def expect(self, verb: str) -> Any:
        got, payload = self.recv()
        if got == "error":
            raise error_from(payload)
        if got != verb:
            raise SetupError(f"container init: expected {verb!r}, got {got!r}")
        return payload

    def fork_sending_pid(self) -> int:
        """fork(); in the parent, send "pid" with the child's pid and return it. The child
        gets 0 only after that is sent: both then write to the same pipe, and nothing the
        child sends (such as "ready") may come before "pid"."""
        r, w = os.pipe()
        pid = os.fork()
        if pid:
            os.close(r)
            try:
                self.send("pid", pid)
            finally:
                os.close(w)
            return pid
        os.close(w)
        os.read(r, 1)  # EOF once the parent has sent "pid" (or died)
        os.close(r)
        return 0

    def send_error(self, e: BaseException) -> None:
        if isinstance(e, ConfigError):
            payload = {"type": type(e).__name__, "field": e.field, "problem": e.problem,
                       "source": e.source}
        else:
            payload = {"type": type(e).__name__, "message": str(e)}
        try:
            self.send("error", payload)
        except OSError:
            pass

    def close(self) -> None:
        for fd in (self.rfd, self.wfd):
            try:
                os.close(fd)
            except OSError:
                pass


def error_from(p: dict[str, Any]) -> OCIError:
    if p.get("type") in ("ConfigError", "Unsupported"):
        cls = Unsupported if p["type"] == "Unsupported" else ConfigError
        return cls(p["field"], p["problem"], source=p.get("source", "config.json"))
    if p.get("type") in ("OCIError", "SetupError", "NotFound", "InvalidState"):
        return SetupError(p["message"])
    return SetupError(f"container init: {p.get('type')}: {p.get('message')}")
