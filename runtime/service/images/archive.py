"""Import and export image tarballs: OCI image layouts and ``docker save`` archives.

    import_archive(tar) ── scan every entry: no absolute path, no '..', no link out ──┐
        oci-layout + index.json ──► each manifests[i] (index or manifest), its tree   │
        │   copied blob by blob: blobs/<alg>/<hex> verified against the descriptor    │
        │   (digest + size), media types checked, children before parents with the    │
        │   containerd.io/gc.ref.content.* labels; name: io.containerd.image.name,    │
        │   else org.opencontainers.image.ref.name                                    │
        manifest.json (docker save) ──► Config + Layers (legacy <id>/layer.tar too)   │
            becomes an OCI manifest: uncompressed layers must hash to rootfs.diff_ids │
        ──► [ImportedImage(name, target)]: the caller records them all at once ◄──────┘

    export_archive(out, images) ──► oci-layout, blobs/sha256/<hex>, index.json (both name
        annotations), and docker's manifest.json, so ``docker load`` and ``ctr import``
        accept it as well as our import.

A rejected archive raises ArchiveError naming the entry before any image points at it;
blobs it had already copied are unreferenced and left for the garbage collector.
"""

from __future__ import annotations

import io
import json
import posixpath
import re
import tarfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any, BinaryIO

from runtime.service.content import (
    ContentError,
    ContentStore,
    Digest,
    InvalidDigest,
    Locked,
    Writer,
)
from runtime.service.images.errors import ImageError, PullError, short
from runtime.service.images.mediatypes import (
    INDEX_TYPES,
    LINUX_AMD64,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    Descriptor,
    Kind,
    Platform,
    kind_of,
    load_json,
    parse_descriptor,
    parse_manifest,
)
from runtime.service.images.reference import parse_reference
from runtime.service.images.store import Target
from runtime.service.images.unpack import resolve_manifest

NAME_ANNOTATION = "io.containerd.image.name"
REF_ANNOTATION = "org.opencontainers.image.ref.name"
MAX_JSON = 8 << 20  # no index, manifest or config is bigger
_CHUNK = 1 << 20
_BLOB = re.compile(r"blobs/(sha256|sha512)/([0-9a-f]+)")


class ArchiveError(ImageError):
    """The archive is refused; ``entry`` is the tar entry concerned (None: the archive)."""

    def __init__(self, message: str, *, entry: str | None = None) -> None:
        super().__init__(message)
        self.entry = entry


@dataclass(frozen=True)
class ImportedImage:
    name: str
    target: Target


def _clean(name: str, *, entry: str) -> str:
    if name.startswith("/"):
        raise ArchiveError(f"archive entry {entry!r}: absolute path", entry=entry)
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"archive entry {entry!r}: path has a '..' component", entry=entry)
    return "/".join(parts)


class _Tar:
    """The archive's entries by clean name; every name and link target checked up front."""

    def __init__(self, tf: tarfile.TarFile) -> None:
        self.tf = tf
        self.members: dict[str, tarfile.TarInfo] = {}
        for m in tf.getmembers():
            name = _clean(m.name, entry=m.name)
            if m.issym():
                if m.linkname.startswith("/"):
                    raise ArchiveError(f"archive entry {m.name!r}: symlink to an absolute path"
                                       f" {m.linkname!r}", entry=m.name)
                target = posixpath.normpath(posixpath.join(posixpath.dirname(name), m.linkname))
                if target == ".." or target.startswith("../"):
                    raise ArchiveError(f"archive entry {m.name!r}: symlink {m.linkname!r}"
                                       " points outside the archive", entry=m.name)
            elif m.islnk():
                _clean(m.linkname, entry=m.name)
            self.members[name] = m

    def has(self, name: str) -> bool:
        return name in self.members

    def _file(self, name: str) -> tarfile.TarInfo:
        seen = 0
        m = self.members.get(name)
        while m is not None and (m.issym() or m.islnk()) and seen < 16:
            seen += 1
            if m.issym():
                name = posixpath.normpath(posixpath.join(posixpath.dirname(name), m.linkname))
            else:
                name = _clean(m.linkname, entry=m.name)
            m = self.members.get(name)
        if m is None:
            raise ArchiveError(f"archive entry {name!r}: missing from the archive", entry=name)
        if not m.isreg():
            raise ArchiveError(f"archive entry {name!r}: not a regular file", entry=name)
        return m

    def open(self, name: str) -> tuple[IO[bytes], int]:
        m = self._file(name)
        f = self.tf.extractfile(m)
        assert f is not None  # a regular file
        return f, m.size

    def read_json(self, name: str) -> dict[str, Any] | list[Any]:
        f, size = self.open(name)
        if size > MAX_JSON:
            raise ArchiveError(f"archive entry {name!r}: {size} bytes is too big for JSON",
                               entry=name)
        try:
            doc: dict[str, Any] | list[Any] = json.loads(f.read())
        except (ValueError, UnicodeDecodeError) as e:
            raise ArchiveError(f"archive entry {name!r}: not valid JSON: {e}",
                               entry=name) from None
        return doc


