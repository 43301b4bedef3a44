"""The pure parts of EtcdStore: endpoint targets, error mapping, event conversion."""

from __future__ import annotations

import grpc
import pytest
from pyetcd.etcdrpc import kv_pb2

from controlplane.storage import (
    EventType,
    Gone,
    InvalidArgument,
    StorageError,
    TooLarge,
    Unavailable,
)
from controlplane.storage.etcd import event_from_proto, grpc_target, translate_error


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
