"""copy_tree: the native snapshotter's copy keeps everything a rootfs needs."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from runtime.service.snapshots import copy_tree


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, mknod)")
def test_copy_keeps_owners_modes_xattrs_links_devices(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "ro").mkdir(parents=True)
    (src / "ro/f").write_bytes(b"data")
    os.chown(src / "ro/f", 1000, 2000)
    os.chmod(src / "ro/f", 0o4750)
    os.setxattr(src / "ro/f", "user.note", b"kept")
    os.link(src / "ro/f", src / "hard")
    os.symlink("/outside/never/followed", src / "link")
    os.mknod(src / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.chmod(src / "null", 0o666)  # mknod is subject to the umask
    os.mkfifo(src / "fifo", 0o620)
    os.chmod(src / "ro", 0o555)
    os.utime(src / "ro", ns=(10**18, 10**18))

    copy_tree(str(src), str(dst))

    f = os.lstat(dst / "ro/f")
    assert (f.st_uid, f.st_gid, stat.S_IMODE(f.st_mode)) == (1000, 2000, 0o4750)
    assert (dst / "ro/f").read_bytes() == b"data"
    assert os.getxattr(dst / "ro/f", "user.note") == b"kept"
    assert os.lstat(dst / "hard").st_ino == f.st_ino and f.st_nlink == 2
    assert os.readlink(dst / "link") == "/outside/never/followed"
    null = os.lstat(dst / "null")
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
    assert stat.S_IMODE(null.st_mode) == 0o666
    assert stat.S_ISFIFO(os.lstat(dst / "fifo").st_mode)
    ro = os.lstat(dst / "ro")
    assert stat.S_IMODE(ro.st_mode) == 0o555 and ro.st_mtime_ns == 10**18
    assert os.lstat(src / "ro/f").st_ino != f.st_ino  # a copy, not the same inode
