"""api.nodeclient (logs, exec, stats through the controlplane's NodeProxy) against a fake
stub, and api.client's reply decoding."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import grpc  # type: ignore[import-untyped]
import pytest

from api import client as api_client
from api import nodeclient as nc
from api.errors import APIError, Reason
from api.v1 import apiserver_pb2 as pb
from api.v1 import node_pb2 as node_pb


class FakeRpcError(grpc.RpcError):  # type: ignore[misc]
    def __init__(self, code: Any, details: str = "") -> None:
        super().__init__(details)
        self._code, self._details = code, details

    def code(self) -> Any:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[()]:
        return ()


class FakeStream:
    """A server stream: yields ITEMS, then raises FAIL (if any); records cancel()."""

    def __init__(self, items: list[Any], fail: Exception | None = None) -> None:
        self.items, self.fail, self.cancelled = items, fail, False

    def __iter__(self) -> Iterator[Any]:
        yield from self.items
        if self.fail is not None:
            raise self.fail

    def cancel(self) -> None:
        self.cancelled = True


class FakeStub:
    def __init__(self, *, stream: FakeStream | None = None, stats: Any = None,
                 fail: Exception | None = None) -> None:
        self.stream = stream or FakeStream([])
        self.stats, self.fail = stats, fail
        self.requests: list[Any] = []
        self.metadata: Any = None

    def PodLogs(self, req: Any, *, metadata: Any) -> FakeStream:
        self.requests.append(req)
        self.metadata = metadata
        return self.stream

    def PodExec(self, requests: Iterator[Any], *, metadata: Any) -> FakeStream:
        self.requests.append(requests)
        return self.stream

    def NodeStats(self, req: Any, *, timeout: float, metadata: Any) -> Any:
        self.requests.append((req, timeout))
        if self.fail is not None:
            raise self.fail
        return self.stats


def proxy(stub: FakeStub) -> nc.NodeProxy:
    return nc.NodeProxy(stub=stub, metadata=(("authorization", "Bearer t"),),
                        server="127.0.0.1:1", timeout=7.0, error=api_client.error_from_rpc)


@pytest.mark.parametrize("options, want", [
    pytest.param({"container": "c"},
                 {"follow": False, "previous": False, "timestamps": False, "set": set()},
                 id="defaults-leave-optional-fields-unset"),
    pytest.param({"container": "c", "tail_lines": 0, "limit_bytes": None},
                 {"set": {"tail_lines"}}, id="zero-is-set-none-is-not"),
    pytest.param({"container": "c", "follow": True, "since_seconds": 30, "limit_bytes": 10,
                  "tail_lines": 5},
                 {"follow": True, "set": {"since_seconds", "limit_bytes", "tail_lines"}},
                 id="all-given"),
])
def test_logs_request_sets_only_the_given_options(options: nc.LogOptions,
                                                  want: dict[str, Any]) -> None:
    req = nc.logs_request("web", namespace="ns", **options)
    assert (req.ref.namespace, req.ref.pod, req.ref.container) == ("ns", "web", "c")
    got = {f for f in ("tail_lines", "since_seconds", "limit_bytes") if req.HasField(f)}
    assert got == want.pop("set")
    for fld, value in want.items():
        assert getattr(req, fld) == value
    for fld in got:
        assert getattr(req, fld) == options[fld]  # type: ignore[literal-required]


def test_pod_logs_yields_chunks_and_cancels_the_stream() -> None:
    stub = FakeStub(stream=FakeStream([node_pb.LogChunk(data=b"a"),
                                       node_pb.LogChunk(data=b"b")]))
    assert list(proxy(stub).pod_logs("web", namespace="ns", follow=True)) == [b"a", b"b"]
    assert stub.requests[0].follow and stub.stream.cancelled
    assert stub.metadata == (("authorization", "Bearer t"),)


def test_pod_logs_closed_early_cancels_the_stream() -> None:
    stub = FakeStub(stream=FakeStream([node_pb.LogChunk(data=b"a")] * 3))
    logs = proxy(stub).pod_logs("web", namespace="ns")
    assert next(logs) == b"a"
    logs.close()
    assert stub.stream.cancelled


def test_pod_logs_error_becomes_the_api_error() -> None:
    stub = FakeStub(stream=FakeStream([], FakeRpcError(grpc.StatusCode.NOT_FOUND,
                                                       "pods web: not found")))
    with pytest.raises(APIError) as err:
        list(proxy(stub).pod_logs("web", namespace="ns"))
    assert err.value.reason == Reason.NOT_FOUND and "pods web" in str(err.value)


def test_node_stats_passes_the_timeout_and_maps_unavailable() -> None:
    stub = FakeStub(stats="answer")
    assert proxy(stub).node_stats("n1", pod="web") == "answer"
    req, timeout = stub.requests[0]
    assert req == pb.NodeStatsRequest(node="n1", pod="web") and timeout == 7.0
    down = FakeStub(fail=FakeRpcError(grpc.StatusCode.UNAVAILABLE, "refused"))
    with pytest.raises(APIError, match=r"cannot reach the controlplane at 127\.0\.0\.1:1"):
        proxy(down).node_stats("n1")


def out(**kw: Any) -> Any:
    return node_pb.ExecOutput(**kw)


def test_exec_session_sends_start_then_inputs_and_yields_events() -> None:
    stub = FakeStub(stream=FakeStream([
        out(stdout=b"hi"), out(stderr=b"oops"),
        out(exit=node_pb.ExecExit(exit_code=3, message="exited"))]))
    session = proxy(stub).pod_exec("web", ["cat"], namespace="ns", stdin=True, tty=True)
    session.send_stdin(b"x")
    session.send_stdin(b"")  # nothing to send: not queued
    session.resize(80, 24)
    session.close_stdin()
    events = list(session)
    assert events == [nc.ExecEvent("stdout", b"hi"), nc.ExecEvent("stderr", b"oops"),
                      nc.ExecEvent("exit", exit_code=3, message="exited")]
    assert (session.exit_code, session.message) == (3, "exited") and stub.stream.cancelled
    sent = list(stub.requests[0])  # ends: iteration's end queued the close marker
    assert sent[0].start.command == ["cat"] and sent[0].start.stdin and sent[0].start.tty
    assert [m.WhichOneof("input") for m in sent[1:]] == ["stdin", "resize", "stdin_close"]


@pytest.mark.parametrize("code, raises", [
    pytest.param(grpc.StatusCode.CANCELLED, False, id="cancelled-ends-quietly"),
    pytest.param(grpc.StatusCode.PERMISSION_DENIED, True, id="denied-raises"),
])
def test_exec_session_errors(code: Any, raises: bool) -> None:
    stub = FakeStub(stream=FakeStream([out(stdout=b"a")], FakeRpcError(code, "no")))
    session = proxy(stub).pod_exec("web", ["sh"], namespace="ns")
    if raises:
        with pytest.raises(APIError):
            list(session)
    else:
        assert list(session) == [nc.ExecEvent("stdout", b"a")]
    assert session.exit_code is None and stub.stream.cancelled


def test_exec_pump_sends_the_fd_then_closes_stdin(tmp_path: Any) -> None:
    stub = FakeStub()
    session = proxy(stub).pod_exec("web", ["cat"], namespace="ns", stdin=True)
    path = tmp_path / "in"
    path.write_bytes(b"abcdef")
    with open(path, "rb") as f:
        thread = session.pump(f.fileno(), chunk=4)
        thread.join(5)
    assert not thread.is_alive() and isinstance(thread, threading.Thread)
    session.cancel()
    sent = list(stub.requests[0])
    assert [m.stdin for m in sent[1:3]] == [b"abcd", b"ef"] and sent[3].stdin_close


def test_client_reexports_the_exec_types() -> None:
    assert api_client.ExecEvent is nc.ExecEvent and api_client.ExecSession is nc.ExecSession


@pytest.mark.parametrize("raw", [
    pytest.param(b'{"n":18446744073709551616}', id="over-64-bits-stays-exact"),
    pytest.param(b'{"n":-9223372036854775808,"m":1.5}', id="int64-min"),
    pytest.param(b'{"s":"\\u00e9","l":[1,null,true]}', id="small"),
    pytest.param(b'{"x":NaN}', id="nan-orjson-refuses"),
])
def test_loads_answers_as_the_standard_library(raw: bytes) -> None:
    assert api_client._loads(raw) == json.loads(raw)


class OrderStream(FakeStream):
    """Records, when cancel() comes, whether the request iterator had already ended (a
    returned iterator is grpc's half-close, which must not reach the server first)."""

    def __init__(self, session_box: list[nc.ExecSession]) -> None:
        super().__init__([])
        self.box = session_box
        self.closed_before_cancel: bool | None = None

    def cancel(self) -> None:
        if self.closed_before_cancel is None:
            queued = list(self.box[0]._inputs.queue)
            self.closed_before_cancel = any(item is nc._CLOSE for item in queued)
        super().cancel()


def test_exec_cancel_cancels_the_call_before_the_requests_end() -> None:
    box: list[nc.ExecSession] = []
    stream = OrderStream(box)
    session = proxy(FakeStub(stream=stream)).pod_exec("web", ["cat"], namespace="ns",
                                                      stdin=True)
    box.append(session)
    session.send_stdin(b"x")
    session.cancel()
    assert stream.cancelled and stream.closed_before_cancel is False
    stub_requests = list(session._requests())  # the request thread's iterator now ends
    assert [m.WhichOneof("input") for m in stub_requests] == ["start", "stdin"]
