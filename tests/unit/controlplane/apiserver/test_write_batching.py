"""EtcdStore's WriteBatcher (controlplane/storage/etcd.py) with a recording sender in place
of etcd: concurrent writes share a Txn, a key is never twice in one, a failed Txn fails
only the writes that caused it. (Lives here because the API server's speed work owns it;
the etcd conformance suite covers the same paths against a real etcd.)"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from controlplane.storage import etcd
from controlplane.storage.errors import AlreadyExists, Conflict, StorageError, Unavailable

pytestmark = pytest.mark.asyncio

Outcome = int | StorageError | etcd._Retry


class FakeEtcd:
    """Keys at revisions; a batch succeeds when every write's expectation holds."""

    def __init__(self) -> None:
        self.rev = 1
        self.kv: dict[str, int] = {}
        self.batches: list[list[str]] = []
        self.fail_next: Exception | None = None
        self.gate = asyncio.Event()
        self.gate.set()

    async def send(self, batch: Sequence[etcd.PendingWrite]) -> list[Outcome]:
        self.batches.append([w.key for w in batch])
        assert len({w.key for w in batch}) == len(batch), "a key twice in one Txn"
        await self.gate.wait()
        if self.fail_next is not None:
            err, self.fail_next = self.fail_next, None
            raise err
        ok = all(self.kv.get(w.key, 0) == w.expected_revision for w in batch)
        if ok:
            self.rev += 1
            for w in batch:
                self.kv[w.key] = self.rev
            return [self.rev] * len(batch)
        out: list[Outcome] = []
        for w in batch:
            have = self.kv.get(w.key, 0)
            if w.expected_revision == 0:
                out.append(AlreadyExists(w.key) if have else etcd.RETRY)
            elif have != w.expected_revision:
                out.append(Conflict(w.key, expected_revision=w.expected_revision,
                                    current_revision=have))
            else:
                out.append(etcd.RETRY)
        return out


async def test_a_lone_write_goes_out_at_once_alone() -> None:
    fake = FakeEtcd()
    b = etcd.WriteBatcher(fake.send)
    assert await b.write("/a", b"1", 0) == 2
    assert fake.batches == [["/a"]]


async def test_writes_arriving_while_a_txn_is_out_wait_and_share_the_next_txn() -> None:
    fake = FakeEtcd()
    fake.gate.clear()
    b = etcd.WriteBatcher(fake.send)
    first = asyncio.create_task(b.write("/first", b"v", 0))
    await asyncio.sleep(0)
    queued = [asyncio.create_task(b.write(f"/q{i}", b"v", 0)) for i in range(10)]
    await asyncio.sleep(0)
    assert fake.batches == [["/first"]]  # the short queue waits for the Txn that is out
    fake.gate.set()
    revs = await asyncio.gather(first, *queued)
    assert len(fake.batches) == 2
    assert sorted(fake.batches[-1]) == sorted(f"/q{i}" for i in range(10))
    assert len(set(revs[1:])) == 1  # one Txn: one revision


