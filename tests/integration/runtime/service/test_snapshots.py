"""The mounting half of the snapshotter conformance suite, as root, with real bind and
overlay mounts: what a container sees through a snapshot, and what stays untouched below."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from runtime.service.snapshots import (
    MetaSnapshotter,
    Mount,
    layer_target,
    mount_all,
    overlay_supported,
    unmount_all,
)
from tests.unit.runtime.service.snapshots.conftest import MAKERS

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


@contextmanager
def mounted(mounts: list[Mount], target: Path) -> Iterator[Path]:
    target.mkdir(parents=True, exist_ok=True)
    mount_all(mounts, str(target))
    try:
        yield target
    finally:
        unmount_all(str(target))


def test_layers_stack_and_lower_layers_stay_untouched(snapshotter: MetaSnapshotter,
                                                      tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    with mounted(snapshotter.prepare("e0"), mnt) as root:
        (root / "etc").mkdir()
        (root / "etc/base").write_text("base\n")
        (root / "etc/gone").write_text("doomed\n")
        (root / "dir").mkdir()
        (root / "dir/inner").write_text("inner\n")
    snapshotter.commit("l0", "e0")

    with mounted(snapshotter.prepare("c", "l0"), mnt) as root:
        assert (root / "etc/base").read_text() == "base\n"  # the parent shows through
        (root / "etc/base").write_text("changed\n")  # copy-up
        (root / "etc/gone").unlink()  # a whiteout, for overlay
        (root / "dir/inner").unlink()
        (root / "dir").rmdir()
        (root / "new").write_text("new\n")
        assert sorted(os.listdir(root)) == ["etc", "new"]
    with mounted(snapshotter.mounts("c"), mnt) as root:  # the same writable tree again
        assert (root / "etc/base").read_text() == "changed\n"
        assert sorted(os.listdir(root / "etc")) == ["base"]

    with mounted(snapshotter.view("v0", "l0"), tmp_path / "v0") as lower:
        assert (lower / "etc/base").read_text() == "base\n"
        assert sorted(os.listdir(lower / "etc")) == ["base", "gone"]
        assert (lower / "dir/inner").read_text() == "inner\n"
        assert not (lower / "new").exists()

    snapshotter.commit("l1", "c")
    with mounted(snapshotter.view("v1", "l1"), tmp_path / "v1") as top:
        assert sorted(os.listdir(top)) == ["etc", "new"]
        assert sorted(os.listdir(top / "etc")) == ["base"]
        assert (top / "etc/base").read_text() == "changed\n"


def test_views_are_read_only(snapshotter: MetaSnapshotter, tmp_path: Path) -> None:
    target, _ = layer_target(snapshotter.prepare("e0"))
    Path(target, "f").write_text("f")
    snapshotter.commit("l0", "e0")
    snapshotter.prepare("e1", "l0")
    snapshotter.commit("l1", "e1")
    for i, parent in enumerate(["l0", "l1", None]):
        with mounted(snapshotter.view(f"v{i}", parent), tmp_path / f"v{i}") as root:
            if parent:
                assert (root / "f").read_text() == "f"
            with pytest.raises(OSError) as err:
                (root / "g").write_text("g")
            assert err.value.errno == errno.EROFS


def test_two_containers_on_one_image_do_not_see_each_other(snapshotter: MetaSnapshotter,
                                                           tmp_path: Path) -> None:
    target, _ = layer_target(snapshotter.prepare("e0"))
    Path(target, "shared").write_text("image\n")
    snapshotter.commit("image", "e0")
    with (mounted(snapshotter.prepare("a", "image"), tmp_path / "a") as a,
          mounted(snapshotter.prepare("b", "image"), tmp_path / "b") as b):
        (a / "shared").write_text("a wrote\n")
        (a / "only-a").write_text("a\n")
        assert (b / "shared").read_text() == "image\n"
        assert not (b / "only-a").exists()
    snapshotter.remove("a")
    snapshotter.remove("b")
    snapshotter.remove("image")
    assert list(snapshotter.walk()) == []


def test_mount_command_line_makes_the_same_mount(snapshotter: MetaSnapshotter,
                                                 tmp_path: Path) -> None:
    target, _ = layer_target(snapshotter.prepare("e0"))
    Path(target, "f").write_text("via mount(8)\n")
    snapshotter.commit("l0", "e0")
    mounts = snapshotter.prepare("c", "l0")
    mnt = tmp_path / "cmd"
    mnt.mkdir()
    subprocess.run(mounts[0].command(str(mnt)), check=True, capture_output=True)
    try:
        assert (mnt / "f").read_text() == "via mount(8)\n"
        (mnt / "g").write_text("written\n")
    finally:
        unmount_all(str(mnt))
    assert Path(layer_target(mounts)[0], "g").read_text() == "written\n"
