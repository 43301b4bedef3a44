"""One suite every ContentStore implementation must pass (CONVENTIONS 5)."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable

import pytest

from runtime.service.content import (
    ContentError,
    Digest,
    DigestMismatch,
    InvalidDigest,
    Locked,
    NotFound,
    SizeMismatch,
)
from tests.unit.runtime.service.content.conftest import Harness

DATA = b"hello, corral\n"
D = Digest.from_bytes(DATA)
OTHER = Digest.from_bytes(b"something else")
GC_REF = "containerd.io/gc.ref.content.config"


def put(h: Harness, data: bytes, ref: str = "r") -> Digest:
    with h.store.writer(ref) as w:
        w.write(data)
        return w.commit()


def test_round_trip_and_info(harness: Harness) -> None:
    with harness.store.writer("pull-1", expected_digest=D, expected_size=len(DATA)) as w:
        assert w.offset == 0
        w.write(DATA[:5])
        w.write(DATA[5:])
        assert w.offset == len(DATA)
        assert w.commit() == D
    assert harness.store.read(D) == DATA
    with harness.store.open(D) as f:
        assert f.read() == DATA
    info = harness.store.info(D)
    assert (info.digest, info.size, dict(info.labels)) == (D, len(DATA), {})
    assert info.created_at > 0
    assert harness.store.exists(D)
    assert harness.store.ingests() == []


def test_sha512_expected_digest(harness: Harness) -> None:
    d512 = Digest.from_bytes(DATA, "sha512")
    with harness.store.writer("r", expected_digest=d512) as w:
        w.write(DATA)
        assert w.commit() == d512
    assert harness.store.read(d512) == DATA


def test_digest_mismatch_leaves_nothing(harness: Harness) -> None:
    w = harness.store.writer("r", expected_digest=OTHER)
    w.write(DATA)
    with pytest.raises(DigestMismatch, match=f"'r': expected {OTHER}, got {D}"):
        w.commit()
    assert not harness.store.exists(D)
    assert not harness.store.exists(OTHER)
    assert harness.store.ingests() == []
    assert list(harness.store.walk()) == []


@pytest.mark.parametrize(
    "size", [pytest.param(len(DATA) - 1, id="short"), pytest.param(len(DATA) + 1, id="long")]
)
def test_size_mismatch_leaves_nothing(harness: Harness, size: int) -> None:
    with (
        pytest.raises(SizeMismatch, match=f"expected size {size}, got {len(DATA)}"),
        harness.store.writer("r", expected_size=size) as w,
    ):
        w.write(DATA)
        w.commit()
    assert not harness.store.exists(D)
    assert harness.store.ingests() == []


def test_resume_by_ref_after_restart(harness: Harness) -> None:
    w = harness.store.writer("pull-1", expected_digest=D)
    w.write(DATA[:6])
    w.close()  # what a crash leaves behind: the ingest, no lock
    [status] = harness.store.ingests()
    assert (status.ref, status.offset) == ("pull-1", 6)
    store = harness.reopen()
    with store.writer("pull-1", expected_digest=D, expected_size=len(DATA)) as w2:
        assert w2.offset == 6
        w2.write(DATA[w2.offset :])
        assert w2.commit() == D
    assert store.read(D) == DATA
    assert store.ingests() == []


def test_second_writer_on_same_ref_is_locked(harness: Harness) -> None:
    w = harness.store.writer("r")
    w.write(b"abc")
    with pytest.raises(Locked, match="'r'"):
        harness.reopen().writer("r")
    with pytest.raises(Locked):
        harness.store.abort("r")
    harness.store.writer("other").abort()  # other refs are free
    w.close()
    with harness.store.writer("r") as w2:  # the lock went with the first writer
        assert w2.offset == 3
        w2.abort()
    assert harness.store.ingests() == []


def test_committing_existing_digest_is_a_no_op(harness: Harness) -> None:
    first = harness.store.writer("a")
    second = harness.store.writer("b")
    first.write(DATA)
    second.write(DATA)
    assert first.commit() == D
    created = harness.store.info(D).created_at
    assert second.commit() == D
    assert harness.store.read(D) == DATA
    assert harness.store.info(D).created_at == created
    assert [i.digest for i in harness.store.walk()] == [D]
    assert harness.store.ingests() == []


def test_delete(harness: Harness) -> None:
    put(harness, DATA)
    harness.store.update_labels(D, {GC_REF: str(OTHER)})
    harness.store.delete(D)
    assert not harness.store.exists(D)
    for call in (harness.store.read, harness.store.info, harness.store.delete):
        with pytest.raises(NotFound, match=D):
            call(D)
    put(harness, DATA)  # labels went with the blob
    assert dict(harness.store.info(D).labels) == {}


def test_walk(harness: Harness) -> None:
    blobs = {put(harness, f"blob {i}".encode(), ref=f"r{i}"): i for i in range(5)}
    infos = list(harness.store.walk())
    assert sorted(i.digest for i in infos) == sorted(blobs)
    assert all(i.size == len(f"blob {blobs[i.digest]}") for i in infos)


def test_labels_update_and_persist(harness: Harness) -> None:
    put(harness, DATA)
    info = harness.store.update_labels(D, {GC_REF: str(OTHER), "keep": "1"})
    assert dict(info.labels) == {GC_REF: str(OTHER), "keep": "1"}
    info = harness.store.update_labels(D, {GC_REF: None, "new": "2"})
    assert dict(info.labels) == {"keep": "1", "new": "2"}
    assert dict(harness.reopen().info(D).labels) == {"keep": "1", "new": "2"}
    with pytest.raises(NotFound):
        harness.store.update_labels(OTHER, {"a": "b"})


def test_commit_with_labels(harness: Harness) -> None:
    with harness.store.writer("r") as w:
        w.write(DATA)
        w.commit(labels={GC_REF: str(OTHER)})
    assert dict(harness.store.info(D).labels) == {GC_REF: str(OTHER)}


@pytest.mark.parametrize("bad", ["sha256:" + "Z" * 64, "sha256:abc", "nope"])
def test_invalid_digests_rejected(harness: Harness, bad: str) -> None:
    s = harness.store
    calls: list[Callable[[], object]] = [
        lambda: s.info(bad),
        lambda: s.read(bad),
        lambda: s.open(bad),
        lambda: s.exists(bad),
        lambda: s.delete(bad),
        lambda: s.update_labels(bad, {}),
        lambda: s.writer("r", expected_digest=bad),
    ]
    for call in calls:
        with pytest.raises(InvalidDigest, match=re.escape(repr(bad))):
            call()
    assert s.ingests() == []


def test_large_blob_streamed_in_chunks(harness: Harness) -> None:
    chunk = os.urandom(64 * 1024)
    n = 64  # 4 MiB
    want = hashlib.sha256(chunk * n).hexdigest()
    with harness.store.writer("big", expected_size=len(chunk) * n) as w:
        for _ in range(n):
            w.write(chunk)
        d = w.commit()
    assert d == f"sha256:{want}"
    h, total = hashlib.sha256(), 0
    with harness.store.open(d) as f:
        while part := f.read(len(chunk)):
            assert len(part) <= len(chunk)
            h.update(part)
            total += len(part)
    assert (h.hexdigest(), total) == (want, len(chunk) * n)


def test_enospc_mid_write_leaves_no_partial_blob(harness: Harness) -> None:
    harness.fail_after(100)
    with pytest.raises(OSError) as e, harness.store.writer("r") as w:
        w.write(b"x" * 60)
        w.write(b"x" * 60)  # disk full half way through this one
        w.commit()
    assert "No space left" in str(e.value)
    assert list(harness.store.walk()) == []
    assert harness.store.ingests() == []


def test_failed_write_then_close_keeps_a_consistent_resumable_ingest(harness: Harness) -> None:
    harness.fail_after(15)
    w = harness.store.writer("r")
    w.write(b"a" * 10)
    with pytest.raises(OSError):
        w.write(b"b" * 10)  # the file store writes 5 of these bytes, then fails
    with pytest.raises(ContentError, match=r"earlier write failed|already"):
        w.commit()  # never commit after a failed write
    w.close()
    harness.heal()
    store = harness.reopen()
    with store.writer("r") as w2:  # resumes from what is really there, hash included
        assert w2.offset in (10, 15)
        w2.write(b"c")
        d = w2.commit()
    data = store.read(d)
    assert d == Digest.from_bytes(data)
    assert data == b"a" * 10 + b"b" * (len(data) - 11) + b"c"


def test_abort_and_ingest_listing(harness: Harness) -> None:
    for ref in ("b", "a"):
        w = harness.store.writer(ref)
        w.write(ref.encode() * 3)
        w.close()
    assert [(s.ref, s.offset) for s in harness.store.ingests()] == [("a", 3), ("b", 3)]
    harness.store.abort("a")
    assert [s.ref for s in harness.store.ingests()] == ["b"]
    with pytest.raises(NotFound, match="'a'"):
        harness.store.abort("a")


def test_writer_is_single_use(harness: Harness) -> None:
    w = harness.store.writer("r")
    w.write(DATA)
    w.commit()
    with pytest.raises(ContentError, match="already committed"):
        w.write(b"more")
    with pytest.raises(ContentError, match="already committed"):
        w.commit()
    w.abort()  # harmless after commit
    assert harness.store.read(D) == DATA


@pytest.mark.parametrize("ref", ["", None])
def test_bad_ref(harness: Harness, ref: str) -> None:
    with pytest.raises(ContentError, match="invalid ingest ref"):
        harness.store.writer(ref)
