"""Unpacking images into snapshots by chain ID (MemoryContentStore + NativeSnapshotter).

``make_image`` (used by test_archive.py and test_gc.py too) writes an image into a content
store the way a pull does: blobs first, then the manifest with its GC labels."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.service.content import ContentStore, Digest, MemoryContentStore
from runtime.service.diff import chain_ids
from runtime.service.images.mediatypes import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    Descriptor,
)
from runtime.service.images.store import Target
from runtime.service.images.unpack import UnpackError, unpack
from runtime.service.snapshots import Kind, NativeSnapshotter
from tests.unit.runtime.service.diff.layers import file, layer

BASE = layer(file("etc/base", b"base\n"))
APP = layer(file("app/run", b"app\n", mode=0o755))
OTHER = layer(file("other/x", b"other\n"))


def put_blob(store: ContentStore, data: bytes, labels: dict[str, str] | None = None) -> Digest:
    with store.writer(f"test-{hashlib.sha256(data).hexdigest()}") as w:
        w.write(data)
        return w.commit(labels=labels)


def make_image(store: ContentStore, *layers: bytes, gz: bool = False,
               diff_ids: list[str] | None = None, layer_type: str | None = None) -> Target:
    """An OCI image of LAYERS (uncompressed tars; gzipped in the store when GZ)."""
    import gzip

    ids = diff_ids if diff_ids is not None else ["sha256:" + hashlib.sha256(x).hexdigest() for x in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": ids},
                         "config": {"Cmd": ["/app/run"]}}).encode()
    descs = []
    for raw in layers:
        blob = gzip.compress(raw, mtime=0) if gz else raw
        d = put_blob(store, blob)
        descs.append({"mediaType": layer_type or (OCI_LAYER_GZIP if gz else OCI_LAYER),
                      "digest": d, "size": len(blob)})
    cd = put_blob(store, config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": OCI_CONFIG, "digest": cd,
                                      "size": len(config)},
                           "layers": descs}).encode()
    labels = {"containerd.io/gc.ref.content.config": str(cd)}
    labels.update({f"containerd.io/gc.ref.content.l.{i}": str(x["digest"])
                   for i, x in enumerate(descs)})
    md = put_blob(store, manifest, labels)
    return Target(OCI_MANIFEST, md, len(manifest))


def desc(t: Target) -> Descriptor:
    return Descriptor(t.media_type, t.digest, t.size)


def config_digest(store: ContentStore, t: Target) -> Digest:
    return Digest(store.info(t.digest).labels["containerd.io/gc.ref.content.config"])


@pytest.fixture
def content() -> MemoryContentStore:
    return MemoryContentStore()


@pytest.fixture
def snap(tmp_path: Path) -> Iterator[NativeSnapshotter]:
    s = NativeSnapshotter(str(tmp_path / "native"))
    yield s
    s.close()


def run(content: ContentStore, snap: NativeSnapshotter, t: Target):  # type: ignore[no-untyped-def]
    return unpack(content=content, snapshotter=snap, snapshotter_name="native", target=desc(t),
                  what="image default/r.io/app:1")


def fs_of(snap: NativeSnapshotter, key: str) -> Path:
    return Path(snap.fs_dir(snap._meta.get(key).id))


@pytest.mark.parametrize("gz", [pytest.param(False, id="tar"), pytest.param(True, id="gzip")])
def test_unpack_commits_each_layer_under_its_chain_id(content: MemoryContentStore,
                                                      snap: NativeSnapshotter, gz: bool) -> None:
    t = make_image(content, BASE, APP, gz=gz)
    result = run(content, snap, t)
    ids = ["sha256:" + hashlib.sha256(x).hexdigest() for x in (BASE, APP)]
    chains = chain_ids(ids)
    assert result.chain_id == chains[-1]
    assert (result.applied, result.skipped) == (2, 0)
    infos = {i.name: i for i in snap.walk()}
    assert set(infos) == set(chains)  # no extract-* snapshot left
    assert infos[chains[1]].parent == chains[0] and infos[chains[1]].kind is Kind.COMMITTED
    top = fs_of(snap, chains[1])
    assert (top / "etc/base").read_bytes() == b"base\n"
    assert os.stat(top / "app/run").st_mode & 0o777 == 0o755
    labels = content.info(config_digest(content, t)).labels
    assert labels["containerd.io/gc.ref.snapshot.native"] == chains[-1]


def test_shared_base_layer_is_unpacked_once(content: MemoryContentStore,
                                            snap: NativeSnapshotter) -> None:
    a = make_image(content, BASE, APP)
    b = make_image(content, BASE, OTHER)
    assert (run(content, snap, a).applied, run(content, snap, b).applied) == (2, 1)
    assert run(content, snap, b).skipped == 2
    names = [i.name for i in snap.walk()]
    assert len(names) == 3  # base once, two tops


@pytest.mark.parametrize(("build", "message"), [
    pytest.param(lambda c: make_image(c, BASE, APP, diff_ids=[
        "sha256:" + hashlib.sha256(BASE).hexdigest(), "sha256:" + "0" * 64]),
        "layer 1 .*: diff ID .* does not match", id="diff-id-mismatch"),
    pytest.param(lambda c: make_image(c, BASE, diff_ids=[]),
                 r"rootfs.diff_ids: want 1 entries", id="diff-id-count"),
    pytest.param(lambda c: make_image(c, BASE, APP, layer_type="application/x-unknown"),
                 "unsupported media type application/x-unknown", id="unknown-layer-type"),
    pytest.param(lambda c: make_image(c, BASE, b"not a tar at all" * 64),
                 "layer 1 .*not a readable tar", id="corrupt-layer"),
])
def test_failed_unpack_leaves_no_active_snapshot(content: MemoryContentStore,
                                                 snap: NativeSnapshotter, build, message) -> None:  # type: ignore[no-untyped-def]
    t = build(content)
    with pytest.raises(UnpackError, match=message) as e:
        run(content, snap, t)
    assert "image default/r.io/app:1" in str(e.value)
    assert [i for i in snap.walk() if i.kind is not Kind.COMMITTED] == []
    assert os.listdir(os.path.join(snap.root, "snapshots")) == [
        str(snap._meta.get(i.name).id) for i in snap.walk()]
    labels = content.info(config_digest(content, t)).labels
    assert "containerd.io/gc.ref.snapshot.native" not in labels


def test_missing_layer_blob_names_the_image(content: MemoryContentStore,
                                            snap: NativeSnapshotter) -> None:
    t = make_image(content, BASE)
    layer_digest = content.info(t.digest).labels["containerd.io/gc.ref.content.l.0"]
    content.delete(layer_digest)
    with pytest.raises(UnpackError, match=f"image default/r.io/app:1: layer 0 .*{layer_digest}"):
        run(content, snap, t)
    assert list(snap.walk()) == []


def test_concurrent_unpacks_of_one_chain_do_not_collide(content: MemoryContentStore,
                                                        snap: NativeSnapshotter) -> None:
    t = make_image(content, BASE, APP)
    errors: list[BaseException] = []
    results = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait()
        try:
            results.append(run(content, snap, t))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert len({r.chain_id for r in results}) == 1
    assert sorted(i.kind.value for i in snap.walk()) == ["committed", "committed"]
    assert sum(r.applied for r in results) >= 2
