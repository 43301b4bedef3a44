"""agent/logs.py: the CRI log format, joining, since/tail/limit, and following a file."""

from __future__ import annotations

import asyncio
import os

import pytest

from agent import logs as L

T0 = "2024-05-01T10:00:00.000000001Z"
T0_NS = 1714557600 * 1_000_000_000 + 1


@pytest.mark.parametrize(("text", "want"), [
    pytest.param(T0, T0_NS, id="nanoseconds-Z"),
    pytest.param("2024-05-01T10:00:00Z", T0_NS - 1, id="no-fraction"),
    pytest.param("2024-05-01T10:00:00.5Z", T0_NS - 1 + 500_000_000, id="short-fraction"),
    pytest.param("2024-05-01T12:00:00.000000001+02:00", T0_NS, id="positive-offset"),
    pytest.param("2024-05-01T07:30:00.000000001-02:30", T0_NS, id="negative-offset"),
])
def test_parse_timestamp(text: str, want: int) -> None:
    assert L.parse_timestamp(text) == want


@pytest.mark.parametrize("text", [
    pytest.param("yesterday", id="words"),
    pytest.param("2024-05-01T10:00:00", id="no-zone"),
    pytest.param("2024-05-01T10:00:00.x1Z", id="bad-fraction"),
])
def test_parse_timestamp_rejects(text: str) -> None:
    with pytest.raises(L.LogFormatError, match="not RFC 3339"):
        L.parse_timestamp(text)


@pytest.mark.parametrize(("raw", "stream", "partial", "content"), [
    pytest.param(f"{T0} stdout F hello world".encode(), "stdout", False, b"hello world",
                 id="full"),
    pytest.param(f"{T0} stderr P part ".encode(), "stderr", True, b"part ", id="partial"),
    pytest.param(f"{T0} stdout F ".encode(), "stdout", False, b"", id="empty-line"),
    pytest.param(f"{T0} stdout F".encode(), "stdout", False, b"", id="empty-no-space"),
    pytest.param(f"{T0} stdout old format".encode(), "stdout", False, b"old format",
                 id="untagged"),
])
def test_parse_fragment(raw: bytes, stream: str, partial: bool, content: bytes) -> None:
    f = L.parse_fragment(raw)
    assert (f.stream, f.partial, f.content, f.ts_ns) == (stream, partial, content, T0_NS)


@pytest.mark.parametrize(("raw", "match"), [
    pytest.param(b"garbage", "want '<time>", id="short"),
    pytest.param(f"{T0} stdin F x".encode(), "stream: want stdout or stderr", id="stream"),
    pytest.param(b"noon stdout F x", "not RFC 3339", id="time"),
])
def test_parse_fragment_rejects(raw: bytes, match: str) -> None:
    with pytest.raises(L.LogFormatError, match=match):
        L.parse_fragment(raw)


def stamp(second: int) -> str:
    return f"2024-05-01T10:00:{second:02d}.000000000Z"


def frag(second: int, stream: str, tag: str, text: str) -> L.Fragment:
    return L.parse_fragment(f"{stamp(second)} {stream} {tag} {text}".encode())


def test_joiner_joins_partials_per_stream() -> None:
    j = L.Joiner()
    assert j.feed(frag(1, "stdout", "P", "long ")) is None
    assert j.feed(frag(2, "stderr", "P", "err ")) is None
    got = j.feed(frag(3, "stdout", "F", "line"))
    assert got is not None
    assert (got.content, got.stream, got.timestamp) == (b"long line", "stdout", stamp(1))
    rest = j.flush()
    assert [(x.stream, x.content) for x in rest] == [("stderr", b"err ")]
    assert j.flush() == []


def line(second: int, text: str) -> L.LogLine:
    return L.LogLine(stamp(second), L.parse_timestamp(stamp(second)), "stdout", text.encode())


LINES = [line(s, f"l{s}") for s in range(1, 6)]


@pytest.mark.parametrize(("since", "tail", "want"), [
    pytest.param(None, None, ["l1", "l2", "l3", "l4", "l5"], id="all"),
    pytest.param(None, 2, ["l4", "l5"], id="tail-2"),
    pytest.param(None, 0, [], id="tail-0"),
    pytest.param(None, 99, ["l1", "l2", "l3", "l4", "l5"], id="tail-more-than-there"),
    pytest.param(3, None, ["l3", "l4", "l5"], id="since"),
    pytest.param(2, 2, ["l4", "l5"], id="since-then-tail"),
    pytest.param(5, 3, ["l5"], id="tail-after-since-filter"),
])
def test_select(since: int | None, tail: int | None, want: list[str]) -> None:
    since_ns = L.parse_timestamp(stamp(since)) if since is not None else None
    got = L.select(LINES, since_ns=since_ns, tail=tail)
    assert [x.content.decode() for x in got] == want


