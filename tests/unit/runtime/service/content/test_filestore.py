"""What only the on-disk store has: its layout, modes, real crashes and bounded memory."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from runtime.service.content import Digest, FileContentStore, Locked

DATA = b"layer bytes"
D = Digest.from_bytes(DATA)
REPO = Path(__file__).resolve().parents[5]


def test_layout_and_modes(tmp_path: Path) -> None:
    store = FileContentStore(tmp_path)
    with store.writer("pull") as w:
        w.write(DATA)
        ingest = Path(store._ingest_path("pull"))
        assert sorted(p.name for p in ingest.iterdir()) == ["data", "ref", "startedat"]
        assert (ingest / "ref").read_text() == "pull"
        w.commit(labels={"containerd.io/gc.ref.content.l.0": str(D)})
    blob = tmp_path / "blobs" / "sha256" / D.hex
    assert blob.read_bytes() == DATA
    assert stat.S_IMODE(blob.stat().st_mode) == 0o444
    labels = tmp_path / "labels" / "sha256" / f"{D.hex}.json"
    assert json.loads(labels.read_text()) == {"containerd.io/gc.ref.content.l.0": str(D)}
    assert list((tmp_path / "ingest").iterdir()) == []
    assert [p.name for p in labels.parent.iterdir()] == [labels.name]  # no temp files left


def test_stray_files_are_not_blobs(tmp_path: Path) -> None:
    store = FileContentStore(tmp_path)
    (tmp_path / "blobs" / "sha256").mkdir(parents=True)
    (tmp_path / "blobs" / "sha256" / "junk").write_bytes(b"x")
    (tmp_path / "blobs" / "sha256" / ("Z" * 64)).write_bytes(b"x")
    assert list(store.walk()) == []


def test_crashed_writer_in_another_process(tmp_path: Path) -> None:
    child = textwrap.dedent(
        f"""
        import os, sys
        from runtime.service.content import FileContentStore
        w = FileContentStore({str(tmp_path)!r}).writer("pull-1")
        w.write({DATA[:4]!r})
        print("ready", flush=True)
        sys.stdin.readline()
        os._exit(9)  # a crash: no close, no abort
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", child],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline() == "ready\n"
        store = FileContentStore(tmp_path)
        with pytest.raises(Locked):  # flock is held by the other process
            store.writer("pull-1")
        with pytest.raises(Locked):
            store.abort("pull-1")
        proc.stdin.write("\n")
        proc.stdin.flush()
    finally:
        assert proc.wait(timeout=10) == 9
    [status] = store.ingests()
    assert (status.ref, status.offset) == ("pull-1", 4)
    with store.writer("pull-1", expected_digest=D) as w:
        assert w.offset == 4
        w.write(DATA[4:])
        w.commit()
    assert store.read(D) == DATA


def test_large_commit_and_read_never_hold_the_blob(tmp_path: Path) -> None:
    store = FileContentStore(tmp_path)
    chunk = os.urandom(256 * 1024)
    n = 32  # 8 MiB
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        with store.writer("big") as w:
            for _ in range(n):
                w.write(chunk)
            d = w.commit()
        with store.open(d) as f:
            while f.read(len(chunk)):
                pass
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert store.info(d).size == n * len(chunk)
    assert peak < 2 * 1024 * 1024, peak  # a chunk or two, never the 8 MiB blob


def test_first_commit_of_a_digest_wins(tmp_path: Path) -> None:
    store = FileContentStore(tmp_path)
    writers = [store.writer(f"r{i}") for i in range(4)]
    for w in writers:
        w.write(DATA)
    assert writers[0].commit() == D
    inode = (tmp_path / "blobs" / "sha256" / D.hex).stat().st_ino
    with ThreadPoolExecutor(3) as pool:  # the rest race each other: all no-ops, no errors
        assert list(pool.map(lambda w: w.commit(), writers[1:])) == [D] * 3
    assert (tmp_path / "blobs" / "sha256" / D.hex).stat().st_ino == inode
    assert store.ingests() == []
