"""NativeSnapshotter: containerd's ``native`` snapshotter: every snapshot is a full copy.

    root/snapshots/<id>/fs     the whole tree: prepare/view copy the parent's fs (owners,
                               modes, xattrs, hard links, devices, fifos, symlinks, times)
    prepare(k[, P]) / view(k[, P])   bind <k>/fs, rw / ro

Costs a copy per snapshot; works on every filesystem, without overlayfs (rootless, nested,
some kernels), and is the second implementation the conformance suite runs against.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat

from runtime.service.snapshots.interface import Kind, Mount
from runtime.service.snapshots.metadata import MetaSnapshotter, Record


def _copy_xattrs(src: str, dst: str) -> None:
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.ENOTSUP):
            return
        raise
    for name in names:
        try:
            os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False),
                        follow_symlinks=False)
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.ENOTSUP, errno.EPERM):
                raise


def _copy_meta(src: str, dst: str, st: os.stat_result, *, chown: bool) -> None:
    if chown:
        os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    _copy_xattrs(src, dst)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def copy_tree(src: str, dst: str) -> None:
    """Copy the directory tree SRC to DST (which must not exist) with everything a rootfs
    needs; symlinks are copied, never followed; hard links stay hard links."""
    chown = os.geteuid() == 0
    links: dict[tuple[int, int], str] = {}
    dirs: list[tuple[str, str, os.stat_result]] = []
    stack = [(src, dst)]
    while stack:
        s, d = stack.pop()
        st = os.lstat(s)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            os.mkdir(d, 0o700)
            dirs.append((s, d, st))
            stack.extend((os.path.join(s, n), os.path.join(d, n)) for n in os.listdir(s))
            continue
        if st.st_nlink > 1 and (st.st_dev, st.st_ino) in links:
            os.link(links[(st.st_dev, st.st_ino)], d, follow_symlinks=False)
            continue
        if stat.S_ISREG(mode):
            shutil.copyfile(s, d, follow_symlinks=False)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(s), d)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
            os.mknod(d, stat.S_IFMT(mode) | 0o600, st.st_rdev)
        else:  # a socket: not part of a filesystem image
            continue
        _copy_meta(s, d, st, chown=chown)
        if st.st_nlink > 1:
            links[(st.st_dev, st.st_ino)] = d
    for s, d, st in reversed(dirs):  # after their contents: modes and mtimes stick
        _copy_meta(s, d, st, chown=chown)


class NativeSnapshotter(MetaSnapshotter):
    def _populate(self, new_dir: str, kind: Kind, parents: list[Record]) -> None:
        fs = os.path.join(new_dir, "fs")
        if parents:
            copy_tree(self.fs_dir(parents[0].id), fs)
        else:
            os.mkdir(fs)
            os.chmod(fs, 0o755)  # whatever the umask

    def _mounts(self, rec: Record, parents: list[Record]) -> list[Mount]:
        return [Mount("bind", self.fs_dir(rec.id),
                      ("rbind", "ro" if rec.kind is Kind.VIEW else "rw"))]