def test_since_is_relative_to_now() -> None:
    assert L.LogOptions.since(10, now_ns=50 * 10**9) == 40 * 10**9
    assert L.LogOptions.since(None, now_ns=1) is None


@pytest.mark.parametrize(("timestamps", "want"), [
    pytest.param(False, b"l1\n", id="plain"),
    pytest.param(True, f"{stamp(1)} l1\n".encode(), id="timestamps"),
])
def test_format_line(timestamps: bool, want: bytes) -> None:
    assert L.format_line(LINES[0], timestamps=timestamps) == want


@pytest.mark.parametrize(("limit", "chunks", "want"), [
    pytest.param(None, [b"abc", b"def"], b"abcdef", id="no-limit"),
    pytest.param(4, [b"abc", b"def"], b"abcd", id="cut-mid-chunk"),
    pytest.param(3, [b"abc", b"def"], b"abc", id="exact"),
])
def test_limiter(limit: int | None, chunks: list[bytes], want: bytes) -> None:
    lim = L.Limiter(limit)
    assert b"".join(lim.take(c) for c in chunks) == want
    assert lim.done == (limit is not None)


def write(path: str, *lines: str) -> None:
    with open(path, "a") as f:
        for text in lines:
            f.write(text + "\n")


async def collect(path: str, options: L.LogOptions, alive: list[bool] | None = None,
                  ) -> bytes:
    async def is_alive() -> bool:
        return bool(alive and alive[0])

    chunks = [c async for c in L.stream_log(path, options, alive=is_alive, poll=0.01,
                                            alive_every=0.02)]
    return b"".join(chunks)


@pytest.mark.asyncio
async def test_stream_log_reads_file_with_options(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "0.log")
    write(path, f"{stamp(1)} stdout F one", f"{stamp(2)} stderr P two-",
          "not a cri line", f"{stamp(3)} stderr F halves", f"{stamp(4)} stdout F three")
    with open(path, "a") as f:
        f.write(f"{stamp(5)} stdout F unterminated")  # a writer's last, unfinished line
    assert await collect(path, L.LogOptions()) == b"one\ntwo-halves\nthree\nunterminated\n"
    assert await collect(path, L.LogOptions(tail_lines=1, timestamps=True)) == \
        f"{stamp(5)} unterminated\n".encode()
    assert await collect(path, L.LogOptions(limit_bytes=6)) == b"one\ntw"
    since = L.parse_timestamp(stamp(3))
    assert await collect(path, L.LogOptions(since_ns=since)) == b"three\nunterminated\n"
    assert await collect(os.path.join(str(tmp_path), "missing.log"), L.LogOptions()) == b""


@pytest.mark.asyncio
async def test_stream_log_follows_until_the_container_stops(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "0.log")
    write(path, f"{stamp(1)} stdout F old", f"{stamp(2)} stdout F before")
    alive = [True]
    got: list[bytes] = []

    async def is_alive() -> bool:
        return alive[0]

    async def follow() -> None:
        async for chunk in L.stream_log(path, L.LogOptions(follow=True, tail_lines=1),
                                        alive=is_alive, poll=0.01, alive_every=0.02):
            got.append(chunk)

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.1)
    assert b"".join(got) == b"before\n"
    write(path, f"{stamp(3)} stdout P new ")
    await asyncio.sleep(0.1)
    assert b"".join(got) == b"before\n", "a partial line waits for its end"
    write(path, f"{stamp(3)} stdout F line")
    await asyncio.sleep(0.1)
    assert b"".join(got) == b"before\nnew line\n"
    assert not task.done()
    write(path, f"{stamp(4)} stdout F last words")
    alive[0] = False
    await asyncio.wait_for(task, 2)
    assert b"".join(got) == b"before\nnew line\nlast words\n"


@pytest.mark.asyncio
async def test_stream_log_follow_stops_at_the_limit(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "0.log")
    write(path, f"{stamp(1)} stdout F 0123456789")
    out = await asyncio.wait_for(collect(path, L.LogOptions(follow=True, limit_bytes=5),
                                         alive=[True]), 2)
    assert out == b"01234"
