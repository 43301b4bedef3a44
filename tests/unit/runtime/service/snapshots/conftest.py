"""Both snapshotters, for the one conformance suite (test_conformance.py here, and the
mounting half in tests/integration/runtime/service/test_snapshots.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runtime.service.snapshots import (
    MetaSnapshotter,
    NativeSnapshotter,
    OverlaySnapshotter,
)

MAKERS: dict[str, Callable[[str], MetaSnapshotter]] = {
    "overlay": OverlaySnapshotter,
    "native": NativeSnapshotter,
}


@pytest.fixture(params=[pytest.param(name, id=name) for name in MAKERS])
def kind(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def snapshotter(kind: str, tmp_path: Path) -> Iterator[MetaSnapshotter]:
    s = MAKERS[kind](str(tmp_path / "snapshotter"))
    yield s
    s.close()
