"""cri/service.py's image(): an image's manifest and config are read and parsed once per
target digest (every CreateContainer and ImageStatus asks), with the same answer."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from runtime.service.content import MemoryContentStore
from runtime.service.cri.service import Service
from runtime.service.images.archive import export_archive
from runtime.service.images.service import ImageService
from runtime.service.snapshots import NativeSnapshotter
from tests.unit.runtime.service.images.test_unpack import APP, BASE, OTHER, make_image


@pytest.mark.parametrize("names", [
    pytest.param(["r.io/a:1"], id="one-image"),
    pytest.param(["r.io/a:1", "r.io/b:1"], id="two-images"),
])
def test_image_is_resolved_once_per_digest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           names: list[str]) -> None:
    staging, content = MemoryContentStore(), MemoryContentStore()
    targets = {"r.io/a:1": make_image(staging, BASE, APP),
               "r.io/b:1": make_image(staging, BASE, OTHER)}
    tarball = io.BytesIO()
    export_archive(tarball, [(n, targets[n]) for n in names], content=staging)
    tarball.seek(0)
    snap = NativeSnapshotter(str(tmp_path / "native"))
    images = ImageService(str(tmp_path / "images"), content=content,
                          snapshotters={"overlayfs": snap}, default_snapshotter="overlayfs")
    svc = Service(root=str(tmp_path), state=str(tmp_path / "state"), images=images,
                  content=content, snapshotter=snap, tasks=None,  # type: ignore[arg-type]
                  bus=None, runtimes={}, default_runtime="corral-runc")
    try:
        images.import_("k8s.io", tarball)
        reads: list[str] = []
        real = content.read

        def read(digest: Any) -> bytes:
            reads.append(str(digest))
            return real(digest)
        monkeypatch.setattr(content, "read", read)
        first = [svc.image("k8s.io", n) for n in names]
        assert reads  # the first look reads the manifest and the config
        reads.clear()
        again = [svc.image("k8s.io", n) for n in names]
        assert reads == [] and again == first
        for n, ref in zip(names, first, strict=True):
            assert ref.config["config"] == {"Cmd": ["/app/run"]}
            assert ref.manifest_digest == str(targets[n].digest) and ref.size > 0
            assert svc.image("k8s.io", ref.id).image.name == n  # by ID, as CRI allows
        assert reads == []  # by ID too
    finally:
        svc.close()
        images.close()
        snap.close()
