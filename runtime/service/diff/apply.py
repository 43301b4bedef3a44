"""Apply one OCI layer (a tar changeset, image-spec layer.md) to a directory, safely.

    blob ──gzip? (magic 1f 8b, or a "+gzip" media type)──► tar bytes ──sha256──► diff ID
                                                              │
                                                  entry by entry (streamed, never buffered)
                                                              ▼
        name ── clean: no absolute path, no '..' ──► parent dir opened by the kernel with
        openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS): a parent that is (or goes through) a
        symlink, from this layer or already in dest, is refused ──► final name created with
        *at() calls relative to that fd, never following it
                                                              │
        .wh.NAME / .wh..wh..opq ──► "overlay": 0:0 char device / trusted.overlay.opaque=y
                                    "native":  delete NAME / delete what lower layers had
                                                              │
        directories: mode and mtime set last (a read-only dir in the layer can still be filled)

Symlinks are created as they are (they may point anywhere: they are resolved inside the
container, later) and are never followed here. A hard link's target must be a path inside
dest that is neither a directory nor a symlink pointing outside dest.

On error the destination holds whatever was applied before the failing entry: the caller
applies into a fresh snapshot (an active snapshot's upper or copied dir) and removes that
snapshot on error. Every error names the tar entry (``DiffError.entry``).
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import os
import shutil
import stat
import tarfile
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Literal, cast

from runtime.oci.linux import RESOLVE_BENEATH, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS, SYS
from runtime.service.content.digest import Digest
from runtime.service.diff.errors import (
    ApplyError,
    DiffError,
    InvalidLayer,
    UnsafeEntry,
    entry_error,
)

WhiteoutFormat = Literal["overlay", "native"]

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
_CHUNK = 1 << 20
_RESOLVE = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS
_XATTR_PREFIX = "SCHILY.xattr."
_CORRUPT = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)


@dataclass(frozen=True)
class ApplyResult:
    diff_id: Digest  # sha256 of the uncompressed tar
    size: int  # bytes of the uncompressed tar


# ---- the byte stream ------------------------------------------------------------------------


class _Prefixed:
    """STREAM with HEAD (bytes already read from it to sniff the format) put back in front."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head = head
        self._stream = stream

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n < 0:
                out, self._head = self._head + self._stream.read(), b""
                return out
            out, self._head = self._head[:n], self._head[n:]
            return out
        return self._stream.read(n)


class _Hashing:
    """Counts and hashes every byte read through it: the diff ID of the tar."""

    def __init__(self, stream: _Prefixed | gzip.GzipFile) -> None:
        self._stream = stream
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        self.hash.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        """Read to the end: tar padding after the end-of-archive blocks is part of the diff."""
        while self.read(_CHUNK):
            pass


def _uncompressed(stream: BinaryIO, media_type: str | None) -> _Prefixed | gzip.GzipFile:
    head = b""
    while len(head) < 4:
        more = stream.read(4 - len(head))
        if not more:
            break
        head += more
    raw = _Prefixed(head, stream)
    mt = media_type or ""
    if mt.endswith("+zstd") or head == ZSTD_MAGIC:
        raise InvalidLayer(f"layer ({media_type or 'zstd magic'}): zstd is not supported")
    if mt.endswith("+gzip") or head.startswith(GZIP_MAGIC):
        return gzip.GzipFile(fileobj=cast("BinaryIO", raw), mode="rb")
    return raw


# ---- names ----------------------------------------------------------------------------------


def clean_name(name: str, entry: str, what: str = "path") -> str:
    """NAME as a relative path without '.', '' or trailing parts ('' is the root itself);
    UnsafeEntry for an absolute path or a '..' component."""
    if name.startswith("/"):
        raise entry_error(UnsafeEntry, entry, f"{what} {name!r} is absolute")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise entry_error(UnsafeEntry, entry, f"{what} {name!r} has a '..' component")
    return "/".join(parts)


def symlink_escapes(link_dir: str, target: str) -> bool:
    """Whether a symlink in LINK_DIR (relative to the root) pointing at TARGET leaves the
    root when resolved from the host: an absolute target, or '..' climbing above it."""
    if target.startswith("/"):
        return True
    depth = len(link_dir.split("/")) if link_dir else 0
    for part in target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def _lstat(pfd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=pfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _remove(pfd: int, name: str, st: os.stat_result) -> None:
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=pfd)
    else:
        os.unlink(name, dir_fd=pfd)


def _xattrs(member: tarfile.TarInfo) -> dict[str, bytes]:
    """The entry's PAX xattrs we apply: not security.* (but security.capability) and never
    trusted.overlay.* (only whiteout handling may set overlay's own attributes)."""
    out = {}
    for key, value in member.pax_headers.items():
        if not key.startswith(_XATTR_PREFIX):
            continue
        name = key[len(_XATTR_PREFIX) :]
        if name.startswith("trusted.overlay."):
            continue
        if name.startswith("security.") and name != "security.capability":
            continue
        out[name] = value.encode("utf-8", "surrogateescape")
    return out


