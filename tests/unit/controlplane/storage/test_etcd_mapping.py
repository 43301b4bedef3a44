"""The pure parts of EtcdStore: endpoint targets, error mapping, event conversion."""

from __future__ import annotations

import grpc
import pytest
from pyetcd import etcdrpc as rpc
from pyetcd.etcdrpc import kv_pb2

from controlplane.storage import (
    EventType,
    Fence,
    Gone,
    InvalidArgument,
    StorageError,
    TooLarge,
    Unavailable,
    Write,
)
from controlplane.storage.etcd import (
    event_from_proto,
    grpc_target,
    translate_error,
    txn_request,
)


@pytest.mark.parametrize(("endpoints", "want"), [
    pytest.param(["http://127.0.0.1:2379"], "127.0.0.1:2379", id="one-url"),
    pytest.param(["etcd:2379"], "etcd:2379", id="one-hostname"),
    pytest.param(["http://10.0.0.1:2379", "10.0.0.2:2379/"], "ipv4:10.0.0.1:2379,10.0.0.2:2379",
                 id="several-ips"),
])
def test_grpc_target(endpoints: list[str], want: str) -> None:
    assert grpc_target(endpoints) == want


@pytest.mark.parametrize("endpoints", [
    pytest.param([], id="none"),
    pytest.param(["https://127.0.0.1:2379"], id="tls-not-yet"),
    pytest.param(["a:2379", "b:2379"], id="several-hostnames"),
])
def test_grpc_target_rejects(endpoints: list[str]) -> None:
    with pytest.raises(InvalidArgument):
        grpc_target(endpoints)


@pytest.mark.parametrize(("code", "details", "want"), [
    pytest.param(grpc.StatusCode.UNAVAILABLE, "connection refused", Unavailable, id="unavailable"),
    pytest.param(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline", Unavailable, id="deadline"),
    pytest.param(grpc.StatusCode.OUT_OF_RANGE,
                 "etcdserver: mvcc: required revision has been compacted", Gone, id="compacted"),
    pytest.param(grpc.StatusCode.OUT_OF_RANGE,
                 "etcdserver: mvcc: required revision is a future revision", InvalidArgument,
                 id="future"),
    pytest.param(grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: request is too large", TooLarge,
                 id="too-large"),
    pytest.param(grpc.StatusCode.INTERNAL, "boom", StorageError, id="other"),
])
def test_translate_error(code: grpc.StatusCode, details: str, want: type[StorageError]) -> None:
    err = translate_error(code, details, key="/registry/pods/a", revision=7,
                          endpoint="127.0.0.1:2379")
    assert type(err) is want
    if want is Unavailable:
        assert "127.0.0.1:2379" in str(err) and "retry" in str(err)
    if want is Gone:
        assert str(err) == "too old resource version: 7"


KV = kv_pb2.KeyValue


@pytest.mark.parametrize(("event", "want"), [
    pytest.param(kv_pb2.Event(type=kv_pb2.Event.PUT,
                              kv=KV(key=b"/k", value=b"v1", create_revision=5, mod_revision=5)),
                 (EventType.ADDED, b"v1", 5, None), id="added"),
    pytest.param(kv_pb2.Event(type=kv_pb2.Event.PUT,
                              kv=KV(key=b"/k", value=b"v2", create_revision=5, mod_revision=6),
                              prev_kv=KV(key=b"/k", value=b"v1")),
                 (EventType.MODIFIED, b"v2", 6, b"v1"), id="modified"),
    pytest.param(kv_pb2.Event(type=kv_pb2.Event.DELETE, kv=KV(key=b"/k", mod_revision=7),
                              prev_kv=KV(key=b"/k", value=b"v2")),
                 (EventType.DELETED, b"v2", 7, b"v2"), id="deleted-carries-last-value"),
])
def test_event_from_proto(event: object, want: tuple[object, ...]) -> None:
    ev = event_from_proto(event)
    assert ev.key == "/k"
    assert (ev.type, ev.value, ev.revision, ev.prev_value) == want


def _compare(key: bytes, expected: int | None) -> rpc.Compare:
    if expected is None:
        return rpc.Compare(result=rpc.Compare.GREATER, target=rpc.Compare.CREATE, key=key,
                           create_revision=0)
    if expected == 0:
        return rpc.Compare(result=rpc.Compare.EQUAL, target=rpc.Compare.CREATE, key=key,
                           create_revision=0)
    return rpc.Compare(result=rpc.Compare.EQUAL, target=rpc.Compare.MOD, key=key,
                       mod_revision=expected)


def _read(key: bytes) -> rpc.RequestOp:
    return rpc.RequestOp(request_range=rpc.RangeRequest(key=key, keys_only=True))


@pytest.mark.parametrize(("write", "op"), [
    pytest.param(Write("/a", b"v"), rpc.RequestOp(request_put=rpc.PutRequest(
        key=b"/a", value=b"v")), id="create"),
    pytest.param(Write("/a", b"v", 7), rpc.RequestOp(request_put=rpc.PutRequest(
        key=b"/a", value=b"v")), id="compare-and-swap"),
    pytest.param(Write("/a", b"v", None), rpc.RequestOp(request_put=rpc.PutRequest(
        key=b"/a", value=b"v")), id="must-exist"),
    pytest.param(Write("/a", b"", 7), rpc.RequestOp(request_put=rpc.PutRequest(
        key=b"/a", value=b"")), id="empty-value"),
    pytest.param(Write("/a", b"v", 0, lease=42), rpc.RequestOp(request_put=rpc.PutRequest(
        key=b"/a", value=b"v", lease=42)), id="with-lease"),
    pytest.param(Write("/a", None, 7), rpc.RequestOp(
        request_delete_range=rpc.DeleteRangeRequest(key=b"/a")), id="delete"),
])
def test_txn_request_one_write(write: Write, op: rpc.RequestOp) -> None:
    want = rpc.TxnRequest(compare=[_compare(b"/a", write.expected_revision)], success=[op],
                          failure=[_read(b"/a")])
    assert txn_request([write]) == want


def test_txn_request_many_writes_and_a_fence_in_order() -> None:
    writes = [Write(f"/k{i}", f"v{i}".encode(), i) for i in range(5)]
    fence = Fence("/leader", 99)
    got = txn_request(writes, fence)
    assert list(got.compare) == [*(_compare(f"/k{i}".encode(), i) for i in range(5)),
                                 rpc.Compare(result=rpc.Compare.EQUAL,
                                             target=rpc.Compare.CREATE, key=b"/leader",
                                             create_revision=99)]
    assert [op.request_put.value for op in got.success] == [f"v{i}".encode() for i in range(5)]
    assert list(got.failure) == [*(_read(f"/k{i}".encode()) for i in range(5)),
                                 _read(b"/leader")]