def _copy(store: ContentStore, src: IO[bytes], *, ref: str, entry: str,
          digest: Digest | None, size: int | None, labels: dict[str, str] | None = None,
          first: bytes = b"") -> Digest:
    """Stream SRC into STORE, verified against DIGEST/SIZE when given."""
    if digest is not None and store.exists(digest):
        if labels:
            store.update_labels(digest, labels)
        return digest
    w = _writer(store, ref=ref, entry=entry, digest=digest, size=size)
    if w.offset:  # left by an earlier, interrupted import: start over
        w.abort()
        w = _writer(store, ref=ref, entry=entry, digest=digest, size=size)
    with w:
        try:
            if first:
                w.write(first)
            while chunk := src.read(_CHUNK):
                w.write(chunk)
            return w.commit(labels=labels)
        except ContentError as e:
            raise ArchiveError(f"archive entry {entry!r}: {e}", entry=entry) from None


def _writer(store: ContentStore, *, ref: str, entry: str, digest: Digest | None,
            size: int | None) -> Writer:
    for _ in range(100):
        try:
            return store.writer(ref, expected_digest=digest, expected_size=size)
        except Locked:  # another import of the same blob: wait for it
            time.sleep(0.1)
    raise ArchiveError(f"archive entry {entry!r}: ingest {ref!r} stays locked", entry=entry)


