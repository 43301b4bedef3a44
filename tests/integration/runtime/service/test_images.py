"""The image service end to end, as root: a real registry (docker-registry), FileContentStore,
OverlaySnapshotter with real overlay mounts, tarballs made here with tarfile, and Debian's
containerd importing what we export."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.service.content import FileContentStore
from runtime.service.images import RegistryClient
from runtime.service.images.archive import ArchiveError
from runtime.service.images.service import ImageService
from runtime.service.images.store import ImageNotFound
from runtime.service.snapshots import (
    Kind,
    OverlaySnapshotter,
    mount_all,
    overlay_supported,
    unmount_all,
)
from tests.support import ociimage
from tests.support.registry import Registry

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount overlays"),
    pytest.mark.skipif(not overlay_supported(), reason="the kernel has no overlayfs"),
]
CONTAINERD = shutil.which("containerd")
CTR = shutil.which("ctr")


class Node:
    """One service root: content, overlay snapshots, image records."""

    def __init__(self, root: Path) -> None:
        self.content = FileContentStore(root / "content")
        self.overlay = OverlaySnapshotter(str(root / "snapshots"))
        self.svc = ImageService(str(root / "images"), content=self.content,
                                snapshotters={"overlayfs": self.overlay},
                                default_snapshotter="overlayfs")

    def close(self) -> None:
        self.svc.close()
        self.overlay.close()

    def blobs(self) -> set[str]:
        return {i.digest for i in self.content.walk()}

    def snapshots(self) -> set[str]:
        return {i.name for i in self.overlay.walk()}

    def snapshot_dirs(self) -> list[str]:
        return sorted(os.listdir(os.path.join(self.overlay.root, "snapshots")))


@pytest.fixture
def node(tmp_path: Path, leak_check: None) -> Iterator[Node]:
    n = Node(tmp_path / "node")
    yield n
    n.close()


@pytest.fixture
def registry() -> Iterator[Registry]:
    with Registry() as reg:
        yield reg


async def pull(node: Node, ns: str, ref: str) -> None:
    async with RegistryClient() as client:
        await node.svc.pull(ns, ref, client=client)


def image_blobs(img: ociimage.Image) -> set[str]:
    return {b.digest for b in (img.manifest, img.config, *img.layers)}


@pytest.mark.asyncio
async def test_pull_unpack_and_run_from_the_overlay(node: Node, registry: Registry,
                                                    tmp_path: Path) -> None:
    img = ociimage.image()
    ociimage.push(registry.url, "lib/busybox", "1", img)
    await pull(node, "default", f"{registry.host}/lib/busybox:1")
    rec = node.svc.get("default", f"{registry.host}/lib/busybox:1")
    assert rec.target.digest == img.manifest.digest
    chain = rec.labels["io.corral.image.unpacked.overlayfs"]
    assert node.content.info(img.config.digest).labels[
        "containerd.io/gc.ref.snapshot.overlayfs"] == chain
    assert node.overlay.stat(chain).kind is Kind.COMMITTED
    mnt = tmp_path / "rootfs"
    mnt.mkdir()
    mount_all(node.overlay.prepare("ctr-1", chain), str(mnt))
    try:
        out = subprocess.run(["chroot", str(mnt), "/bin/sh", "-c", "echo hi > /new; ls /bin"],
                             check=True, capture_output=True, text=True).stdout
    finally:
        unmount_all(str(mnt))
    assert "busybox" in out.split()
    node.overlay.remove("ctr-1")
    assert node.svc.usage("default", rec.name).content_bytes == sum(
        b.size for b in (img.manifest, img.config, *img.layers))


@pytest.mark.asyncio
async def test_shared_layer_is_stored_once_and_gc_frees_exactly_the_unshared(
        node: Node, registry: Registry) -> None:
    a = ociimage.image()
    b = ociimage.image(extra_env=("B=1",))  # same layer, another config
    ociimage.push(registry.url, "lib/a", "1", a)
    ociimage.push(registry.url, "lib/b", "1", b)
    await pull(node, "default", f"{registry.host}/lib/a:1")
    await pull(node, "default", f"{registry.host}/lib/b:1")
    assert node.blobs() == image_blobs(a) | image_blobs(b)
    assert len(node.snapshots()) == 1 and len(node.snapshot_dirs()) == 1

    node.svc.remove("default", f"{registry.host}/lib/b:1")
    result = node.svc.gc()
    assert set(result.blobs) == image_blobs(b) - image_blobs(a)
    assert result.snapshots == ()
    assert node.blobs() == image_blobs(a)

    chain = next(iter(node.snapshots()))
    node.svc.remove("default", f"{registry.host}/lib/a:1")
    result = node.svc.gc()
    assert set(result.blobs) == image_blobs(a)
    assert result.snapshots == (("overlayfs", chain),)
    assert result.bytes_freed >= sum(x.size for x in (a.manifest, a.config, *a.layers))
    assert node.blobs() == set() and node.snapshot_dirs() == []


@pytest.mark.asyncio
async def test_tag_remove_and_namespaces(node: Node, registry: Registry) -> None:
    img = ociimage.image()
    ociimage.push(registry.url, "lib/busybox", "1", img)
    name = f"{registry.host}/lib/busybox:1"
    await pull(node, "team-a", name)
    node.svc.tag("team-a", name, f"{registry.host}/lib/busybox:stable")
    assert [i.name for i in node.svc.list("team-a")] == [name, f"{registry.host}/lib/busybox:stable"]
    assert node.svc.list("team-b") == []
    with pytest.raises(ImageNotFound, match=f"image team-b/{name}: not found"):
        node.svc.get("team-b", name)
    node.svc.remove("team-a", name)
    assert node.svc.get("team-a", f"{registry.host}/lib/busybox:stable").target.digest == \
        img.manifest.digest
    assert node.svc.gc().blobs == ()  # the tag still holds every blob
    assert node.blobs() == image_blobs(img)


def _tar(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        for name, target in (links or {}).items():
            ti = tarfile.TarInfo(name)
            ti.type, ti.linkname = tarfile.SYMTYPE, target
            tf.addfile(ti)
    return buf.getvalue()


def oci_layout(img: ociimage.Image, name: str) -> bytes:
    index = {"schemaVersion": 2, "manifests": [img.manifest.descriptor(
        annotations={"io.containerd.image.name": name})]}
    members = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}',
               "index.json": json.dumps(index).encode()}
    for b in (img.manifest, img.config, *img.layers):
        members[f"blobs/sha256/{b.digest.split(':')[1]}"] = b.data
    return _tar(members)


def docker_save(name: str) -> bytes:
    cfg = ociimage.config_blob(docker=True).data
    h = hashlib.sha256(cfg).hexdigest()
    manifest = [{"Config": f"{h}.json", "RepoTags": [name], "Layers": ["l1/layer.tar"]}]
    return _tar({f"{h}.json": cfg, "l1/layer.tar": ociimage.layer_tar(), "l1/VERSION": b"1.0",
                 "manifest.json": json.dumps(manifest).encode()})


@pytest.mark.parametrize("kind", [pytest.param("oci", id="oci-layout"),
                                  pytest.param("docker", id="docker-save")])
def test_import_tarballs(node: Node, tmp_path: Path, kind: str) -> None:
    name = "127.0.0.1:5000/lib/imported:1"
    data = oci_layout(ociimage.image(), name) if kind == "oci" else docker_save(name)
    path = tmp_path / "image.tar"
    path.write_bytes(data)
    assert node.svc.import_("default", str(path)) == [name]
    rec = node.svc.get("default", name)
    chain = rec.labels["io.corral.image.unpacked.overlayfs"]
    fs = Path(node.overlay.fs_dir(node.overlay._meta.get(chain).id))
    assert (fs / "bin/busybox").read_bytes() == Path(ociimage.BUSYBOX).read_bytes()
    assert os.readlink(fs / "bin/sh") == "busybox"


def test_export_then_import_round_trip(node: Node, tmp_path: Path) -> None:
    name = "127.0.0.1:5000/lib/round:1"
    node.svc.import_("default", io.BytesIO(docker_save(name)))
    out = tmp_path / "export.tar"
    with open(out, "wb") as f:
        node.svc.export("default", [name], f)
    other = Node(tmp_path / "other")
    try:
        assert other.svc.import_("ns2", str(out)) == [name]
        assert other.svc.get("ns2", name).target == node.svc.get("default", name).target
        assert other.blobs() == node.blobs()
        assert other.snapshots() == node.snapshots()
    finally:
        other.close()


def _mismatched_layout(img: ociimage.Image) -> bytes:
    """An OCI layout whose layer file holds other bytes than its name says."""
    good = oci_layout(img, "r.io/x:1")
    members = {}
    with tarfile.open(fileobj=io.BytesIO(good)) as tf:
        for m in tf.getmembers():
            members[m.name] = tf.extractfile(m).read()  # type: ignore[union-attr]
    path = f"blobs/sha256/{img.layers[0].digest.split(':')[1]}"
    data = bytearray(members[path])
    data[len(data) // 2] ^= 0xFF
    members[path] = bytes(data)
    return _tar(members)


@pytest.mark.parametrize(("make", "message"), [
    pytest.param(lambda img: _tar({"../escape": b"x"}), r"'\.\./escape'", id="escaping-entry"),
    pytest.param(lambda img: _tar({"oci-layout": b"{}"}, {"index.json": "/etc/passwd"}),
                 "symlink to an absolute path", id="escaping-symlink"),
    pytest.param(_mismatched_layout,
                 "expected sha256", id="mismatched-blob"),
    pytest.param(lambda img: oci_layout(ociimage.image(layer_media_type="application/x-zip"),
                                        "r.io/x:1"),
                 "unsupported media type application/x-zip", id="unknown-media-type"),
])
def test_bad_tarballs_leave_no_image(node: Node, make, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ArchiveError, match=message):
        node.svc.import_("default", io.BytesIO(make(ociimage.image())))
    assert node.svc.list("default") == []
    assert node.content.ingests() == []
    node.svc.gc()
    assert node.blobs() == set() and node.snapshots() == set()


@pytest.fixture
def containerd(tmp_path: Path, tag: str) -> Iterator[str]:
    if CONTAINERD is None or CTR is None:
        pytest.skip("containerd / ctr are not installed (Debian package containerd)")
    base = tmp_path / tag
    base.mkdir()
    short = tempfile.mkdtemp(prefix=f"{tag}-", dir="/tmp")  # unix socket paths are short
    sock = os.path.join(short, "c.sock")
    config = base / "config.toml"
    config.write_text("\n".join([
        "version = 2", f'root = "{base}/root"', f'state = "{base}/state"',
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
        "[grpc]", f'  address = "{sock}"', "[ttrpc]", f'  address = "{sock}.ttrpc"',
        "[debug]", '  address = ""', "[metrics]", '  address = ""',
        '[plugins."io.containerd.internal.v1.opt"]', f'  path = "{base}/opt"', ""]))
    log = open(base / "containerd.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([CONTAINERD, "--config", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(sock):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("containerd did not start: "
                            + (base / "containerd.log").read_text()[-2000:])
            time.sleep(0.1)
        yield sock
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(short, ignore_errors=True)


def test_containerd_imports_our_export(node: Node, tmp_path: Path, containerd: str) -> None:
    name = "127.0.0.1:5000/lib/forctr:1"
    node.svc.import_("default", io.BytesIO(docker_save(name)))
    out = tmp_path / "export.tar"
    with open(out, "wb") as f:
        node.svc.export("default", [name], f)
    assert CTR is not None
    ctr = [CTR, "--address", containerd, "--namespace", "corral-test"]
    r = subprocess.run([*ctr, "images", "import", str(out)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    listed = subprocess.run([*ctr, "images", "ls", "-q"], capture_output=True, text=True,
                            check=True).stdout.split()
    assert name in listed
    check = subprocess.run([*ctr, "images", "check"], capture_output=True, text=True,
                           check=True).stdout
    assert "complete" in check and node.svc.get("default", name).target.digest in check
