"""EtcdStore: the Store over etcd's v3 API, asyncio all the way (grpc.aio + etcd's stubs).

::

    create  ──► Txn(if create_revision(key) == 0: put)           else AlreadyExists
    update  ──► Txn(if mod_revision(key) == rev: put, else: get) else Conflict / NotFound
                (concurrent creates and updates share one Txn: WriteBatcher)
    delete  ──► DeleteRange, or Txn(if mod_revision == rev: delete, else: get)
    commit  ──► Txn(every write's compare [+ the fence's create revision]: every op,
                    else: range every key) else Fenced / TxnFailed naming each key
    leases  ──► LeaseGrant / LeaseKeepAlive (one round trip on a stream) / LeaseRevoke
    list    ──► Range(prefix .. prefix+1, limit, revision = first page's revision)
    watch   ──► Watch stream (prev_kv, progress requests on a timer -> BOOKMARK)

Every unary call carries a deadline (2 s by default), so a dead etcd turns into
Unavailable quickly instead of a hung request; the channel reconnects by itself with a
short backoff, so the store recovers as soon as etcd is back, without being recreated.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

# grpcio ships no type information (types-grpcio is not a dev dependency yet), and the
# generated etcd stubs have no py.typed: gRPC objects and etcd messages are Any here.
import grpc  # type: ignore[import-untyped]
from grpc import aio
from pyetcd import etcdrpc as rpc  # type: ignore[import-untyped]
from pyetcd.etcdrpc import kv_pb2  # type: ignore[import-untyped]

from controlplane.storage import keys, pagination
from controlplane.storage.errors import (
    AlreadyExists,
    Conflict,
    Fenced,
    Gone,
    InvalidArgument,
    NotFound,
    StorageError,
    TooLarge,
    TxnFailed,
    Unavailable,
)
from controlplane.storage.interface import Event, EventType, Fence, Item, ListResult, Write

_CHANNEL_OPTIONS = [
    # Reconnect within ~1 s of etcd coming back instead of gRPC's default 120 s backoff cap.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # Notice a silently dead peer on long-lived watches; etcd allows pings every 5 s.
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    # Responses (a large list page) may exceed gRPC's 4 MiB default.
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
    # With several endpoints, spread calls and skip a dead member instead of pinning one.
    ("grpc.lb_policy_name", "round_robin"),
]


def grpc_target(endpoints: Sequence[str]) -> str:
    """A gRPC target for etcd client URLs ('http://127.0.0.1:2379' or 'host:port').

    Several endpoints become one 'ipv4:' target that gRPC balances and fails over across.
    """
    hosts = [e.removeprefix("http://").rstrip("/") for e in endpoints]
    if not hosts or any("://" in h for h in hosts):
        raise InvalidArgument(f"etcd endpoints {list(endpoints)}: want http://HOST:PORT URLs")
    if len(hosts) == 1:
        return hosts[0]
    for host in hosts:
        try:
            ipaddress.IPv4Address(host.rpartition(":")[0])
        except ValueError:
            raise InvalidArgument(
                f"etcd endpoint {host}: several endpoints must be IPv4 addresses") from None
    return "ipv4:" + ",".join(hosts)


def translate_error(code: grpc.StatusCode, details: str, *, key: str, revision: int,
                    endpoint: str) -> StorageError:
    """Map one failed etcd call to the storage taxonomy (the only place that knows gRPC)."""
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return Unavailable(f"{endpoint}: {code.name}: {details}")
    if "required revision has been compacted" in details:
        return Gone(revision)
    if "required revision is a future revision" in details:
        return InvalidArgument(f"revision {revision} is newer than etcd's current revision")
    if "request is too large" in details:
        return TooLarge(key, size=-1, limit=keys.MAX_OBJECT_BYTES)
    return StorageError(f"{key or endpoint}: etcd: {code.name}: {details}")


def event_from_proto(ev: Any) -> Event:
    """An etcd mvccpb.Event (with prev_kv) as a storage Event."""
    kv = ev.kv
    key = bytes(kv.key).decode()
    prev = bytes(ev.prev_kv.value) if ev.HasField("prev_kv") else None
    if ev.type == kv_pb2.Event.DELETE:
        return Event(EventType.DELETED, key, prev or b"", int(kv.mod_revision), prev)
    if kv.create_revision == kv.mod_revision:
        return Event(EventType.ADDED, key, bytes(kv.value), int(kv.mod_revision))
    return Event(EventType.MODIFIED, key, bytes(kv.value), int(kv.mod_revision), prev)


_EQUAL, _GREATER = rpc.Compare.EQUAL, rpc.Compare.GREATER
_CREATE, _MOD = rpc.Compare.CREATE, rpc.Compare.MOD


def _add_compare(request: Any, key: bytes, expected_revision: int | None) -> None:
    """Append Write.expected_revision as an etcd compare to REQUEST (a TxnRequest): 0
    absent, n at mod n, None present. Built in place: a message made apart and then
    added is copied, which costs as much again."""
    if expected_revision is None:
        request.compare.add(result=_GREATER, target=_CREATE, key=key, create_revision=0)
    elif expected_revision == 0:
        request.compare.add(result=_EQUAL, target=_CREATE, key=key, create_revision=0)
    else:
        request.compare.add(result=_EQUAL, target=_MOD, key=key, mod_revision=expected_revision)


def _add_write(request: Any, key: bytes, value: bytes | None, lease: int = 0) -> None:
    """Append to REQUEST the op writing KEY (put VALUE, or delete when None) on success,
    and the read of KEY (keys only: its revisions) that tells why, on failure."""
    if value is None:
        request.success.add().request_delete_range.key = key
    else:
        put = request.success.add().request_put
        put.key, put.value = key, value
        if lease:
            put.lease = lease
    read = request.failure.add().request_range
    read.key, read.keys_only = key, True


def txn_request(writes: Sequence[Write], fence: Fence | None = None) -> Any:
    """commit's Txn: if every write's compare holds (and the fence key still has the
    fence's create revision), every op; else a read of every key, the fence's last."""
    request = rpc.TxnRequest()
    for w in writes:
        k = w.key.encode()
        _add_compare(request, k, w.expected_revision)
        _add_write(request, k, w.value, w.lease)
    if fence is not None:
        f = fence.key.encode()
        request.compare.add(result=_EQUAL, target=_CREATE, key=f,
                            create_revision=fence.revision)
        read = request.failure.add().request_range
        read.key, read.keys_only = f, True
    return request


# A WriteBatcher sends at most BATCH_WRITES writes of at most BATCH_BYTES in one Txn. A
# lone write goes out at once; writes that arrive while a Txn is out wait for it to come
# back and then share the next one (group commit), unless a full batch is waiting: then
# up to BATCH_IN_FLIGHT Txns go out side by side. One Txn at a time while the queue is
# short makes the batches bigger, and every Txn saved is CPU saved in this process and in
# etcd (bench/api_write.py on 2 loaded cores, against 4 Txns always allowed out: at 100
# clients 12 writes per Txn instead of 4-5, ~9% less CPU per write here and ~20% less in
# etcd; at 10 clients ~4 instead of 1.5, ~25% and ~40% less).
BATCH_WRITES = 64
BATCH_BYTES = keys.MAX_REQUEST_BYTES // 2
BATCH_IN_FLIGHT = 4


class _Retry:
    """A write that did not fail itself but shared a Txn with one that did."""


RETRY = _Retry()


@dataclass(slots=True)
class PendingWrite:
    key: str
    value: bytes
    expected_revision: int  # 0: create (the key must not exist)
    future: asyncio.Future[int]

    @property
    def size(self) -> int:
        return 3 * len(self.key) + len(self.value) + 64


# what a Sender reports for each write of a batch: its revision, its own error, or RETRY
Outcome = int | StorageError | _Retry
Sender = Callable[[Sequence[PendingWrite]], Awaitable[list[Outcome]]]


class WriteBatcher:
    """Group commit: concurrent single-key writes share one etcd Txn.

    One Txn per request costs a gRPC call in this process and a raft entry in etcd; under
    load most of a write's cost. The Txn is all or nothing, so a batch that fails writes
    nothing: the writes that failed get their error, the others go out again (a key is
    never twice in one batch, as etcd requires)."""

    def __init__(self, send: Sender) -> None:
        self._send = send
        self._queue: collections.deque[PendingWrite] = collections.deque()
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def write(self, key: str, value: bytes, expected_revision: int) -> int:
        w = PendingWrite(key, value, expected_revision,
                         asyncio.get_running_loop().create_future())
        self._queue.append(w)
        self._pump()
        return await w.future

    def _may_send(self) -> bool:
        """Whether a Txn may go out now: none is out, or a full batch waits for a slot."""
        if not self._queue:
            return False
        return self._in_flight == 0 or (self._in_flight < BATCH_IN_FLIGHT
                                        and len(self._queue) >= BATCH_WRITES)

    def _pump(self) -> None:
        while self._may_send():
            batch: list[PendingWrite] = []
            later: list[PendingWrite] = []
            seen: set[str] = set()
            size = 0
            while self._queue and len(batch) < BATCH_WRITES:
                w = self._queue.popleft()
                if w.future.done():  # the caller gave up (cancelled) before it went out
                    continue
                if w.key in seen:  # etcd refuses a key twice in one Txn: the next one
                    later.append(w)
                    continue
                if batch and size + w.size > BATCH_BYTES:
                    later.append(w)
                    break
                batch.append(w)
                seen.add(w.key)
                size += w.size
            self._queue.extendleft(reversed(later))
            if not batch:
                return
            self._in_flight += 1
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[PendingWrite]) -> None:
        try:
            outcomes = await self._send(batch)
        except Exception as err:  # the whole Txn failed (etcd unavailable...): every write
            for w in batch:
                if not w.future.done():
                    w.future.set_exception(err)
            self._in_flight -= 1
            self._pump()
            return
        except BaseException:
            for w in batch:
                w.future.cancel()
            self._in_flight -= 1
            raise
        self._in_flight -= 1
        again: list[PendingWrite] = []
        for w, out in zip(batch, outcomes, strict=True):
            if w.future.done():
                continue
            if isinstance(out, _Retry):
                again.append(w)
            elif isinstance(out, StorageError):
                w.future.set_exception(out)
            else:
                w.future.set_result(out)
        if again and len(again) == len(batch):
            # the Txn failed yet its reads (atomic with the compares) show no culprit:
            # cannot happen with etcd; fail rather than retry forever, as commit() does
            lost = Unavailable("etcd: a batched write failed with no cause; retry")
            for w in again:
                w.future.set_exception(lost)
            again = []
        self._queue.extendleft(reversed(again))
        self._pump()


class BatchedWrites:
    """A Store's create and update as group-committed writes: each goes through the
    store's WriteBatcher (``_batcher``), whose Sender makes the Txn (EtcdStore's plain,
    the leader's TermStore fenced). The size check comes first, so a write too large
    fails alone instead of failing the commit it would share."""

    _batcher: WriteBatcher

    async def create(self, key: str, value: bytes) -> int:
        keys.check_size(key, value)
        return await self._batcher.write(key, value, 0)

    async def update(self, key: str, value: bytes, expected_revision: int) -> int:
        keys.check_size(key, value)
        return await self._batcher.write(key, value, expected_revision)


class EtcdStore(BatchedWrites):
    """A Store on an etcd cluster. Create it inside the event loop that will use it."""

    def __init__(self, endpoints: Sequence[str], *, timeout: float = 2.0) -> None:
        self._endpoint = ",".join(endpoints)
        self._timeout = timeout
        self._channel = aio.insecure_channel(grpc_target(endpoints), options=_CHANNEL_OPTIONS)
        self._kv = rpc.KVStub(self._channel)
        self._watch = rpc.WatchStub(self._channel)
        self._lease = rpc.LeaseStub(self._channel)
        self._batcher = WriteBatcher(self._send_batch)

    async def __aenter__(self) -> EtcdStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: Any, request: Any, *, key: str = "",
                    revision: int = 0) -> Any:
        try:
            return await method(request, timeout=self._timeout)
        except aio.AioRpcError as e:
            raise translate_error(e.code(), e.details() or "", key=key, revision=revision,
                                  endpoint=self._endpoint) from None

    async def _txn(self, key: str, compare: Any, success: Any, failure: list[Any]) -> Any:
        request = rpc.TxnRequest(compare=[compare], success=[success], failure=failure)
        return await self._call(self._kv.Txn, request, key=key)

    async def _cas(self, key: str, expected_revision: int, op: Any) -> int:
        """Run op if key is still at expected_revision; else NotFound or Conflict."""
        k = key.encode()
        compare = rpc.Compare(result=rpc.Compare.EQUAL, target=rpc.Compare.MOD, key=k,
                              mod_revision=expected_revision)
        resp = await self._txn(key, compare, op,
                               [rpc.RequestOp(request_range=rpc.RangeRequest(key=k))])
        if resp.succeeded:
            return int(resp.header.revision)
        kvs = resp.responses[0].response_range.kvs
        if not kvs:
            raise NotFound(key)
        raise Conflict(key, expected_revision=expected_revision,
                       current_revision=int(kvs[0].mod_revision))

    async def _send_batch(self, batch: Sequence[PendingWrite],
                          ) -> list[Outcome]:
        """One Txn for BATCH's creates and updates: every compare holds, every put is made
        at one revision; else nothing is written and the failure branch's reads tell
        which writes failed (AlreadyExists, NotFound, Conflict) and which may retry."""
        request = rpc.TxnRequest()
        for w in batch:
            k = w.key.encode()
            _add_compare(request, k, w.expected_revision)
            _add_write(request, k, w.value)
        resp = await self._call(self._kv.Txn, request, key=batch[0].key)
        if resp.succeeded:
            return [int(resp.header.revision)] * len(batch)
        out: list[int | StorageError | _Retry] = []
        for w, r in zip(batch, resp.responses, strict=True):
            kvs = r.response_range.kvs
            rev = int(kvs[0].mod_revision) if kvs else 0
            if w.expected_revision == 0:
                out.append(AlreadyExists(w.key) if rev else RETRY)
            elif not rev:
                out.append(NotFound(w.key))
            elif rev != w.expected_revision:
                out.append(Conflict(w.key, expected_revision=w.expected_revision,
                                    current_revision=rev))
            else:
                out.append(RETRY)
        return out

    # -- the Store protocol -----------------------------------------------------------

    # create and update: BatchedWrites

    async def get(self, key: str) -> tuple[bytes, int]:
        resp = await self._call(self._kv.Range, rpc.RangeRequest(key=key.encode()), key=key)
        if not resp.kvs:
            raise NotFound(key)
        return bytes(resp.kvs[0].value), int(resp.kvs[0].mod_revision)

    async def delete(self, key: str, expected_revision: int | None = None) -> int:
        request = rpc.DeleteRangeRequest(key=key.encode())
        if expected_revision is not None:
            return await self._cas(key, expected_revision,
                                   rpc.RequestOp(request_delete_range=request))
        resp = await self._call(self._kv.DeleteRange, request, key=key)
        if resp.deleted == 0:
            raise NotFound(key)
        return int(resp.header.revision)

    async def list(self, prefix: str, *, limit: int = 0, continue_token: str | None = None,
                   revision: int | None = None) -> ListResult:
        start, revision = pagination.start_of(prefix, continue_token=continue_token,
                                              revision=revision)
        request = rpc.RangeRequest(key=start.encode(),
                                   range_end=keys.prefix_range_end(prefix.encode()),
                                   limit=limit, revision=revision or 0)
        resp = await self._call(self._kv.Range, request, key=prefix, revision=revision or 0)
        read_at = revision or int(resp.header.revision)
        items = [Item(bytes(kv.key).decode(), bytes(kv.value), int(kv.mod_revision))
                 for kv in resp.kvs]
        token = None
        if resp.more and items:
            token = pagination.encode(prefix=prefix, last_key=items[-1].key, revision=read_at)
        return ListResult(items, read_at, token)

    async def commit(self, writes: Sequence[Write], *, fence: Fence | None = None) -> int:
        keys.check_writes(writes, fenced=fence is not None)
        request = txn_request(writes, fence)
        try:
            resp = await self._call(self._kv.Txn, request, key=writes[0].key)
        except StorageError as err:
            if "requested lease not found" in str(err):
                raise NotFound(f"lease of {writes[0].key}") from None
            raise
        if resp.succeeded:
            return int(resp.header.revision)
        found = [r.response_range.kvs for r in resp.responses]
        if fence is not None:
            kvs = found.pop()
            current = int(kvs[0].create_revision) if kvs else 0
            if current != fence.revision:
                raise Fenced(fence.key, expected_revision=fence.revision,
                             current_revision=current)
        failures: dict[str, StorageError] = {}
        for w, kvs in zip(writes, found, strict=True):
            rev = int(kvs[0].mod_revision) if kvs else 0
            if w.expected_revision == 0:
                if rev:
                    failures[w.key] = AlreadyExists(w.key)
            elif not rev:
                failures[w.key] = NotFound(w.key)
            elif w.expected_revision is not None and rev != w.expected_revision:
                failures[w.key] = Conflict(w.key, expected_revision=w.expected_revision,
                                           current_revision=rev)
        if not failures:  # a key changed back and forth between the txn and its reads
            raise Unavailable(f"{self._endpoint}: commit raced a concurrent write; retry")
        raise TxnFailed(failures)

    async def grant_lease(self, ttl: int) -> int:
        if ttl < 1:
            raise InvalidArgument(f"lease ttl {ttl}: must be >= 1 second")
        resp = await self._call(self._lease.LeaseGrant, rpc.LeaseGrantRequest(TTL=ttl))
        if resp.error:
            raise StorageError(f"lease grant: {resp.error}")
        return int(resp.ID)

    async def keep_alive(self, lease: int) -> int:
        call = self._lease.LeaseKeepAlive(timeout=self._timeout)
        try:
            await call.write(rpc.LeaseKeepAliveRequest(ID=lease))
            resp = await call.read()
        except aio.AioRpcError as e:
            raise translate_error(e.code(), e.details() or "", key=f"lease {lease:x}",
                                  revision=0, endpoint=self._endpoint) from None
        finally:
            call.cancel()
        if resp is aio.EOF:
            raise Unavailable(f"{self._endpoint}: lease keepalive stream closed by etcd")
        if resp.TTL <= 0:
            raise NotFound(f"lease {lease:x}")
        return int(resp.TTL)

    async def revoke_lease(self, lease: int) -> None:
        try:
            await self._call(self._lease.LeaseRevoke, rpc.LeaseRevokeRequest(ID=lease))
        except StorageError as err:
            if "requested lease not found" not in str(err):
                raise

    async def current_revision(self) -> int:
        resp = await self._call(self._kv.Range, rpc.RangeRequest(key=b"\0", count_only=True))
        return int(resp.header.revision)

    async def compact(self, revision: int) -> None:
        try:
            await self._call(self._kv.Compact,
                             rpc.CompactionRequest(revision=revision, physical=True),
                             revision=revision)
        except Gone:
            pass  # already compacted at or past revision: nothing to do

    async def watch(self, prefix: str, *, from_revision: int,
                    bookmark_interval: float | None = None) -> AsyncIterator[Event]:
        keys.check_prefix(prefix)
        p = prefix.encode()
        create = rpc.WatchCreateRequest(
            key=p, range_end=keys.prefix_range_end(p), prev_kv=True, progress_notify=True,
            start_revision=from_revision + 1 if from_revision else 0)
        call = self._watch.Watch()
        ticker: asyncio.Task[None] | None = None
        try:
            await call.write(rpc.WatchRequest(create_request=create))
            if bookmark_interval:
                ticker = asyncio.create_task(self._request_progress(call, bookmark_interval))
            while True:
                resp = await call.read()
                if resp is aio.EOF:
                    raise Unavailable(f"{self._endpoint}: watch stream closed by etcd")
                if resp.compact_revision:
                    raise Gone(from_revision, int(resp.compact_revision))
                if resp.canceled:
                    raise StorageError(f"{prefix}: watch canceled by etcd: {resp.cancel_reason}")
                if resp.created:
                    continue
                if not resp.events:
                    # A progress notification: etcd has sent everything up to this revision.
                    yield Event(EventType.BOOKMARK, "", b"", int(resp.header.revision))
                for ev in resp.events:
                    yield event_from_proto(ev)
        except aio.AioRpcError as e:
            raise translate_error(e.code(), e.details() or "", key=prefix,
                                  revision=from_revision, endpoint=self._endpoint) from None
        finally:
            if ticker is not None:
                ticker.cancel()
            call.cancel()

    @staticmethod
    async def _request_progress(call: Any, interval: float) -> None:
        """Ask etcd for a progress notification every interval; ends with the stream.

        etcd 3.4 may answer a progress request before a watcher that is still replaying
        old history has caught up; bookmarks are exact once the replay is done.
        """
        progress = rpc.WatchRequest(progress_request=rpc.WatchProgressRequest())
        with contextlib.suppress(aio.AioRpcError, aio.UsageError, asyncio.InvalidStateError):
            while True:
                await asyncio.sleep(interval)
                await call.write(progress)
