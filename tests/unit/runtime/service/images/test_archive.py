"""Import and export of OCI layout and docker-save tarballs (MemoryContentStore)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable

import pytest

from runtime.service.content import MemoryContentStore
from runtime.service.images.archive import ArchiveError, export_archive, import_archive
from runtime.service.images.mediatypes import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST
from runtime.service.images.store import Target
from tests.unit.runtime.service.images.test_unpack import APP, BASE, make_image

Member = tuple[tarfile.TarInfo, bytes]


def reg(name: str, data: bytes) -> Member:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    return ti, data


def link(name: str, target: str, *, hard: bool = False) -> Member:
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    ti.linkname = target
    return ti, b""


def tar(*members: Member) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in members:
            tf.addfile(ti, io.BytesIO(data) if ti.isreg() else None)
    buf.seek(0)
    return buf


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob(data: bytes) -> Member:
    return reg(f"blobs/sha256/{hashlib.sha256(data).hexdigest()}", data)


def oci_parts(*, layer_type: str = OCI_LAYER, annotations: dict[str, str] | None = None,
              layer_bytes: bytes = BASE) -> tuple[list[Member], bytes, bytes]:
    """The members of a one-image OCI layout, its manifest and its layer."""
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [sha(BASE)]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha(config), "size": len(config)},
        "layers": [{"mediaType": layer_type, "digest": sha(BASE), "size": len(BASE)}]}).encode()
    index = json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": OCI_MANIFEST, "digest": sha(manifest), "size": len(manifest),
        "annotations": annotations if annotations is not None else {
            "io.containerd.image.name": "r.io/lib/app:1"}}]}).encode()
    members = [reg("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), reg("index.json", index),
               blob(config), blob(manifest),
               reg(f"blobs/sha256/{hashlib.sha256(BASE).hexdigest()}", layer_bytes)]
    return members, manifest, BASE


def docker_save() -> io.BytesIO:
    """A legacy `docker save`: <id>/layer.tar (the second image's shared layer a symlink),
    <hex>.json configs, manifest.json."""
    def config(*layers: bytes) -> bytes:
        return json.dumps({"architecture": "amd64", "os": "linux",
                           "rootfs": {"type": "layers", "diff_ids": [sha(x) for x in layers]}}
                          ).encode()
    c1, c2 = config(BASE), config(BASE, APP)
    h1, h2 = hashlib.sha256(c1).hexdigest(), hashlib.sha256(c2).hexdigest()
    manifest = json.dumps([
        {"Config": f"{h1}.json", "RepoTags": ["lib/base:1"], "Layers": ["aaa/layer.tar"]},
        {"Config": f"{h2}.json", "RepoTags": ["r.io/lib/app:2", "lib/app:latest"],
         "Layers": ["bbb/layer.tar", "ccc/layer.tar"]},
    ]).encode()
    return tar(reg("aaa/VERSION", b"1.0"), reg("aaa/layer.tar", BASE),
               link("bbb/layer.tar", "../aaa/layer.tar"), reg("ccc/layer.tar", APP),
               reg(f"{h1}.json", c1), reg(f"{h2}.json", c2), reg("manifest.json", manifest))


@pytest.mark.parametrize(("annotations", "base_name", "want"), [
    pytest.param({"io.containerd.image.name": "r.io/lib/app:1"}, None, ["r.io/lib/app:1"],
                 id="containerd-name"),
    pytest.param({"org.opencontainers.image.ref.name": "r.io/lib/app:3"}, None,
                 ["r.io/lib/app:3"], id="oci-ref-name-full"),
    pytest.param({"org.opencontainers.image.ref.name": "7"}, "r.io/lib/app", ["r.io/lib/app:7"],
                 id="oci-ref-name-tag-plus-base"),
])
def test_import_oci_layout(annotations: dict[str, str], base_name: str | None,
                           want: list[str]) -> None:
    store = MemoryContentStore()
    members, manifest, _ = oci_parts(annotations=annotations)
    got = import_archive(tar(*members), content=store, base_name=base_name)
    assert [i.name for i in got] == want
    assert got[0].target == Target(OCI_MANIFEST, sha(manifest), len(manifest))
    labels = store.info(sha(manifest)).labels
    assert labels["containerd.io/gc.ref.content.l.0"] == sha(BASE)
    assert store.read(sha(BASE)) == BASE
    assert store.ingests() == []


def test_import_docker_save_converts_to_oci_manifests() -> None:
    store = MemoryContentStore()
    got = import_archive(docker_save(), content=store, default_registry="r.io")
    assert [i.name for i in got] == ["r.io/lib/base:1", "r.io/lib/app:2", "r.io/lib/app:latest"]
    app = json.loads(store.read(got[1].target.digest))
    assert app["mediaType"] == OCI_MANIFEST
    assert [x["digest"] for x in app["layers"]] == [sha(BASE), sha(APP)]
    assert got[1].target == got[2].target
    assert store.info(got[1].target.digest).labels["containerd.io/gc.ref.content.l.1"] == sha(APP)


def test_docker_save_short_names_need_a_default_registry() -> None:
    with pytest.raises(ArchiveError, match=r"manifest.json.*image name 'lib/base:1'"):
        import_archive(docker_save(), content=MemoryContentStore())


def test_export_then_import_round_trip() -> None:
    src = MemoryContentStore()
    a = make_image(src, BASE, APP, gz=True)
    b = make_image(src, BASE)
    out = io.BytesIO()
    export_archive(out, [("r.io/lib/app:1", a), ("r.io/lib/base:1", b)], content=src)
    out.seek(0)
    with tarfile.open(fileobj=out) as tf:
        names = set(tf.getnames())
        docker = json.loads(tf.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert {"oci-layout", "index.json", "manifest.json"} <= names
    assert [d["RepoTags"] for d in docker] == [["r.io/lib/app:1"], ["r.io/lib/base:1"]]
    assert all(n in names for d in docker for n in d["Layers"])
    out.seek(0)
    dst = MemoryContentStore()
    got = import_archive(out, content=dst)
    assert [(i.name, i.target) for i in got] == [("r.io/lib/app:1", a), ("r.io/lib/base:1", b)]
    assert {i.digest for i in dst.walk()} == {i.digest for i in src.walk()}


def _oci_with(mutate: Callable[[list[Member]], list[Member]]) -> io.BytesIO:
    members, _, _ = oci_parts()
    return tar(*mutate(members))


@pytest.mark.parametrize(("archive", "message"), [
    pytest.param(lambda: _oci_with(lambda m: [*m, reg("../evil", b"x")]),
                 r"entry '\.\./evil': path has a '\.\.' component", id="dotdot"),
    pytest.param(lambda: _oci_with(lambda m: [*m, reg("/etc/evil", b"x")]),
                 r"entry '/etc/evil': absolute path", id="absolute"),
    pytest.param(lambda: _oci_with(lambda m: [*m, link("blobs/x", "../../etc/passwd")]),
                 r"entry 'blobs/x': symlink .* points outside", id="symlink-out"),
    pytest.param(lambda: _oci_with(lambda m: [*m, link("blobs/y", "/etc/passwd")]),
                 r"entry 'blobs/y': symlink to an absolute path", id="symlink-absolute"),
    pytest.param(lambda: _oci_with(lambda m: [*m, link("blobs/z", "../x", hard=True)]),
                 r"entry 'blobs/z': path has a '\.\.' component", id="hardlink-out"),
    pytest.param(lambda: tar(*oci_parts(layer_bytes=BASE[:-1] + b"!")[0]),
                 r"entry 'blobs/sha256/.*': .*expected sha256", id="blob-digest-mismatch"),
    pytest.param(lambda: tar(*oci_parts(layer_type="application/x-made-up")[0]),
                 r"entry 'blobs/sha256/.*': layer .*unsupported media type application/x-made",
                 id="unknown-layer-media-type"),
    pytest.param(lambda: _oci_with(lambda m: [m[0], reg("index.json", json.dumps(
        {"manifests": [{"mediaType": "application/x-other", "digest": sha(b""), "size": 0}]}
    ).encode()), *m[2:]]), r"entry 'index.json': .*unsupported media type application/x-other",
                 id="unknown-index-media-type"),
    pytest.param(lambda: _oci_with(lambda m: m[:-1]),
                 r"entry 'blobs/sha256/.*': missing from the archive", id="missing-blob"),
    pytest.param(lambda: io.BytesIO(b"no tar here" * 100), r"not a readable tar", id="not-tar"),
    pytest.param(lambda: tar(reg("hello", b"x")), r"neither an OCI layout", id="no-index"),
    pytest.param(lambda: tar(*oci_parts(annotations={})[0]), r"no named image",
                 id="unnamed"),
])
def test_bad_archives_are_refused(archive: Callable[[], io.BytesIO], message: str) -> None:
    store = MemoryContentStore()
    with pytest.raises(ArchiveError, match=message):
        import_archive(archive(), content=store)
    assert store.ingests() == []
    for info in store.walk():  # nothing committed that claims to be what it is not
        assert sha(store.read(info.digest)) == info.digest
