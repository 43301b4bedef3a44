"""The channel protocol (cri/stream.py) and the server's pure parts (streaming.py): frames,
Status JSON, resize, port prefixes, tokens, CRI log lines, addresses, config keys."""

from __future__ import annotations

import json
import os

import pytest

from runtime.service import streaming as S
from runtime.service.config import ConfigError, parse
from runtime.service.cri import stream as W


@pytest.mark.parametrize(("channel", "payload", "frame"), [
    pytest.param(W.STDIN, b"hi", b"\x00hi", id="stdin"),
    pytest.param(W.STDOUT, b"", b"\x01", id="empty-stdout"),
    pytest.param(W.ERROR, b"{}", b"\x03{}", id="error"),
    pytest.param(W.CLOSE, b"\x00", b"\xff\x00", id="v5-close-stdin"),
])
def test_frames_round_trip(channel: int, payload: bytes, frame: bytes) -> None:
    assert W.encode(channel, payload) == frame
    assert W.decode(frame) == (channel, payload)


@pytest.mark.parametrize(("frame", "message"), [
    pytest.param(b"", "empty", id="empty"),
    pytest.param("\x01text", "text frame", id="text"),
])
def test_bad_frames(frame: bytes | str, message: str) -> None:
    with pytest.raises(W.StreamError, match=message):
        W.decode(frame)


def test_channel_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"channel: must be 0\.\.255, got 256"):
        W.encode(256, b"")


@pytest.mark.parametrize(("status", "want"), [
    pytest.param(W.status_success(), (0, ""), id="success"),
    pytest.param(W.status_exit(0, ["true"]), (0, ""), id="exit-0-is-success"),
    pytest.param(W.status_exit(3, ["sh"]), (3, "command terminated with non-zero exit code: "
                                           "error executing command ['sh'], exit code 3"),
                 id="exit-3"),
    pytest.param(b'{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":'
                 b'[{"reason":"ExitCode","message":"137"}]}}', (137, "NonZeroExitCode"),
                 id="kubernetes-minimal"),
    pytest.param(W.status_failure("Container x: gone"), (-1, "Container x: gone"),
                 id="internal-error"),
    pytest.param(b'{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":'
                 b'[{"reason":"ExitCode","message":"x"}]}}', (-1, "NonZeroExitCode"),
                 id="exit-code-not-a-number"),
    pytest.param(b"not json", (-1, "status: not JSON: b'not json'"), id="not-json"),
    pytest.param(b"[1]", (-1, "status: not an object: b'[1]'"), id="not-object"),
])
def test_exit_code(status: bytes, want: tuple[int, str]) -> None:
    assert W.exit_code(status) == want


def test_status_exit_is_kubernetes_shape() -> None:
    st = json.loads(W.status_exit(2, ["ls", "/x"]))
    assert (st["status"], st["reason"]) == ("Failure", "NonZeroExitCode")
    assert st["details"]["causes"] == [{"reason": "ExitCode", "message": "2"}]


@pytest.mark.parametrize(("payload", "want"), [
    pytest.param(b'{"Width":100,"Height":40}', (100, 40), id="ok"),
    pytest.param(W.resize_payload(80, 24), (80, 24), id="round-trip"),
])
def test_resize(payload: bytes, want: tuple[int, int]) -> None:
    assert W.parse_resize(payload) == want


@pytest.mark.parametrize(("payload", "message"), [
    pytest.param(b'{"Width":1}', "expected", id="missing-height"),
    pytest.param(b"nope", "expected", id="not-json"),
    pytest.param(b'{"Width":70000,"Height":1}', "out of range", id="too-wide"),
])
def test_bad_resize(payload: bytes, message: str) -> None:
    with pytest.raises(W.StreamError, match=message):
        W.parse_resize(payload)


def test_resize_payload_range() -> None:
    with pytest.raises(ValueError, match=r"resize: Height: must be 0\.\.65535, got -1"):
        W.resize_payload(1, -1)


@pytest.mark.parametrize("port", [pytest.param(p, id=str(p)) for p in (1, 80, 8080, 65535)])
def test_port_prefix(port: int) -> None:
    assert W.parse_port(W.port_prefix(port) + b"rest") == port
    assert W.port_prefix(port) == port.to_bytes(2, "little")


def test_port_prefix_too_short() -> None:
    with pytest.raises(W.StreamError, match="too short"):
        W.parse_port(b"\x01")


@pytest.mark.parametrize(("url", "want"), [
    pytest.param("http://127.0.0.1:1/exec/t", "ws://127.0.0.1:1/exec/t", id="http"),
    pytest.param("https://h/exec/t", "wss://h/exec/t", id="https"),
    pytest.param("ws://h/x", "ws://h/x", id="ws"),
])
def test_ws_url(url: str, want: str) -> None:
    assert W.ws_url(url) == want


def test_ws_url_rejects_other_schemes() -> None:
    with pytest.raises(W.StreamError, match="url 'ftp://h': expected"):
        W.ws_url("ftp://h")