class _Importer:
    def __init__(self, tar: _Tar, store: ContentStore, *, on_blob: Callable[[Digest], None],
                 default_registry: str | None, base_name: str | None) -> None:
        self.tar = tar
        self.store = store
        self.on_blob = on_blob
        self.default_registry = default_registry
        self.base_name = base_name

    def _name(self, raw: str, *, entry: str) -> str:
        try:
            return str(parse_reference(raw, default_registry=self.default_registry))
        except ImageError as e:
            raise ArchiveError(f"archive entry {entry!r}: image name {raw!r}: {e}",
                               entry=entry) from None

    # ---- OCI image layout ---------------------------------------------------------------

    def oci(self) -> list[ImportedImage]:
        layout = self.tar.read_json("oci-layout")
        version = layout.get("imageLayoutVersion") if isinstance(layout, dict) else None
        if not isinstance(version, str) or not version.startswith("1."):
            raise ArchiveError(f"archive entry 'oci-layout': imageLayoutVersion {version!r} is"
                               " not supported (want 1.x)", entry="oci-layout")
        index = self.tar.read_json("index.json")
        entries = index.get("manifests") if isinstance(index, dict) else None
        if not isinstance(entries, list):
            raise ArchiveError("archive entry 'index.json': manifests: must be a list",
                               entry="index.json")
        out = []
        for i, raw in enumerate(entries):
            what = f"index.json: manifests[{i}]"
            desc = self._descriptor(raw, what=what, entry="index.json")
            self._tree(desc, what=what)
            name = self._oci_name(desc, what=what)
            if name is not None:
                out.append(ImportedImage(name, Target(desc.media_type, desc.digest, desc.size)))
        return out

    def _oci_name(self, desc: Descriptor, *, what: str) -> str | None:
        full = desc.annotations.get(NAME_ANNOTATION)
        if full:
            return self._name(full, entry="index.json")
        ref = desc.annotations.get(REF_ANNOTATION)
        if not ref:
            return None
        if self.base_name and "/" not in ref and ":" not in ref:
            return self._name(f"{self.base_name}:{ref}", entry="index.json")
        return self._name(ref, entry="index.json")

    def _descriptor(self, raw: object, *, what: str, entry: str) -> Descriptor:
        try:
            desc = parse_descriptor(raw, what=what)
            kind_of(desc.media_type, what=f"{what} {short(desc.digest)}")
        except PullError as e:
            raise ArchiveError(f"archive entry {entry!r}: {e.what}", entry=entry) from None
        return desc

    def _blob_bytes(self, desc: Descriptor, *, what: str) -> tuple[str, bytes]:
        path = f"blobs/{desc.digest.algorithm}/{desc.digest.hex}"
        if desc.size > MAX_JSON:
            raise ArchiveError(f"archive entry {path!r}: {what}: size {desc.size} is too big",
                               entry=path)
        f, _ = self.tar.open(path)
        body = f.read()
        if len(body) != desc.size or Digest.from_bytes(body, desc.digest.algorithm) != desc.digest:
            raise ArchiveError(f"archive entry {path!r}: {what}: content does not match its"
                               f" descriptor (digest {short(desc.digest)}, size {desc.size})",
                               entry=path)
        return path, body

    def _put(self, desc: Descriptor, body: bytes, labels: dict[str, str], *, entry: str) -> None:
        self.on_blob(desc.digest)
        _copy(self.store, io.BytesIO(body), ref=f"import-{desc.digest}", entry=entry,
              digest=desc.digest, size=desc.size, labels=labels)

    def _tree(self, desc: Descriptor, *, what: str) -> None:
        path, body = self._blob_bytes(desc, what=what)
        if desc.media_type in INDEX_TYPES:
            doc = load_json_or_refuse(body, entry=path)
            children = doc.get("manifests")
            if not isinstance(children, list):
                raise ArchiveError(f"archive entry {path!r}: manifests: must be a list",
                                   entry=path)
            labels = {}
            for j, raw in enumerate(children):
                child = self._descriptor(raw, what=f"manifests[{j}]", entry=path)
                if child.media_type in INDEX_TYPES:
                    raise ArchiveError(f"archive entry {path!r}: manifests[{j}]: an index"
                                       " inside an index is not supported", entry=path)
                if not self.tar.has(f"blobs/{child.digest.algorithm}/{child.digest.hex}"):
                    continue  # a platform the archive does not carry
                self._tree(child, what=f"{what}: manifests[{j}]")
                labels[f"containerd.io/gc.ref.content.m.{j}"] = str(child.digest)
            if not labels:
                raise ArchiveError(f"archive entry {path!r}: none of its manifests is in the"
                                   " archive", entry=path)
            self._put(desc, body, labels, entry=path)
            return
        try:
            manifest = parse_manifest(body, desc.media_type, what=f"manifest {short(desc.digest)}")
        except PullError as e:
            raise ArchiveError(f"archive entry {path!r}: {e.what}", entry=path) from None
        labels = {"containerd.io/gc.ref.content.config": str(manifest.config.digest)}
        for i, layer in enumerate((manifest.config, *manifest.layers)):
            if i:
                labels[f"containerd.io/gc.ref.content.l.{i - 1}"] = str(layer.digest)
            lpath = f"blobs/{layer.digest.algorithm}/{layer.digest.hex}"
            f, _ = self.tar.open(lpath)
            self.on_blob(layer.digest)
            _copy(self.store, f, ref=f"import-{layer.digest}", entry=lpath,
                  digest=layer.digest, size=layer.size)
        self._put(desc, body, labels, entry=path)

    # ---- docker save ----------------------------------------------------------------------

    def docker(self) -> list[ImportedImage]:
        doc = self.tar.read_json("manifest.json")
        if not isinstance(doc, list):
            raise ArchiveError("archive entry 'manifest.json': want a JSON list",
                               entry="manifest.json")
        out = []
        for i, item in enumerate(doc):
            what = f"manifest.json: [{i}]"
            if not isinstance(item, dict) or not isinstance(item.get("Config"), str) or \
                    not isinstance(item.get("Layers"), list):
                raise ArchiveError(f"archive entry 'manifest.json': [{i}]: want Config and"
                                   " Layers", entry="manifest.json")
            target = self._docker_image(item, what=what)
            for tag in item.get("RepoTags") or []:
                out.append(ImportedImage(self._name(str(tag), entry="manifest.json"), target))
        return out

    def _docker_image(self, item: dict[str, Any], *, what: str) -> Target:
        cfg_path = _clean(item["Config"], entry=item["Config"])
        f, size = self.tar.open(cfg_path)
        if size > MAX_JSON:
            raise ArchiveError(f"archive entry {cfg_path!r}: too big for a config",
                               entry=cfg_path)
        cfg = f.read()
        cfg_digest = Digest.from_bytes(cfg)
        named = _named_digest(cfg_path)
        if named is not None and named != cfg_digest:
            raise ArchiveError(f"archive entry {cfg_path!r}: content hashes to"
                               f" {short(cfg_digest)}, not {short(named)}", entry=cfg_path)
        config = load_json_or_refuse(cfg, entry=cfg_path)
        diff_ids = (config.get("rootfs") or {}).get("diff_ids")
        if not isinstance(diff_ids, list) or len(diff_ids) != len(item["Layers"]):
            raise ArchiveError(f"archive entry {cfg_path!r}: rootfs.diff_ids: want one per"
                               f" layer ({len(item['Layers'])}), got {diff_ids!r}",
                               entry=cfg_path)
        layers = []
        for j, raw in enumerate(item["Layers"]):
            path = _clean(str(raw), entry=str(raw))
            src, size = self.tar.open(path)
            head = src.read(2)
            media_type = OCI_LAYER_GZIP if head == b"\x1f\x8b" else OCI_LAYER
            digest = _copy(self.store, src, ref=f"import-{what}-{path}", entry=path,
                           digest=_named_digest(path), size=size, first=head)
            self.on_blob(digest)
            if media_type == OCI_LAYER and digest != diff_ids[j]:
                raise ArchiveError(f"archive entry {path!r}: layer hashes to {short(digest)},"
                                   f" not rootfs.diff_ids[{j}] {diff_ids[j]}", entry=path)
            layers.append({"mediaType": media_type, "digest": str(digest), "size": size})
        self.on_blob(cfg_digest)
        _copy(self.store, io.BytesIO(cfg), ref=f"import-{cfg_digest}", entry=cfg_path,
              digest=cfg_digest, size=len(cfg))
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": str(cfg_digest), "size": len(cfg)},
            "layers": layers,
        }, sort_keys=True, separators=(",", ":")).encode()
        digest = Digest.from_bytes(manifest)
        labels = {"containerd.io/gc.ref.content.config": str(cfg_digest)}
        labels.update({f"containerd.io/gc.ref.content.l.{j}": str(x["digest"])
                       for j, x in enumerate(layers)})
        self._put(Descriptor(OCI_MANIFEST, digest, len(manifest)), manifest, labels,
                  entry="manifest.json")
        return Target(OCI_MANIFEST, digest, len(manifest))


