"""Container logs from the CRI log files the runtime writes, as kubelet serves them.

    <pod log dir>/<container>/<attempt>.log      one file per container instance
        "2016-10-06T00:17:09.669794202Z stdout F a whole line"
        "2016-10-06T00:17:09.669794202Z stderr P the first part of a long line"

    LogReader(path).read() ─► parse_fragment(raw) per line ─► Joiner (P...F -> one line)
        ─► LogFilter (since, then tail) ─► format_line (timestamps) ─► Limiter (limit_bytes)
    stream_log(path, options, alive=...)   async: what is there, then (follow) what comes,
                                           until the container is no longer alive

Parsing, joining, filtering and limiting are pure and unit-tested; only LogReader and
stream_log touch files (and stream_log sleeps while following).
"""

from __future__ import annotations

import asyncio
import calendar
import collections
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import BinaryIO

NS_PER_SECOND = 1_000_000_000
READ_BLOCK = 64 * 1024
FOLLOW_POLL = 0.2  # seconds between looks at a followed file with nothing new
ALIVE_EVERY = 1.0  # seconds between asking whether a followed container still runs


class LogFormatError(ValueError):
    """A line of a CRI log file is not `<timestamp> <stream> <P|F> <content>`."""


@dataclass(frozen=True)
class Fragment:
    """One line of the file: a whole log line (F) or a piece of one (P)."""

    timestamp: str  # as written (RFC 3339 with nanoseconds)
    ts_ns: int
    stream: str  # stdout | stderr
    partial: bool
    content: bytes


@dataclass(frozen=True)
class LogLine:
    """A log line the container wrote, partial pieces joined; stamped with its first piece."""

    timestamp: str
    ts_ns: int
    stream: str
    content: bytes  # without the newline


def parse_timestamp(text: str) -> int:
    """RFC 3339 (any number of fraction digits, Z or +hh:mm) -> nanoseconds since the epoch."""
    try:
        date, _, rest = text.partition("T")
        year, month, day = (int(x) for x in date.split("-"))
        if rest.endswith(("Z", "z")):
            clock, offset = rest[:-1], 0
        else:
            sign_at = max(rest.rfind("+"), rest.rfind("-"))
            if sign_at < 0:
                raise ValueError("no time zone")
            clock, zone = rest[:sign_at], rest[sign_at:]
            hours, _, minutes = zone[1:].partition(":")
            offset = (int(hours) * 3600 + int(minutes or 0) * 60) * (1 if zone[0] == "+"
                                                                      else -1)
        hms, _, fraction = clock.partition(".")
        hour, minute, second = (int(x) for x in hms.split(":"))
        if fraction and not fraction.isdigit():
            raise ValueError("fraction")
        nanos = int((fraction + "000000000")[:9]) if fraction else 0
        seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    except ValueError as err:
        raise LogFormatError(f"timestamp {text!r}: not RFC 3339 ({err})") from None
    return (seconds - offset) * NS_PER_SECOND + nanos


def parse_fragment(raw: bytes) -> Fragment:
    """One line of a CRI log file, without its newline."""
    parts = raw.split(b" ", 3)
    if len(parts) < 3:
        raise LogFormatError(f"log line {raw[:80]!r}: want '<time> <stream> <tag> <content>'")
    stamp, stream, tag = parts[0].decode("ascii", "replace"), parts[1], parts[2]
    if stream not in (b"stdout", b"stderr"):
        raise LogFormatError(f"log line {raw[:80]!r}: stream: want stdout or stderr, got "
                             f"{stream[:16]!r}")
    if tag not in (b"P", b"F"):
        # older runtimes wrote no tag: the rest of the line is the content
        content = raw.split(b" ", 2)[2] if len(parts) >= 3 else b""
        return Fragment(stamp, parse_timestamp(stamp), stream.decode(), False, content)
    return Fragment(stamp, parse_timestamp(stamp), stream.decode(), tag == b"P",
                    parts[3] if len(parts) > 3 else b"")


@dataclass
class Joiner:
    """P pieces of one stream gather until that stream's F piece completes the line."""

    pending: dict[str, list[Fragment]] = field(default_factory=dict)

    def feed(self, frag: Fragment) -> LogLine | None:
        if frag.partial:
            self.pending.setdefault(frag.stream, []).append(frag)
            return None
        pieces = [*self.pending.pop(frag.stream, []), frag]
        first = pieces[0]
        return LogLine(first.timestamp, first.ts_ns, frag.stream,
                       b"".join(p.content for p in pieces))

    def flush(self) -> list[LogLine]:
        """Lines still partial (the file ends mid-line): what there is of them."""
        out = []
        for stream, pieces in self.pending.items():
            first = pieces[0]
            out.append(LogLine(first.timestamp, first.ts_ns, stream,
                               b"".join(p.content for p in pieces)))
        self.pending.clear()
        return sorted(out, key=lambda line: line.ts_ns)


