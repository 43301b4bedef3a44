"""OverlaySnapshotter: containerd's overlayfs snapshotter.

    root/snapshots/<id>/fs     the snapshot's own changes (a layer's files once committed)
    root/snapshots/<id>/work   overlayfs's workdir for it while active

    prepare(k)            no parent        bind  <k>/fs                        rw
    prepare(k, P)         P = chain p1..pn overlay lowerdir=p1/fs:..:pn/fs (nearest first),
                                                   upperdir=<k>/fs, workdir=<k>/work
    view(k)               no parent        bind  <k>/fs (empty)                ro
    view(k, P)            one layer        bind  p1/fs                         ro
    view(k, P)            several layers   overlay lowerdir=p1/fs:..:pn/fs      (read-only)
    commit(name, k)       <k>/fs becomes the lower layer of name's children: apply a layer
                          into the upperdir, commit under the layer's chain ID, and every
                          image that shares the layer shares the snapshot.
"""

from __future__ import annotations

import os

from runtime.service.snapshots.interface import Kind, Mount
from runtime.service.snapshots.metadata import MetaSnapshotter, Record


def overlay_supported() -> bool:
    """Whether the running kernel knows overlayfs (it may still need root to mount it)."""
    try:
        with open("/proc/filesystems") as f:
            return any(line.split()[-1:] == ["overlay"] for line in f)
    except OSError:
        return False


class OverlaySnapshotter(MetaSnapshotter):
    def _populate(self, new_dir: str, kind: Kind, parents: list[Record]) -> None:
        os.mkdir(os.path.join(new_dir, "fs"))
        os.chmod(os.path.join(new_dir, "fs"), 0o755)  # whatever the umask
        if kind is Kind.ACTIVE:
            os.mkdir(os.path.join(new_dir, "work"), 0o700)

    def _mounts(self, rec: Record, parents: list[Record]) -> list[Mount]:
        if not parents:
            return [Mount("bind", self.fs_dir(rec.id), ("rbind", _rw(rec)))]
        if rec.kind is Kind.VIEW and len(parents) == 1:
            return [Mount("bind", self.fs_dir(parents[0].id), ("rbind", "ro"))]
        lower = "lowerdir=" + ":".join(self.fs_dir(p.id) for p in parents)
        if rec.kind is Kind.VIEW:
            return [Mount("overlay", "overlay", (lower,))]
        work = os.path.join(os.path.dirname(self.fs_dir(rec.id)), "work")
        return [Mount("overlay", "overlay",
                      (f"workdir={work}", f"upperdir={self.fs_dir(rec.id)}", lower))]


def _rw(rec: Record) -> str:
    return "ro" if rec.kind is Kind.VIEW else "rw"