def load_json_or_refuse(body: bytes, *, entry: str) -> dict[str, Any]:
    try:
        return load_json(body, what=f"archive entry {entry!r}")
    except PullError as e:
        raise ArchiveError(e.what, entry=entry) from None


def _named_digest(path: str) -> Digest | None:
    """The digest a blob's path names: ``blobs/sha256/<hex>`` or ``<hex>.json``."""
    m = _BLOB.fullmatch(path)
    raw = f"{m[1]}:{m[2]}" if m else None
    if raw is None and re.fullmatch(r"[0-9a-f]{64}\.json", path):
        raw = f"sha256:{path[:64]}"
    if raw is None:
        return None
    try:
        return Digest(raw)
    except InvalidDigest:
        return None


def import_archive(
    src: str | BinaryIO,
    *,
    content: ContentStore,
    default_registry: str | None = None,
    base_name: str | None = None,
    on_blob: Callable[[Digest], None] = lambda d: None,
) -> list[ImportedImage]:
    """Copy the images of the tarball SRC (a path or a seekable file) into CONTENT; return
    their names and targets. ON_BLOB(digest) is told of each blob before it is written."""
    try:
        if isinstance(src, str):
            with tarfile.open(src, mode="r:*") as tf:
                return _import(tf, content=content, default_registry=default_registry,
                               base_name=base_name, on_blob=on_blob)
        with tarfile.open(fileobj=src, mode="r:*") as tf:
            return _import(tf, content=content, default_registry=default_registry,
                           base_name=base_name, on_blob=on_blob)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ArchiveError(f"archive: not a readable tar file: {e}") from None