def format_line(line: LogLine, *, timestamps: bool) -> bytes:
    prefix = line.timestamp.encode() + b" " if timestamps else b""
    return prefix + line.content + b"\n"


@dataclass
class Limiter:
    """limit_bytes: passes bytes until the budget is spent (None: no limit)."""

    remaining: int | None

    @property
    def done(self) -> bool:
        return self.remaining is not None and self.remaining <= 0

    def take(self, data: bytes) -> bytes:
        if self.remaining is None:
            return data
        out = data[:max(self.remaining, 0)]
        self.remaining -= len(out)
        return out


@dataclass(frozen=True)
class LogOptions:
    follow: bool = False
    tail_lines: int | None = None  # None: all; 0: none of what is there already
    since_ns: int | None = None  # absolute: lines stamped before it are left out
    timestamps: bool = False
    limit_bytes: int | None = None

    @staticmethod
    def since(seconds: int | None, *, now_ns: int) -> int | None:
        return None if seconds is None else now_ns - seconds * NS_PER_SECOND


def select(lines: Iterable[LogLine], *, since_ns: int | None, tail: int | None
           ) -> list[LogLine]:
    """Since first, then the last TAIL of what is left (kubelet's order)."""
    kept = (ln for ln in lines if since_ns is None or ln.ts_ns >= since_ns)
    if tail is None:
        return list(kept)
    if tail <= 0:
        return []
    return list(collections.deque(kept, maxlen=tail))


class LogReader:
    """Reads a CRI log file from the start, then what is appended: whole lines only
    (a line the writer has not finished stays buffered until its newline comes)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.joiner = Joiner()
        self._file: BinaryIO | None = None
        self._rest = b""
        self.bad_lines = 0

    def _open(self) -> bool:
        if self._file is None:
            try:
                self._file = open(self.path, "rb")  # noqa: SIM115 - held across reads
            except FileNotFoundError:
                return False
        return True

    def read(self) -> list[LogLine]:
        """The lines completed since the last read (blocking: call it from a thread)."""
        if not self._open():
            return []
        f = self._file
        assert f is not None
        out: list[LogLine] = []
        while True:
            block: bytes = f.read(READ_BLOCK)
            if not block:
                return out
            data = self._rest + block
            lines = data.split(b"\n")
            self._rest = lines.pop()
            for raw in lines:
                if not raw:
                    continue
                try:
                    line = self.joiner.feed(parse_fragment(raw))
                except LogFormatError:
                    self.bad_lines += 1
                    continue
                if line is not None:
                    out.append(line)

    def finish(self) -> list[LogLine]:
        """At the end (the container is gone): an unterminated last line and open pieces."""
        out = self.read()
        if self._rest:
            try:
                line = self.joiner.feed(parse_fragment(self._rest))
                if line is not None:
                    out.append(line)
            except LogFormatError:
                self.bad_lines += 1
            self._rest = b""
        return out + self.joiner.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = None


async def stream_log(path: str, options: LogOptions, *,
                     alive: Callable[[], Awaitable[bool]],
                     poll: float = FOLLOW_POLL, alive_every: float = ALIVE_EVERY,
                     ) -> AsyncIterator[bytes]:
    """The log of one container instance as the caller asked for it, in chunks.

    Without follow: what the file holds now. With follow: then what is appended, until
    `alive()` says the container no longer runs (what it wrote last is still sent) or
    the caller stops iterating."""
    if not os.path.exists(path) and not options.follow:
        return
    reader = LogReader(path)
    limiter = Limiter(options.limit_bytes)
    try:
        first = await asyncio.to_thread(reader.read if options.follow else reader.finish)
        for chunk in _chunks(select(first, since_ns=options.since_ns,
                                    tail=options.tail_lines), options, limiter):
            yield chunk
        if not options.follow or limiter.done:
            return
        checked = time.monotonic()
        while not limiter.done:
            lines = await asyncio.to_thread(reader.read)
            if lines:
                for chunk in _chunks(select(lines, since_ns=options.since_ns, tail=None),
                                     options, limiter):
                    yield chunk
                continue
            if time.monotonic() - checked >= alive_every:
                checked = time.monotonic()
                if not await alive():
                    last = await asyncio.to_thread(reader.finish)
                    for chunk in _chunks(select(last, since_ns=options.since_ns, tail=None),
                                         options, limiter):
                        yield chunk
                    return
            await asyncio.sleep(poll)
    finally:
        reader.close()


def _chunks(lines: list[LogLine], options: LogOptions, limiter: Limiter,
            *, size: int = 32 * 1024) -> Iterable[bytes]:
    """Formatted lines gathered into chunks of about SIZE bytes, within the limit."""
    buf: list[bytes] = []
    n = 0
    for line in lines:
        data = limiter.take(format_line(line, timestamps=options.timestamps))
        if data:
            buf.append(data)
            n += len(data)
        if n >= size or limiter.done:
            yield b"".join(buf)
            buf, n = [], 0
        if limiter.done:
            return
    if buf:
        yield b"".join(buf)