# ---- server side, pure --------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


SPEC = S.PortForwardSpec(what="Sandbox x", netns="", ports=(80,))


def test_tokens_single_use() -> None:
    cache = S.TokenCache(ttl=5, clock=Clock())
    tok = cache.insert(SPEC)
    assert cache.consume(tok) is SPEC
    assert cache.consume(tok) is None
    assert cache.consume("never-issued") is None


def test_tokens_expire() -> None:
    clock = Clock()
    cache = S.TokenCache(ttl=5, clock=clock)
    early, late = cache.insert(SPEC), cache.insert(SPEC)
    clock.now += 4.9
    assert cache.consume(early) is SPEC
    clock.now += 0.2
    assert cache.consume(late) is None


def test_tokens_bounded_and_expired_ones_make_room() -> None:
    clock = Clock()
    cache = S.TokenCache(ttl=5, clock=clock, limit=2)
    cache.insert(SPEC)
    cache.insert(SPEC)
    with pytest.raises(OverflowError, match="2 sessions wait"):
        cache.insert(SPEC)
    clock.now += 6
    assert cache.consume(cache.insert(SPEC)) is SPEC


def test_tokens_are_distinct() -> None:
    cache = S.TokenCache()
    assert len({cache.insert(SPEC) for _ in range(200)}) == 200


@pytest.mark.parametrize(("line", "want"), [
    pytest.param(b"2024-01-01T00:00:00.1Z stdout F hello\n", ("stdout", b"hello\n"), id="full"),
    pytest.param(b"2024-01-01T00:00:00.1Z stderr P part", ("stderr", b"part"), id="partial"),
    pytest.param(b"2024-01-01T00:00:00.1Z stdout F a b  c\n", ("stdout", b"a b  c\n"),
                 id="spaces-kept"),
    pytest.param(b"2024-01-01T00:00:00.1Z stdout F\n", ("stdout", b"\n"), id="empty-line"),
    pytest.param(b"2024 stdin F x\n", None, id="bad-stream"),
    pytest.param(b"2024 stdout X x\n", None, id="bad-tag"),
    pytest.param(b"garbage\n", None, id="garbage"),
])
def test_parse_log_line(line: bytes, want: tuple[str, bytes] | None) -> None:
    assert S.parse_log_line(line) == want


def test_log_follower_starts_at_the_end_and_follows_rotation(tmp_path: object) -> None:
    path = f"{tmp_path}/c.log"
    with open(path, "wb") as f:
        f.write(b"old line\n")
    follower = S.LogFollower(path)
    try:
        assert follower.lines() == []
        with open(path, "ab") as f:
            f.write(b"one\ntw")
        assert follower.lines() == [b"one\n"]
        with open(path, "ab") as f:
            f.write(b"o\n")
        assert follower.lines() == [b"two\n"]
        os.rename(path, path + ".1")
        with open(path, "wb") as f:
            f.write(b"three\n")
        assert follower.lines() == [b"three\n"]
    finally:
        follower.close()


@pytest.mark.parametrize(("address", "want"), [
    pytest.param("127.0.0.1:0", ("127.0.0.1", 0), id="ephemeral"),
    pytest.param("localhost:10010", ("127.0.0.1", 10010), id="localhost"),
])
def test_parse_address(address: str, want: tuple[str, int]) -> None:
    assert S.parse_address(address) == want


@pytest.mark.parametrize(("address", "message"), [
    pytest.param("0.0.0.0:1", "must be on 127.0.0.1", id="all-interfaces"),
    pytest.param("127.0.0.1", "expected HOST:PORT", id="no-port"),
    pytest.param("127.0.0.1:99999", "expected HOST:PORT", id="port-too-big"),
])
def test_bad_address(address: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"stream_address: {message}"):
        S.parse_address(address)


@pytest.mark.parametrize(("data", "field", "message"), [
    pytest.param({"stream_address": "10.0.0.1:1"}, "stream_address", "must be on 127.0.0.1",
                 id="address-not-loopback"),
    pytest.param({"stream_address": 5}, "stream_address", "must be a string",
                 id="address-not-string"),
    pytest.param({"stream_token_ttl": 0}, "stream_token_ttl", r"in \(0, 3600\]", id="ttl-zero"),
    pytest.param({"stream_token_ttl": "1"}, "stream_token_ttl", "number of seconds",
                 id="ttl-string"),
])
def test_config_errors(data: dict[str, object], field: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^/c.toml: {field}: .*{message}"):
        parse(data, source="/c.toml")


def test_config_defaults_and_values() -> None:
    default = parse({}, source="/c.toml")
    assert (default.stream_address, default.stream_token_ttl) == ("127.0.0.1:0", 60.0)
    cfg = parse({"stream_address": "127.0.0.1:10010", "stream_token_ttl": 5}, source="x")
    assert (cfg.stream_address, cfg.stream_token_ttl) == ("127.0.0.1:10010", 5.0)
