"""Garbage collection: mark from roots through gc.ref labels and snapshot parents, sweep
the rest (MemoryContentStore + NativeSnapshotter, and through ImageService)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.service.content import Digest, MemoryContentStore
from runtime.service.gc import GCResult, Leases, Roots, collect
from runtime.service.images.archive import export_archive
from runtime.service.images.service import ImageService
from runtime.service.images.store import Target
from runtime.service.images.unpack import unpack
from runtime.service.snapshots import NativeSnapshotter
from tests.unit.runtime.service.diff.layers import file, layer
from tests.unit.runtime.service.images.test_unpack import APP, BASE, OTHER, desc, make_image

TOP = layer(file("top", b"top\n"))


@pytest.fixture
def content() -> MemoryContentStore:
    return MemoryContentStore()


@pytest.fixture
def snap(tmp_path: Path) -> Iterator[NativeSnapshotter]:
    s = NativeSnapshotter(str(tmp_path / "native"))
    yield s
    s.close()


def blobs_of(content: MemoryContentStore, t: Target) -> set[Digest]:
    labels = content.info(t.digest).labels
    return {t.digest, *(Digest(v) for k, v in labels.items()
                        if k.startswith("containerd.io/gc.ref.content."))}


def unpacked(content: MemoryContentStore, snap: NativeSnapshotter, t: Target) -> str:
    return unpack(content=content, snapshotter=snap, snapshotter_name="native", target=desc(t),
                  what="test").chain_id


def gc(content: MemoryContentStore, snap: NativeSnapshotter, *roots: Roots,
       **kw: object):  # type: ignore[no-untyped-def]
    return collect(content=content, snapshotters={"native": snap},
                   roots=[lambda r=r: r for r in roots], **kw)  # type: ignore[arg-type]


def test_unreferenced_image_goes_shared_parts_stay(content: MemoryContentStore,
                                                   snap: NativeSnapshotter) -> None:
    a = make_image(content, BASE, APP)
    b = make_image(content, BASE, OTHER)
    top_a, top_b = unpacked(content, snap, a), unpacked(content, snap, b)
    base = snap.stat(top_a).parent
    expected = blobs_of(content, b) - blobs_of(content, a)
    sizes = sum(content.info(d).size for d in expected) + snap.usage(top_b).size
    result = gc(content, snap, Roots(content={a.digest}))
    assert set(result.blobs) == expected
    assert result.snapshots == (("native", top_b),)
    assert result.bytes_freed == sizes
    assert {i.digest for i in content.walk()} == blobs_of(content, a)
    assert {i.name for i in snap.walk()} == {top_a, base}
    assert gc(content, snap, Roots(content={a.digest})).blobs == ()  # nothing more to do


def test_snapshots_are_removed_children_first(content: MemoryContentStore,
                                              snap: NativeSnapshotter) -> None:
    unpacked(content, snap, make_image(content, BASE, APP, TOP))
    parents = {i.name: i.parent for i in snap.walk()}
    result = gc(content, snap)
    order = [k for _, k in result.snapshots]
    assert sorted(order) == sorted(parents)
    for key, parent in parents.items():
        if parent is not None:
            assert order.index(key) < order.index(parent)
    assert list(snap.walk()) == [] and list(content.walk()) == []


def test_container_snapshots_are_roots(content: MemoryContentStore,
                                       snap: NativeSnapshotter) -> None:
    top = unpacked(content, snap, make_image(content, BASE, APP))
    snap.prepare("container-1", top)  # an active rootfs keeps its whole chain
    snap.commit("committed-rootfs", snap.prepare("tmp", top) and "tmp")
    result = gc(content, snap, Roots(snapshots={("native", "committed-rootfs")}))
    assert result.snapshots == ()
    assert {i.name for i in snap.walk()} >= {"container-1", "committed-rootfs", top}
    assert len(result.blobs) == 4  # the image's blobs are not reachable from a snapshot


def test_stale_ingests_go_fresh_ones_stay() -> None:
    now = [1000.0]
    content = MemoryContentStore(clock=lambda: now[0])
    with content.writer("old") as w:
        w.write(b"abc")
    now[0] = 5000.0
    with content.writer("new") as w:
        w.write(b"de")
    result = collect(content=content, snapshotters={}, roots=[], ingest_max_age=3600,
                     clock=lambda: now[0])
    assert result.ingests == ("old",)
    assert result.bytes_freed == 3
    assert [i.ref for i in content.ingests()] == ["new"]


def test_leases_keep_what_an_operation_is_building(content: MemoryContentStore,
                                                   snap: NativeSnapshotter) -> None:
    old = make_image(content, BASE)
    leases = Leases(clock=lambda: 10**12)  # started after everything here was made
    with leases.lease() as lease:
        lease.add_content(old.digest)
        result = collect(content=content, snapshotters={"native": snap},
                         roots=[leases.roots], protect_since=leases.protect_since())
        assert result.blobs == ()
    assert leases.protect_since() is None
    assert len(collect(content=content, snapshotters={"native": snap},
                       roots=[leases.roots]).blobs) == 3


def _service(tmp_path: Path, content: MemoryContentStore,
             snap: NativeSnapshotter) -> ImageService:
    return ImageService(str(tmp_path / "images"), content=content,
                        snapshotters={"native": snap}, default_snapshotter="native")


def test_service_gc_respects_every_namespace(tmp_path: Path, snap: NativeSnapshotter) -> None:
    content = MemoryContentStore()
    staging = MemoryContentStore()
    a, b = make_image(staging, BASE, APP), make_image(staging, BASE, OTHER)
    tarball = io.BytesIO()
    export_archive(tarball, [("r.io/a:1", a), ("r.io/b:1", b)], content=staging)
    svc = _service(tmp_path, content, snap)
    try:
        tarball.seek(0)
        svc.import_("team-a", tarball)
        tarball.seek(0)
        svc.import_("team-b", tarball)
        top_b = svc.get("team-a", "r.io/b:1").labels["io.corral.image.unpacked.native"]
        svc.remove("team-a", "r.io/b:1")
        assert svc.gc() == GCResult()  # team-b still has it: nothing goes
        svc.remove("team-b", "r.io/b:1")
        result = svc.gc()
        assert set(result.blobs) == blobs_of(staging, b) - blobs_of(staging, a)
        assert result.snapshots == (("native", top_b),)
        assert [i.name for i in svc.list("team-a")] == ["r.io/a:1"]
        assert svc.get("team-b", "r.io/a:1").target == a
    finally:
        svc.close()