# ---- applying -------------------------------------------------------------------------------


class _Applier:
    def __init__(self, dest: str, whiteout_format: WhiteoutFormat) -> None:
        if whiteout_format not in ("overlay", "native"):
            raise ValueError(f"whiteout_format: want 'overlay' or 'native', got {whiteout_format!r}")
        self.format = whiteout_format
        self.root_fd = os.open(dest, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.seen: set[str] = set()  # paths this layer wrote (whiteouts spare them)
        self.dirs: dict[str, tarfile.TarInfo] = {}  # mode and mtime fixed up at the end
        self.chown = os.geteuid() == 0

    def close(self) -> None:
        os.close(self.root_fd)

    def open_dir(self, rel: str, entry: str, *, create: bool) -> int:
        """O_PATH fd of directory REL, resolved beneath the root through no symlink;
        missing directories are made (0755) when CREATE."""
        try:
            return SYS.openat2(self.root_fd, rel or ".", os.O_PATH | os.O_DIRECTORY, _RESOLVE)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise entry_error(
                    UnsafeEntry, entry, f"parent {rel!r} is or goes through a symlink"
                ) from None
            if e.errno == errno.EXDEV:
                raise entry_error(UnsafeEntry, entry, f"parent {rel!r} leaves the root") from None
            if e.errno != errno.ENOENT or not create:
                raise entry_error(ApplyError, entry, f"parent {rel!r}: {e.strerror}") from None
        parent, _, name = rel.rpartition("/")
        pfd = self.open_dir(parent, entry, create=True)
        try:
            try:
                os.mkdir(name, 0o755, dir_fd=pfd)
                os.chmod(name, 0o755, dir_fd=pfd)  # whatever the umask
                self.seen.add(rel)
            except FileExistsError:
                pass
            return self.open_dir(rel, entry, create=False)
        finally:
            os.close(pfd)

    def apply(self, tf: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        entry = member.name
        rel = clean_name(member.name, entry)
        if not rel:
            return  # the root itself: its owner and mode are the snapshotter's
        parent, _, base = rel.rpartition("/")
        try:
            if base.startswith(WHITEOUT_PREFIX):
                self.whiteout(parent, base, entry)
                return
            pfd = self.open_dir(parent, entry, create=True)
            try:
                self.create(tf, member, pfd, rel, base)
            finally:
                os.close(pfd)
        except DiffError:
            raise
        except OSError as e:
            raise entry_error(ApplyError, entry, e.strerror or str(e)) from None
        self.seen.add(rel)

    def create(
        self, tf: tarfile.TarFile, member: tarfile.TarInfo, pfd: int, rel: str, base: str
    ) -> None:
        existing = _lstat(pfd, base)
        if existing is not None and not (member.isdir() and stat.S_ISDIR(existing.st_mode)):
            _remove(pfd, base, existing)
            existing = None
        if member.isdir():
            if existing is None:
                os.mkdir(base, 0o700, dir_fd=pfd)
            self.dirs[rel] = member
        elif member.isreg():
            self.write_file(tf, member, pfd, base)
        elif member.issym():
            os.symlink(member.linkname, base, dir_fd=pfd)
        elif member.islnk():
            self.hardlink(member, pfd, base)
            return  # the inode's owner, mode and times are the target's
        elif member.ischr() or member.isblk():
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            dev = os.makedev(member.devmajor, member.devminor)
            os.mknod(base, kind | 0o600, dev, dir_fd=pfd)
        elif member.isfifo():
            os.mkfifo(base, 0o600, dir_fd=pfd)
        else:
            raise entry_error(InvalidLayer, member.name, f"unsupported tar type {member.type!r}")
        self.metadata(member, pfd, base)

    def write_file(
        self, tf: tarfile.TarFile, member: tarfile.TarInfo, pfd: int, base: str
    ) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(base, flags, 0o600, dir_fd=pfd)
        try:
            src = tf.extractfile(member)
            if src is not None:
                while chunk := src.read(_CHUNK):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
        finally:
            os.close(fd)

    def hardlink(self, member: tarfile.TarInfo, pfd: int, base: str) -> None:
        entry = member.name
        target = clean_name(member.linkname, entry, "hard link target")
        if not target:
            raise entry_error(UnsafeEntry, entry, "hard link to the root directory")
        tparent, _, tbase = target.rpartition("/")
        tpfd = self.open_dir(tparent, entry, create=False)
        try:
            st = _lstat(tpfd, tbase)
            if st is None:
                raise entry_error(ApplyError, entry, f"hard link target {target!r} does not exist")
            if stat.S_ISDIR(st.st_mode):
                raise entry_error(UnsafeEntry, entry, f"hard link to directory {target!r}")
            if stat.S_ISLNK(st.st_mode):
                points_to = os.readlink(tbase, dir_fd=tpfd)
                if symlink_escapes(tparent, points_to):
                    raise entry_error(
                        UnsafeEntry,
                        entry,
                        f"hard link to symlink {target!r} pointing outside ({points_to!r})",
                    )
            os.link(tbase, base, src_dir_fd=tpfd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(tpfd)

    def metadata(self, member: tarfile.TarInfo, pfd: int, base: str) -> None:
        """Owner first (chown clears setuid bits and capabilities), then mode, xattrs, mtime;
        a directory's mode and mtime wait for finish()."""
        if self.chown:
            os.chown(base, member.uid, member.gid, dir_fd=pfd, follow_symlinks=False)
        if not member.issym() and not member.isdir():
            os.chmod(base, member.mode & 0o7777, dir_fd=pfd)  # just made by us: not a symlink
        path = f"/proc/self/fd/{pfd}/{base}"
        for name, value in _xattrs(member).items():
            try:
                os.setxattr(path, name, value, follow_symlinks=False)
            except OSError as e:
                if e.errno not in (errno.EOPNOTSUPP, errno.ENOTSUP):
                    raise OSError(e.errno, f"setxattr {name}: {e.strerror}") from None
        if not member.isdir():
            ns = int(member.mtime * 1e9)
            os.utime(base, ns=(ns, ns), dir_fd=pfd, follow_symlinks=False)

    def whiteout(self, parent: str, base: str, entry: str) -> None:
        pfd = self.open_dir(parent, entry, create=True)
        try:
            if base == OPAQUE_MARKER:
                self.opaque(pfd, parent)
                return
            name = base[len(WHITEOUT_PREFIX) :]
            if name in ("", ".", ".."):
                raise entry_error(UnsafeEntry, entry, f"whiteout of {name!r}")
            rel = f"{parent}/{name}" if parent else name
            existing = _lstat(pfd, name)
            if self.format == "overlay":
                if existing is not None:
                    _remove(pfd, name, existing)
                os.mknod(name, stat.S_IFCHR, os.makedev(0, 0), dir_fd=pfd)
                self.seen.add(rel)
            elif existing is not None and rel not in self.seen:
                _remove(pfd, name, existing)
        finally:
            os.close(pfd)

    def opaque(self, pfd: int, parent: str) -> None:
        if self.format == "overlay":
            os.setxattr(f"/proc/self/fd/{pfd}", OPAQUE_XATTR, b"y")
            return
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=pfd)
        try:
            names = os.listdir(fd)
        finally:
            os.close(fd)
        for name in names:
            rel = f"{parent}/{name}" if parent else name
            st = _lstat(pfd, name)
            if st is not None and rel not in self.seen:
                _remove(pfd, name, st)

    def finish(self) -> None:
        """Directories' modes and mtimes, deepest first (the root keeps its own)."""
        for rel in sorted(self.dirs, key=lambda r: r.count("/"), reverse=True):
            member = self.dirs[rel]
            parent, _, base = rel.rpartition("/")
            try:
                pfd = self.open_dir(parent, member.name, create=False)
            except DiffError:
                continue  # removed or replaced by a later entry
            try:
                flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
                fd = os.open(base, flags, dir_fd=pfd)
            except OSError:
                continue  # no longer a directory (a later entry replaced it)
            finally:
                os.close(pfd)
            try:
                os.fchmod(fd, member.mode & 0o7777)
                ns = int(member.mtime * 1e9)
                os.utime(fd, ns=(ns, ns))
            except OSError as e:
                raise entry_error(ApplyError, member.name, e.strerror or str(e)) from None
            finally:
                os.close(fd)


def apply_layer(
    stream: BinaryIO,
    dest: str,
    *,
    media_type: str | None = None,
    whiteout_format: WhiteoutFormat,
) -> ApplyResult:
    """Apply the layer read from STREAM onto the directory DEST; returns its diff ID and size.

    WHITEOUT_FORMAT "overlay" writes whiteouts as overlayfs reads them (DEST will be an
    upper/lower dir); "native" deletes the whited-out paths (DEST is a full copy of the
    parent). On error, DEST is partly applied: the caller discards it (see the module doc).
    """
    reader = _Hashing(_uncompressed(stream, media_type))
    applier = _Applier(dest, whiteout_format)
    try:
        try:
            with tarfile.open(fileobj=reader, mode="r|") as tf:  # type: ignore[call-overload]
                for member in tf:
                    applier.apply(tf, member)
            reader.drain()
        except DiffError:
            raise
        except _CORRUPT as e:
            raise InvalidLayer(f"layer: not a readable tar stream: {e}") from None
        applier.finish()
    finally:
        applier.close()
    return ApplyResult(Digest.from_hash(reader.hash), reader.size)