def _import(tf: tarfile.TarFile, *, content: ContentStore, default_registry: str | None,
            base_name: str | None, on_blob: Callable[[Digest], None]) -> list[ImportedImage]:
    tar = _Tar(tf)
    imp = _Importer(tar, content, on_blob=on_blob, default_registry=default_registry,
                    base_name=base_name)
    if tar.has("index.json") and tar.has("oci-layout"):
        images = imp.oci()
    elif tar.has("manifest.json"):
        images = imp.docker()
    else:
        raise ArchiveError("archive: neither an OCI layout (oci-layout, index.json)"
                           " nor a docker save archive (manifest.json)")
    if not images:
        raise ArchiveError("archive: no named image in it (index.json annotations"
                           f" {NAME_ANNOTATION} / {REF_ANNOTATION}, or RepoTags)")
    return images


# ---- export -------------------------------------------------------------------------------


def _add(tf: tarfile.TarFile, name: str, data: IO[bytes], size: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    tf.addfile(info, data)


def export_archive(
    out: BinaryIO,
    images: Sequence[tuple[str, Target]],
    *,
    content: ContentStore,
    platform: Platform = LINUX_AMD64,
) -> None:
    """Write IMAGES (name, target) to OUT as an OCI layout tar with docker's manifest.json."""
    blobs: dict[Digest, int] = {}
    index_entries = []
    docker_entries = []
    for name, target in images:
        desc = Descriptor(target.media_type, target.digest, target.size)
        what = f"export {name}"
        r = resolve_manifest(content, desc, what=what, platform=platform)
        blobs[target.digest] = target.size
        if kind_of(target.media_type, what=what) is Kind.INDEX:
            for j, raw in enumerate(json.loads(content.read(target.digest))["manifests"]):
                child = parse_descriptor(raw, what=f"{what}: manifests[{j}]")
                if child.digest != r.manifest.digest and content.exists(child.digest):
                    sub = resolve_manifest(content, child, what=what)
                    _collect(blobs, content, sub.manifest, sub.parsed.config,
                             sub.parsed.layers)
        _collect(blobs, content, r.manifest, r.parsed.config, r.parsed.layers)
        ref = parse_reference(name, default_registry="localhost")
        index_entries.append({
            "mediaType": target.media_type, "digest": str(target.digest), "size": target.size,
            "annotations": {NAME_ANNOTATION: name, REF_ANNOTATION: ref.tag or name},
        })
        docker_entries.append({
            "Config": f"blobs/sha256/{r.parsed.config.digest.hex}",
            "RepoTags": [name] if ref.tag and not ref.digest else [],
            "Layers": [f"blobs/{x.digest.algorithm}/{x.digest.hex}" for x in r.parsed.layers],
        })
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        layout = json.dumps({"imageLayoutVersion": "1.0.0"}).encode()
        _add(tf, "oci-layout", io.BytesIO(layout), len(layout))
        for d in ("blobs", *sorted({f"blobs/{x.algorithm}" for x in blobs})):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tf.addfile(info)
        for digest, size in sorted(blobs.items()):
            with content.open(digest) as f:
                _add(tf, f"blobs/{digest.algorithm}/{digest.hex}", f, size)
        for name, doc in (("index.json", {"schemaVersion": 2, "mediaType": OCI_INDEX,
                                          "manifests": index_entries}),
                          ("manifest.json", docker_entries)):
            body = json.dumps(doc, sort_keys=True).encode()
            _add(tf, name, io.BytesIO(body), len(body))



def _collect(blobs: dict[Digest, int], content: ContentStore, manifest: Descriptor,
             config: Descriptor, layers: Sequence[Descriptor]) -> None:
    for d in (manifest, config, *layers):
        if not content.exists(d.digest):
            raise ArchiveError(f"export: blob {short(d.digest)} is not in the content store")
        blobs[d.digest] = content.info(d.digest).size
