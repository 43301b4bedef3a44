"""Both content stores, for the one conformance suite (test_conformance.py)."""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from runtime.service.content import ContentStore, FileContentStore, MemoryContentStore
from runtime.service.content import filestore as filestore_mod


@dataclass
class Harness:
    store: ContentStore
    reopen: Callable[[], ContentStore]  # a new store object over the same state ("restart")
    fail_after: Callable[[int], None]  # from now on, writes fail with ENOSPC after n bytes
    heal: Callable[[], None]  # the disk has space again


def _file_harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Harness:
    def fail_after(n: int) -> None:
        real = filestore_mod._write_all
        budget = [n]

        def write(fd: int, data: bytes) -> None:
            if len(data) > budget[0]:
                real(fd, data[: budget[0]])  # a partial write, then the disk is full
                budget[0] = 0
                raise OSError(errno.ENOSPC, "No space left on device")
            budget[0] -= len(data)
            real(fd, data)

        monkeypatch.setattr(filestore_mod, "_write_all", write)

    root = tmp_path / "content"

    def heal() -> None:
        monkeypatch.setattr(filestore_mod, "_write_all", real_write_all)

    real_write_all = filestore_mod._write_all
    return Harness(FileContentStore(root), lambda: FileContentStore(root), fail_after, heal)


def _memory_harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Harness:
    store = MemoryContentStore()

    def fail_after(n: int) -> None:
        used = sum(s.offset for s in store.ingests()) + sum(i.size for i in store.walk())
        monkeypatch.setattr(store, "_capacity", used + n)

    def heal() -> None:
        monkeypatch.setattr(store, "_capacity", None)

    return Harness(store, lambda: store, fail_after, heal)


@pytest.fixture(
    params=[
        pytest.param(_file_harness, id="file"),
        pytest.param(_memory_harness, id="memory"),
    ]
)
def harness(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Harness:
    make: Callable[[Path, pytest.MonkeyPatch], Harness] = request.param
    return make(tmp_path, monkeypatch)
