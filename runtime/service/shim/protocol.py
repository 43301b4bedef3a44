"""The shim's control protocol: one JSON object per frame over a unix stream socket.

    frame   = length (ASCII decimal) b"\\n" body       body = UTF-8 JSON object
    request = {"op": OP, ...arguments}
    reply   = {"ok": true, ...result} | {"ok": false, "error": "message"}

One request, one reply per connection turn; "wait" and "exec" replies come when the
process ends. This module is imported by the shim and by corral-ctr's `run`, so it uses
the `json` package's C core (`_json`) directly: `import json` pulls in `re` and `enum`,
about half of the CLI's start-up.
"""

from __future__ import annotations

import _json  # json's C accelerator

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_FRAME = 1 << 20  # a request or reply larger than 1 MiB is a protocol error

# Operations the shim serves.
OP_STATE = "state"
OP_START = "start"
OP_KILL = "kill"
OP_EXEC = "exec"
OP_WAIT = "wait"
OP_DELETE = "delete"
OP_SHUTDOWN = "shutdown"
OP_REOPEN = "reopen"  # close the container's log file and open log_path again (rotation)
# the reply carries (SCM_RIGHTS) the container's stdin: its pipe's write end, or the pty
# master of a tty container; with stdin_once the shim closes its own copy on the first
OP_ATTACH = "attach"
OPS = (OP_STATE, OP_START, OP_KILL, OP_EXEC, OP_WAIT, OP_DELETE, OP_SHUTDOWN, OP_REOPEN,
       OP_ATTACH)

# Files in a task's state directory.
SOCKET = "shim.sock"
SPEC = "shim.json"  # what the daemon asks of the shim (written before it starts)
EXIT = "exit.json"  # the init process's exit, written atomically, kept until delete
PID = "shim.pid"
LOG = "shim.log"  # the shim's own stderr
CONSOLE = "console.sock"  # tty: where the runtime sends the pty master (during create)

# Task status as the shim reports it.
CREATED = "created"
RUNNING = "running"
STOPPED = "stopped"


class ProtocolError(Exception):
    """A frame that is not length b"\\n" JSON-object, or a connection cut mid-frame."""


def _unencodable(o: object) -> object:
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


# json.JSONEncoder(separators=(",", ":")) as its C encoder: markers (None: no cycle
# check, so no state shared between calls), default, string encoder, indent, key
# separator, item separator, sort_keys, skipkeys, allow_nan
_ENCODE = _json.make_encoder(None, _unencodable, _json.encode_basestring_ascii, None, ":", ",",
                             False, False, True)


class _Scanning:
    """What json.JSONDecoder hands its C scanner: json.loads' defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"NaN": float("nan"), "Infinity": float("inf"),
                      "-Infinity": float("-inf")}.__getitem__


_SCAN = _json.make_scanner(_Scanning())  # type: ignore[arg-type]  # duck-typed context


def dumps(obj: Any) -> str:
    """json.dumps(obj, separators=(",", ":"))."""
    return "".join(_ENCODE(obj, 0))


def loads(text: str | bytes) -> Any:
    """json.loads of one JSON document (UTF-8 if bytes); ValueError if it is not one."""
    if isinstance(text, bytes):
        text = text.decode()
    try:
        obj, end = _SCAN(text, 0)  # the C scanner holds the GIL throughout: thread-safe
    except StopIteration as e:
        raise ValueError(f"Expecting value: char {e.value}") from None
    if end != len(text):
        raise ValueError(f"Extra data: char {end}")
    return obj


def encode(msg: dict[str, Any]) -> bytes:
    body = dumps(msg).encode()
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(body)} bytes exceeds {MAX_FRAME}")
    return b"%d\n" % len(body) + body


class Decoder:
    """Incremental decoder: feed bytes as they arrive, take whole messages out."""

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self.buf += data
        out: list[dict[str, Any]] = []
        while True:
            nl = self.buf.find(b"\n", 0, 12)
            if nl < 0:
                if len(self.buf) >= 12:
                    raise ProtocolError(f"bad frame header {self.buf[:12]!r}")
                return out
            head = self.buf[:nl]
            if not head.isdigit():
                raise ProtocolError(f"bad frame header {head!r}")
            size = int(head)
            if size > MAX_FRAME:
                raise ProtocolError(f"frame of {size} bytes exceeds {MAX_FRAME}")
            if len(self.buf) < nl + 1 + size:
                return out
            body = self.buf[nl + 1:nl + 1 + size]
            self.buf = self.buf[nl + 1 + size:]
            try:
                msg = loads(body)
            except ValueError as e:
                raise ProtocolError(f"frame body is not JSON: {e}") from None
            if not isinstance(msg, dict):
                raise ProtocolError(f"frame body is not an object: {type(msg).__name__}")
            out.append(msg)


def exit_record(*, pid: int, status: int, exited_at_ns: int, oom: bool) -> dict[str, Any]:
    """The content of EXIT: CRI's exit code (128+signal for a signal) and reason."""
    if oom:
        reason = "OOMKilled"
    elif status == 0:
        reason = "Completed"
    else:
        reason = "Error"
    return {"pid": pid, "exit_code": status, "exited_at_ns": exited_at_ns, "reason": reason}


def wait_status_code(wait_status: int) -> int:
    """A waitpid status as a shell reports it: the exit code, or 128 + the signal."""
    if wait_status & 0x7F == 0:
        return (wait_status >> 8) & 0xFF
    return 128 + (wait_status & 0x7F)


def cri_timestamp(ns: int) -> str:
    """RFC 3339 with nine fraction digits in UTC, as CRI log lines and containerd use."""
    import time

    t = time.gmtime(ns // 1_000_000_000)
    return (f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:"
            f"{t.tm_min:02d}:{t.tm_sec:02d}.{ns % 1_000_000_000:09d}Z")


class CriLog:
    """Turns a stream's bytes into CRI log lines: `<time> <stream> <F|P> <line>`.

    A whole line is tagged F; a line longer than `max_line` is cut into P pieces ending
    with an F piece; what is left when the stream ends is written as F (as containerd).
    `eager` (a terminal's output): what is read of a line not yet ended is written at once
    as a P piece, so a shell's prompt reaches the log, and attach sessions, before its
    line ends."""

    def __init__(self, stream: str, max_line: int = 16 * 1024, *, eager: bool = False
                 ) -> None:
        self.stream = stream.encode()
        self.max_line = max_line
        self.eager = eager
        self.pending = b""

    def _line(self, now_ns: int, tag: bytes, text: bytes) -> bytes:
        return b"%s %s %s %s\n" % (cri_timestamp(now_ns).encode(), self.stream, tag, text)

    def feed(self, data: bytes, now_ns: int) -> bytes:
        self.pending += data
        out = []
        while True:
            nl = self.pending.find(b"\n")
            if 0 <= nl <= self.max_line:
                out.append(self._line(now_ns, b"F", self.pending[:nl]))
                self.pending = self.pending[nl + 1:]
            elif len(self.pending) > self.max_line:
                out.append(self._line(now_ns, b"P", self.pending[:self.max_line]))
                self.pending = self.pending[self.max_line:]
            else:
                if self.eager and self.pending:
                    out.append(self._line(now_ns, b"P", self.pending))
                    self.pending = b""
                return b"".join(out)

    def close(self, now_ns: int) -> bytes:
        rest, self.pending = self.pending, b""
        return self._line(now_ns, b"F", rest) if rest else b""