@pytest.mark.parametrize(("waiting", "txns_out"), [
    pytest.param(etcd.BATCH_WRITES - 1, 1, id="short-of-a-full-batch"),
    pytest.param(etcd.BATCH_WRITES, 2, id="one-full-batch"),
    pytest.param(etcd.BATCH_WRITES * 2 + 1, 3, id="two-full-batches-and-one"),
    pytest.param(etcd.BATCH_WRITES * 10, etcd.BATCH_IN_FLIGHT, id="capped"),
])
async def test_full_batches_waiting_go_out_side_by_side(waiting: int, txns_out: int) -> None:
    fake = FakeEtcd()
    fake.gate.clear()
    b = etcd.WriteBatcher(fake.send)
    first = asyncio.create_task(b.write("/first", b"v", 0))
    await asyncio.sleep(0)
    queued = [asyncio.create_task(b.write(f"/q{i}", b"v", 0)) for i in range(waiting)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(fake.batches) == txns_out
    assert all(len(batch) == etcd.BATCH_WRITES for batch in fake.batches[1:])
    fake.gate.set()
    await asyncio.gather(first, *queued)
    assert len(fake.kv) == waiting + 1


async def test_one_key_twice_goes_in_two_txns_in_order() -> None:
    fake = FakeEtcd()
    fake.gate.clear()
    b = etcd.WriteBatcher(fake.send)
    busy = [asyncio.create_task(b.write(f"/busy{i}", b"v", 0))
            for i in range(etcd.BATCH_IN_FLIGHT)]
    await asyncio.sleep(0)
    create = asyncio.create_task(b.write("/x", b"1", 0))
    again = asyncio.create_task(b.write("/x", b"2", 0))
    other = asyncio.create_task(b.write("/y", b"1", 0))
    await asyncio.sleep(0)
    fake.gate.set()
    await asyncio.gather(*busy)
    assert await create > 0
    with pytest.raises(AlreadyExists):
        await again
    assert await other > 0
    assert all(batch.count("/x") <= 1 for batch in fake.batches)


@pytest.mark.parametrize(("expected", "error"), [
    pytest.param(0, AlreadyExists, id="create-of-existing"),
    pytest.param(1, Conflict, id="update-at-old-revision"),
])
async def test_a_failed_txn_fails_only_the_culprit(expected: int,
                                                   error: type[Exception]) -> None:
    fake = FakeEtcd()
    fake.kv["/taken"] = 7
    fake.gate.clear()
    b = etcd.WriteBatcher(fake.send)
    busy = [asyncio.create_task(b.write(f"/busy{i}", b"v", 0))
            for i in range(etcd.BATCH_IN_FLIGHT)]
    await asyncio.sleep(0)
    bad = asyncio.create_task(b.write("/taken", b"v", expected))
    good = [asyncio.create_task(b.write(f"/g{i}", b"v", 0)) for i in range(3)]
    await asyncio.sleep(0)
    fake.gate.set()
    await asyncio.gather(*busy)
    with pytest.raises(error):
        await bad
    assert all(rev > 0 for rev in await asyncio.gather(*good))
    assert all(f"/g{i}" in fake.kv for i in range(3))


async def test_a_txn_that_fails_as_a_whole_fails_each_write_and_the_next_go_on() -> None:
    fake = FakeEtcd()
    fake.fail_next = Unavailable("etcd: down")
    b = etcd.WriteBatcher(fake.send)
    with pytest.raises(Unavailable):
        await b.write("/a", b"1", 0)
    assert await b.write("/a", b"1", 0) > 0


async def test_batches_keep_to_the_byte_and_write_limits() -> None:
    fake = FakeEtcd()
    fake.gate.clear()
    b = etcd.WriteBatcher(fake.send)
    busy = [asyncio.create_task(b.write(f"/busy{i}", b"v", 0))
            for i in range(etcd.BATCH_IN_FLIGHT)]
    await asyncio.sleep(0)
    big = b"x" * (etcd.BATCH_BYTES // 3)
    many = [asyncio.create_task(b.write(f"/big{i}", big, 0)) for i in range(4)]
    many += [asyncio.create_task(b.write(f"/s{i}", b"v", 0))
             for i in range(etcd.BATCH_WRITES + 5)]
    await asyncio.sleep(0)
    fake.gate.set()
    await asyncio.gather(*busy, *many)
    sizes = {w: 3 * len(w) + (len(big) if w.startswith("/big") else 1) + 64
             for batch in fake.batches for w in batch}
    for batch in fake.batches:
        assert len(batch) <= etcd.BATCH_WRITES
        assert len(batch) == 1 or sum(sizes[w] for w in batch) <= etcd.BATCH_BYTES


async def test_a_failed_txn_without_a_culprit_fails_instead_of_looping() -> None:
    async def confused(batch: Sequence[etcd.PendingWrite]) -> list[Outcome]:
        calls.append(len(batch))
        return [etcd.RETRY] * len(batch)

    calls: list[int] = []
    b = etcd.WriteBatcher(confused)
    with pytest.raises(Unavailable):
        await b.write("/a", b"1", 0)
    assert calls == [1]
