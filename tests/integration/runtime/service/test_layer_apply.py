"""Layers unpacked into snapshots the way the image service will do it (prepare, apply,
commit under the chain ID), then seen through a real mount: whiteouts and opaque dirs across
layers, metadata, busybox running on the result."""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.service.diff import ApplyResult, apply_layer, chain_ids
from runtime.service.snapshots import (
    MetaSnapshotter,
    NotFound,
    layer_target,
    mount_all,
    overlay_supported,
    unmount_all,
)
from tests.unit.runtime.service.diff.layers import (
    Entry,
    device,
    dir,
    file,
    layer,
    opaque,
    symlink,
    whiteout,
)
from tests.unit.runtime.service.snapshots.conftest import MAKERS

BUSYBOX = "/bin/busybox"
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount"),
    pytest.mark.skipif(not overlay_supported(), reason="the kernel has no overlayfs"),
]


@pytest.fixture(params=[pytest.param(name, id=name) for name in MAKERS])
def snapshotter(request: pytest.FixtureRequest, tmp_path: Path,
                leak_check: None) -> Iterator[MetaSnapshotter]:
    s = MAKERS[request.param](str(tmp_path / "snapshotter"))
    yield s
    s.close()


def unpack(s: MetaSnapshotter, blobs: list[bytes]) -> tuple[str, list[ApplyResult]]:
    """Apply BLOBS bottom-up as committed snapshots named by chain ID; the top chain ID."""
    results: list[ApplyResult] = []
    parent: str | None = None
    for blob in blobs:
        key = f"extract-{len(results)}"
        target, fmt = layer_target(s.prepare(key, parent))
        try:
            results.append(apply_layer(io.BytesIO(blob), target,
                                       whiteout_format=fmt))  # type: ignore[arg-type]
        except BaseException:
            s.remove(key)
            raise
        name = chain_ids([r.diff_id for r in results])[-1]
        try:
            s.stat(name)
            s.remove(key)  # already unpacked by another image: shared
        except NotFound:
            s.commit(name, key)
        parent = name
    assert parent is not None
    return parent, results


def busybox_layer() -> bytes:
    with open(BUSYBOX, "rb") as f:
        data = f.read()
    return layer(dir("bin"), file("bin/busybox", data, mode=0o755),
                 symlink("bin/sh", "busybox"), symlink("bin/cat", "busybox"),
                 symlink("bin/ls", "busybox"))


BASE: list[Entry] = [
    dir("etc"), file("etc/keep", b"keep\n"), file("etc/gone", b"gone\n"),
    dir("etc/gonedir"), file("etc/gonedir/f", b"f"),
    dir("opq", mode=0o750), file("opq/a", b"a"), dir("opq/sub"), file("opq/sub/b", b"b"),
    dir("tmp", mode=0o1777), file("usr/bin/su", b"su", mode=0o4755),
    file("home/user/file", b"mine\n", mode=0o600, uid=1000, gid=1000),
    device("dev/null", tarfile.CHRTYPE, 1, 3),
]
TOP: list[Entry] = [
    dir("etc"), whiteout("etc/gone"), whiteout("etc/gonedir"),
    dir("opq", mode=0o750), opaque("opq"), file("opq/new", b"new\n"),
    file("etc/added", b"added\n"),
]


def test_whiteouts_and_opaque_dirs_through_a_mount(snapshotter: MetaSnapshotter,
                                                   tmp_path: Path) -> None:
    top, results = unpack(snapshotter, [busybox_layer(), layer(*BASE), layer(*TOP, gz=True)])
    mnt = tmp_path / "rootfs"
    mnt.mkdir()
    mount_all(snapshotter.prepare("container", top), str(mnt))
    try:
        assert sorted(os.listdir(mnt / "etc")) == ["added", "keep"]
        assert not os.path.lexists(mnt / "etc/gone")
        assert sorted(os.listdir(mnt / "opq")) == ["new"]  # the opaque dir hides a and sub
        assert stat.S_IMODE(os.stat(mnt / "opq").st_mode) == 0o750
        assert stat.S_IMODE(os.stat(mnt / "tmp").st_mode) == 0o1777
        assert stat.S_IMODE(os.stat(mnt / "usr/bin/su").st_mode) == 0o4755
        home = os.stat(mnt / "home/user/file")
        assert (home.st_uid, home.st_gid, stat.S_IMODE(home.st_mode)) == (1000, 1000, 0o600)
        null = os.stat(mnt / "dev/null")
        assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
        out = subprocess.run(["chroot", str(mnt), "/bin/sh", "-c",
                              "cat /etc/keep /opq/new; ls /etc; echo hi > /etc/written"],
                             check=True, capture_output=True, text=True, timeout=10)
        assert out.stdout == "keep\nnew\nadded\nkeep\n"
        assert (mnt / "etc/written").read_text() == "hi\n"
    finally:
        unmount_all(str(mnt))
    # the layer below the whiteouts still has everything
    base_id = chain_ids([r.diff_id for r in results[:2]])[-1]
    view = tmp_path / "base"
    view.mkdir()
    mount_all(snapshotter.view("base-view", base_id), str(view))
    try:
        assert sorted(os.listdir(view / "etc")) == ["gone", "gonedir", "keep"]
        assert sorted(os.listdir(view / "opq")) == ["a", "sub"]
        assert not (view / "etc/written").exists()
    finally:
        unmount_all(str(view))


def test_images_sharing_a_layer_store_it_once(snapshotter: MetaSnapshotter) -> None:
    base = layer(*BASE)
    top1, r1 = unpack(snapshotter, [base, layer(file("one", b"1"))])
    top2, r2 = unpack(snapshotter, [base, layer(file("two", b"2"))])
    assert r1[0].diff_id == r2[0].diff_id and top1 != top2
    names = sorted(i.name for i in snapshotter.walk())
    assert names == sorted({r1[0].diff_id, top1, top2})  # three snapshots, not four
    assert snapshotter.stat(top1).parent == snapshotter.stat(top2).parent == r1[0].diff_id


def test_a_refused_layer_leaves_no_snapshot(snapshotter: MetaSnapshotter,
                                            tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    evil = layer(symlink("x", str(outside)), file("x/pwned", b"!"))
    with pytest.raises(Exception, match="layer entry 'x/pwned'"):
        unpack(snapshotter, [evil])
    assert list(snapshotter.walk()) == []
    assert os.listdir(outside) == []


def test_chroot_tool_is_there() -> None:
    assert shutil.which("chroot"), "coreutils chroot is needed by these tests"
