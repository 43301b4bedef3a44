"""apply_layer: diff IDs, compression, every file kind and its metadata, whiteouts."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import struct
import tarfile
from pathlib import Path

import pytest

from runtime.service.diff import InvalidLayer, apply_layer
from tests.unit.runtime.service.diff.layers import (
    MTIME,
    device,
    dir,
    fifo,
    file,
    hardlink,
    layer,
    opaque,
    symlink,
    whiteout,
)

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, mknod, trusted.*)")
CAP_NET_BIND_SERVICE = struct.pack("<IIIII", 0x02000000, 1 << 10, 0, 0, 0)


def apply(dest: Path, blob: bytes, fmt: str = "native", media_type: str | None = None) -> str:
    return apply_layer(io.BytesIO(blob), str(dest), media_type=media_type,
                       whiteout_format=fmt).diff_id  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("gz", "media_type"),
    [
        pytest.param(False, None, id="plain"),
        pytest.param(True, None, id="gzip-by-magic"),
        pytest.param(True, "application/vnd.oci.image.layer.v1.tar+gzip", id="gzip-by-type"),
        pytest.param(False, "application/vnd.oci.image.layer.v1.tar", id="plain-by-type"),
    ],
)
def test_diff_id_is_sha256_of_uncompressed_tar(tmp_path: Path, gz: bool,
                                               media_type: str | None) -> None:
    entries = (dir("a"), file("a/f", b"hello" * 1000))
    raw = layer(*entries)
    blob = layer(*entries, gz=gz)
    assert (blob != raw) == gz
    result = apply_layer(io.BytesIO(blob), str(tmp_path), media_type=media_type,
                         whiteout_format="native")
    assert result.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert result.size == len(raw)
    assert (tmp_path / "a/f").read_bytes() == b"hello" * 1000


def test_trailing_bytes_after_the_archive_count(tmp_path: Path) -> None:
    raw = layer(file("f", b"x")) + b"\0" * 1024
    assert apply(tmp_path, raw) == "sha256:" + hashlib.sha256(raw).hexdigest()


@pytest.mark.parametrize(
    ("blob", "media_type", "message"),
    [
        pytest.param(b"this is not a tar", None, "not a readable tar", id="garbage"),
        pytest.param(b"", None, "not a readable tar", id="empty"),
        pytest.param(gzip.compress(b"x" * 2000)[:40], None, "not a readable tar",
                     id="truncated-gzip"),
        pytest.param(b"\x28\xb5\x2f\xfd" + b"\0" * 20, None, "zstd", id="zstd-magic"),
        pytest.param(layer(file("f")), "application/vnd.oci.image.layer.v1.tar+zstd", "zstd",
                     id="zstd-type"),
    ],
)
def test_unreadable_layers(tmp_path: Path, blob: bytes, media_type: str | None,
                           message: str) -> None:
    with pytest.raises(InvalidLayer, match=message):
        apply(tmp_path, blob, media_type=media_type)


@root_only
def test_file_kinds_and_metadata(tmp_path: Path) -> None:
    apply(tmp_path, layer(
        dir("bin", mode=0o755, uid=0, gid=0),
        file("bin/su", b"#!", mode=0o4755, uid=0, gid=0),
        file("bin/wall", b"w", mode=0o2755, uid=0, gid=5),
        dir("tmp", mode=0o1777),
        file("home/u/f", b"mine", mode=0o600, uid=1000, gid=2000, mtime=1234567890.5),
        file("bin/ping", b"p", mode=0o755, xattrs={
            "security.capability": CAP_NET_BIND_SERVICE, "user.note": b"kept",
            "security.selinux": b"system_u:object_r:bin_t:s0",
            "trusted.overlay.opaque": b"y"}),
        hardlink("bin/su2", "bin/su"),
        symlink("bin/sh", "/bin/busybox"),
        device("dev/null", tarfile.CHRTYPE, 1, 3),
        device("dev/loop0", tarfile.BLKTYPE, 7, 0, mode=0o660),
        fifo("run/fifo", mode=0o620),
    ))
    su = os.lstat(tmp_path / "bin/su")
    assert stat.S_IMODE(su.st_mode) == 0o4755  # setuid survives the chown before it
    assert stat.S_IMODE(os.lstat(tmp_path / "bin/wall").st_mode) == 0o2755
    assert os.lstat(tmp_path / "bin/wall").st_gid == 5
    assert stat.S_IMODE(os.lstat(tmp_path / "tmp").st_mode) == 0o1777
    f = os.lstat(tmp_path / "home/u/f")
    assert (f.st_uid, f.st_gid, stat.S_IMODE(f.st_mode)) == (1000, 2000, 0o600)
    assert f.st_mtime_ns == 1234567890_500_000_000
    ping = str(tmp_path / "bin/ping")
    assert os.getxattr(ping, "security.capability") == CAP_NET_BIND_SERVICE
    assert os.getxattr(ping, "user.note") == b"kept"
    assert "security.selinux" not in os.listxattr(ping)
    assert "trusted.overlay.opaque" not in os.listxattr(ping)  # only whiteouts set those
    assert os.lstat(tmp_path / "bin/su2").st_ino == su.st_ino
    assert os.readlink(tmp_path / "bin/sh") == "/bin/busybox"
    null = os.lstat(tmp_path / "dev/null")
    assert stat.S_ISCHR(null.st_mode) and os.major(null.st_rdev) == 1
    assert os.minor(null.st_rdev) == 3 and stat.S_IMODE(null.st_mode) == 0o666
    loop = os.lstat(tmp_path / "dev/loop0")
    assert stat.S_ISBLK(loop.st_mode) and (os.major(loop.st_rdev), os.minor(loop.st_rdev)) == (7, 0)
    run = os.lstat(tmp_path / "run/fifo")
    assert stat.S_ISFIFO(run.st_mode) and stat.S_IMODE(run.st_mode) == 0o620
    assert stat.S_IMODE(os.lstat(tmp_path / "home").st_mode) == 0o755  # implicit parents


def test_directories_get_mode_and_mtime_after_their_contents(tmp_path: Path) -> None:
    apply(tmp_path, layer(dir("ro", mode=0o555), file("ro/inner/f", b"x"), dir("ro/inner",
                                                                                mode=0o500)))
    assert (tmp_path / "ro/inner/f").read_bytes() == b"x"
    ro, inner = os.lstat(tmp_path / "ro"), os.lstat(tmp_path / "ro/inner")
    assert stat.S_IMODE(ro.st_mode) == 0o555 and stat.S_IMODE(inner.st_mode) == 0o500
    assert ro.st_mtime == MTIME and inner.st_mtime == MTIME
    os.chmod(tmp_path / "ro", 0o755)
    os.chmod(tmp_path / "ro/inner", 0o755)  # so tmp_path can be cleaned as any user


@pytest.mark.parametrize(
    ("entries", "kind", "content"),
    [
        pytest.param([file("x", b"1"), file("x", b"2")], "file", b"2", id="file-over-file"),
        pytest.param([dir("x"), file("x/y"), file("x", b"f")], "file", b"f",
                     id="file-over-dir"),
        pytest.param([file("x", b"f"), dir("x"), file("x/y", b"y")], "dir", None,
                     id="dir-over-file"),
        pytest.param([symlink("x", "/nowhere"), file("x", b"f")], "file", b"f",
                     id="file-over-symlink"),
        pytest.param([file("x", b"f"), symlink("x", "y")], "link", None, id="symlink-over-file"),
    ],
)
def test_later_entries_replace_earlier(tmp_path: Path, entries: list[tuple[tarfile.TarInfo,
                                       bytes]], kind: str, content: bytes | None) -> None:
    apply(tmp_path, layer(*entries))
    x = tmp_path / "x"
    assert {"file": x.is_file() and not x.is_symlink(), "dir": x.is_dir(),
            "link": x.is_symlink()}[kind]
    if content is not None:
        assert x.read_bytes() == content


def _tree(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


def test_native_whiteouts_delete_lower_paths(tmp_path: Path) -> None:
    apply(tmp_path, layer(file("etc/keep", b"k"), file("etc/gone", b"g"), dir("etc/gonedir"),
                          file("etc/gonedir/f"), file("opq/a"), dir("opq/sub"), file("opq/sub/b")))
    apply(tmp_path, layer(whiteout("etc/gone"), whiteout("etc/gonedir"), file("opq/new", b"n"),
                          opaque("opq"), file("opq/newer"), whiteout("etc/never-existed")))
    assert _tree(tmp_path) == {"etc", "etc/keep", "opq", "opq/new", "opq/newer"}


@root_only
def test_overlay_whiteouts_are_char_devices_and_xattrs(tmp_path: Path) -> None:
    apply(tmp_path, layer(whiteout("etc/gone"), opaque("opq"), file("opq/new")), "overlay")
    wh = os.lstat(tmp_path / "etc/gone")
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == os.makedev(0, 0)
    assert os.getxattr(tmp_path / "opq", "trusted.overlay.opaque") == b"y"
    assert _tree(tmp_path) == {"etc", "etc/gone", "opq", "opq/new"}  # no .wh.* files


def test_whiteout_format_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="whiteout_format: want 'overlay' or 'native'"):
        apply(tmp_path, layer(file("f")), "aufs")
