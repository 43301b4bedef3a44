"""The shim protocol's framing, exit records and CRI log lines, without a shim."""

from __future__ import annotations

import pytest

from runtime.service.shim import protocol as P


@pytest.mark.parametrize("chunks", [
    pytest.param(1, id="byte-by-byte"),
    pytest.param(7, id="odd-chunks"),
    pytest.param(10_000, id="all-at-once"),
])
def test_frames_roundtrip_in_any_chunking(chunks: int) -> None:
    msgs = [{"op": "state"}, {"op": "kill", "signal": 9, "all": True}, {"x": "é" * 300}]
    wire = b"".join(P.encode(m) for m in msgs)
    d = P.Decoder()
    got = []
    for i in range(0, len(wire), chunks):
        got += d.feed(wire[i:i + chunks])
    assert got == msgs and d.buf == b""


@pytest.mark.parametrize("wire,error", [
    pytest.param(b"abc\n{}", "bad frame header", id="not-a-length"),
    pytest.param(b"1234567890123", "bad frame header", id="no-newline"),
    pytest.param(b"%d\n" % (P.MAX_FRAME + 1), "exceeds", id="too-large"),
    pytest.param(b"3\n[1]", "not an object", id="not-an-object"),
    pytest.param(b"2\n{x", "not JSON", id="not-json"),
])
def test_bad_frames(wire: bytes, error: str) -> None:
    with pytest.raises(P.ProtocolError, match=error):
        P.Decoder().feed(wire)


def test_partial_frame_waits_for_more() -> None:
    d = P.Decoder()
    assert d.feed(b'14\n{"op":"st') == []
    assert d.feed(b'ate"}') == [{"op": "state"}]


@pytest.mark.parametrize("status,code", [
    pytest.param(0, 0, id="exit-0"),
    pytest.param(7 << 8, 7, id="exit-7"),
    pytest.param(9, 137, id="sigkill"),
    pytest.param(15, 143, id="sigterm"),
])
def test_wait_status_code(status: int, code: int) -> None:
    assert P.wait_status_code(status) == code


@pytest.mark.parametrize("status,oom,reason", [
    pytest.param(0, False, "Completed", id="completed"),
    pytest.param(1, False, "Error", id="error"),
    pytest.param(137, True, "OOMKilled", id="oom"),
])
def test_exit_record_reason(status: int, oom: bool, reason: str) -> None:
    rec = P.exit_record(pid=5, status=status, exited_at_ns=1, oom=oom)
    assert rec == {"pid": 5, "exit_code": status, "exited_at_ns": 1, "reason": reason}


def test_cri_timestamp_has_nine_digits_and_utc() -> None:
    assert P.cri_timestamp(1_800_000_000_000_000_001) == "2027-01-15T08:00:00.000000001Z"


T = P.cri_timestamp(0).encode()


@pytest.mark.parametrize("feeds,expected", [
    pytest.param([b"a\nb\n"], [b"F a", b"F b"], id="whole-lines"),
    pytest.param([b"ab", b"c\n"], [b"F abc"], id="line-over-two-reads"),
    pytest.param([b"0123456789"], [b"P 01234", b"F 56789"], id="long-line-cut-into-P"),
    pytest.param([b"0123456\n"], [b"P 01234", b"F 56"], id="long-line-ends-F"),
    pytest.param([b"tail"], [b"F tail"], id="rest-at-eof-is-F"),
    pytest.param([b"\n"], [b"F "], id="empty-line"),
])
def test_cri_log_lines(feeds: list[bytes], expected: list[bytes]) -> None:
    log = P.CriLog("stdout", max_line=5)
    out = b"".join(log.feed(f, 0) for f in feeds) + log.close(0)
    assert out == b"".join(T + b" stdout " + e + b"\n" for e in expected)


@pytest.mark.parametrize("obj", [
    pytest.param({}, id="empty"),
    pytest.param({"op": "run", "args": ["sh", "-c", "echo 'a b'"], "rm": True, "x": None},
                 id="request"),
    pytest.param({"s": "é\n\t\"\\\u2028 \x00"}, id="escapes-and-non-ascii"),
    pytest.param({"n": [0, -1, 2 ** 70, 1.5, -0.25, 1e300]}, id="numbers"),
    pytest.param({"deep": {"a": [[{"b": []}]]}}, id="nested"),
])
def test_codec_matches_json_module(obj: dict[str, object]) -> None:
    import json

    text = P.dumps(obj)
    assert text == json.dumps(obj, separators=(",", ":"))
    assert P.loads(text) == obj and P.loads(text.encode()) == obj


@pytest.mark.parametrize(("text", "error"), [
    pytest.param("", "Expecting value", id="empty"),
    pytest.param("{", "Expecting property name", id="truncated"),
    pytest.param("{} {}", "Extra data", id="two-documents"),
    pytest.param(b"\xff{}", "can't decode", id="not-utf8"),
    pytest.param("nul", "Expecting value", id="bad-literal"),
])
def test_codec_rejects(text: str | bytes, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        P.loads(text)


def test_codec_refuses_unencodable_values() -> None:
    with pytest.raises(TypeError, match="Object of type set is not JSON serializable"):
        P.dumps({"x": {1}})
    assert P.dumps({"x": 1}) == '{"x":1}'  # no state left behind by the failure
