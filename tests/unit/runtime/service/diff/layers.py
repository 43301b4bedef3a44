"""Build layer tars for tests: ``layer(file("a", b"x"), dir("d"), whiteout("b"), ...)``."""

from __future__ import annotations

import gzip
import io
import tarfile

Entry = tuple[tarfile.TarInfo, bytes]
MTIME = 1_600_000_000


def _info(name: str, kind: bytes, *, mode: int, uid: int = 0, gid: int = 0,
          mtime: float = MTIME, xattrs: dict[str, bytes] | None = None) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.uid, ti.gid = uid, gid
    ti.mtime = mtime
    if xattrs:
        ti.pax_headers = {f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape")
                          for k, v in xattrs.items()}
    return ti


def file(name: str, data: bytes = b"", *, mode: int = 0o644, **kw: object) -> Entry:
    ti = _info(name, tarfile.REGTYPE, mode=mode, **kw)  # type: ignore[arg-type]
    ti.size = len(data)
    return ti, data


def dir(name: str, *, mode: int = 0o755, **kw: object) -> Entry:
    return _info(name, tarfile.DIRTYPE, mode=mode, **kw), b""  # type: ignore[arg-type]


def symlink(name: str, target: str) -> Entry:
    ti = _info(name, tarfile.SYMTYPE, mode=0o777)
    ti.linkname = target
    return ti, b""


def hardlink(name: str, target: str) -> Entry:
    ti = _info(name, tarfile.LNKTYPE, mode=0o644)
    ti.linkname = target
    return ti, b""


def device(name: str, kind: bytes, major: int, minor: int, *, mode: int = 0o666) -> Entry:
    ti = _info(name, kind, mode=mode)
    ti.devmajor, ti.devminor = major, minor
    return ti, b""


def fifo(name: str, *, mode: int = 0o600) -> Entry:
    return _info(name, tarfile.FIFOTYPE, mode=mode), b""


def whiteout(path: str) -> Entry:
    parent, _, base = path.rpartition("/")
    return file(f"{parent}/.wh.{base}" if parent else f".wh.{base}")


def opaque(directory: str) -> Entry:
    return file(f"{directory}/.wh..wh..opq")


def layer(*entries: Entry, gz: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in entries:
            tf.addfile(ti, io.BytesIO(data) if ti.isreg() else None)
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0) if gz else raw
