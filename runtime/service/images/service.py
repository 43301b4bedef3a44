"""ImageService: the images facade the CRI server and corral-ctr call (containerd's image
service plus its unpacker and GC, for one service root).

    pull(ns, ref) ──lease──► pull.py (content) ──► unpack.py (snapshots) ──► ImageStore.put
    import_(ns, tar) ─lease─► archive.py (content) ──► unpack each ──► ImageStore.put (all or none)
    export(ns, names, out) ──► archive.py
    list / get / tag / remove / usage ──► ImageStore (+ content sizes)
    gc() ──► gc.collect(roots = every namespace's image targets + added providers + leases)

    root/images.db     the image records (store.py)
    content, snapshotters: given by the daemon (shared by every namespace)

Tenancy: a record belongs to one namespace and every call names its namespace, so two
namespaces never see each other's images; blobs and snapshots are shared underneath, and
the GC keeps what any namespace's image reaches. Removing the last image that reaches a
blob or a snapshot and running gc() frees exactly it.
"""

from __future__ import annotations

import asyncio
import builtins
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from runtime.service.content import ContentStore, Digest
from runtime.service.gc import GCResult, Leases, Roots, RootsProvider, collect
from runtime.service.images.archive import ImportedImage, export_archive, import_archive
from runtime.service.images.distribution import RegistryClient
from runtime.service.images.errors import InvalidReference
from runtime.service.images.mediatypes import LINUX_AMD64, Descriptor, Platform
from runtime.service.images.pull import Puller
from runtime.service.images.reference import parse_reference
from runtime.service.images.store import (
    Image,
    ImageNotFound,
    ImageStore,
    InvalidImage,
    Target,
    check_namespace,
)
from runtime.service.images.unpack import UnpackResult, resolve_manifest, unpack
from runtime.service.snapshots import Snapshotter

LABEL_UNPACKED = "io.corral.image.unpacked.{}"  # on the image: its top chain ID


@dataclass(frozen=True)
class ImageUsage:
    content_bytes: int  # manifest, config and layers of the platform (plus the index)
    layers: int


class ImageService:
    def __init__(
        self,
        root: str,
        *,
        content: ContentStore,
        snapshotters: Mapping[str, Snapshotter],
        default_snapshotter: str,
        default_registry: str | None = None,
        platform: Platform = LINUX_AMD64,
    ) -> None:
        if default_snapshotter not in snapshotters:
            raise ValueError(f"default_snapshotter: {default_snapshotter!r} is not one of"
                             f" {sorted(snapshotters)}")
        os.makedirs(root, mode=0o700, exist_ok=True)
        self.store = ImageStore(os.path.join(root, "images.db"))
        self.content = content
        self.snapshotters = dict(snapshotters)
        self.default_snapshotter = default_snapshotter
        self.default_registry = default_registry
        self.platform = platform
        self.leases = Leases()
        self._roots: builtins.list[RootsProvider] = [self._image_roots, self.leases.roots]

    def close(self) -> None:
        self.store.close()

    def add_roots(self, provider: RootsProvider) -> None:
        """Another store's GC roots (e.g. the container store's snapshots)."""
        self._roots.append(provider)

    def _image_roots(self) -> Roots:
        return Roots(content=self.store.targets())

    def _name(self, ref: str) -> str:
        return str(parse_reference(ref, default_registry=self.default_registry))

    def _snapshotter(self, name: str | None) -> tuple[str, Snapshotter]:
        name = name or self.default_snapshotter
        try:
            return name, self.snapshotters[name]
        except KeyError:
            raise InvalidImage(f"snapshotter {name!r}: not configured (have"
                               f" {', '.join(sorted(self.snapshotters))})") from None

    # ---- reading --------------------------------------------------------------------------

    def get(self, namespace: str, name: str) -> Image:
        return self.store.get(namespace, self._lookup(name))

    def _lookup(self, name: str) -> str:
        try:
            return self._name(name)
        except InvalidReference:  # not a reference: look it up as it is written
            return name

    def list(self, namespace: str, *, prefix: str = "",
             labels: Mapping[str, str | None] | None = None) -> builtins.list[Image]:
        return self.store.list(namespace, prefix=prefix, labels=labels)

    def usage(self, namespace: str, name: str) -> ImageUsage:
        img = self.get(namespace, name)
        r = resolve_manifest(self.content, _desc(img.target),
                             what=f"image {namespace}/{img.name}", platform=self.platform)
        digests = {img.target.digest, r.manifest.digest, r.parsed.config.digest,
                   *(x.digest for x in r.parsed.layers)}
        size = sum(self.content.info(d).size for d in digests if self.content.exists(d))
        return ImageUsage(size, len(r.parsed.layers))

    # ---- changing -------------------------------------------------------------------------

    async def pull(self, namespace: str, ref: str, *, client: RegistryClient,
                   unpack_into: str | None = None, labels: Mapping[str, str] | None = None
                   ) -> Image:
        """Pull REF, unpack it into the snapshotter UNPACK_INTO (default: the service's),
        and record it; the record is written only once all of that succeeded."""
        check_namespace(namespace)
        snap_name, _ = self._snapshotter(unpack_into)
        with self.leases.lease() as lease:
            puller = Puller(store=self.content, client=client, platform=self.platform)
            result = await puller.pull(ref, default_registry=self.default_registry)
            lease.add_content(result.digest)
            target = Target(result.media_type, result.digest,
                            self.content.info(result.digest).size)
            img = Image(namespace, result.name, target, dict(labels or {}))
            img = await asyncio.to_thread(self._unpacked, img, snap_name, lease.add_snapshot)
            return self.store.put([img])[0]

    def _unpacked(self, img: Image, snap_name: str,
                  on_snapshot: Callable[[str, str], None]) -> Image:
        res = self._unpack(img, snap_name, on_snapshot)
        labels = dict(img.labels)
        labels[LABEL_UNPACKED.format(snap_name)] = res.chain_id
        return Image(img.namespace, img.name, img.target, labels)

    def _unpack(self, img: Image, snap_name: str,
                on_snapshot: Callable[[str, str], None]) -> UnpackResult:
        _, snapshotter = self._snapshotter(snap_name)
        return unpack(content=self.content, snapshotter=snapshotter, snapshotter_name=snap_name,
                      target=_desc(img.target), what=f"image {img.namespace}/{img.name}",
                      platform=self.platform,
                      on_snapshot=lambda key: on_snapshot(snap_name, key))

    def unpack(self, namespace: str, name: str, *, snapshotter: str | None = None) -> Image:
        """Unpack an image already in the store (e.g. into a second snapshotter)."""
        img = self.get(namespace, name)
        snap_name, _ = self._snapshotter(snapshotter)
        with self.leases.lease() as lease:
            res = self._unpack(img, snap_name, lease.add_snapshot)
            return self.store.update(namespace, img.name,
                                     labels={LABEL_UNPACKED.format(snap_name): res.chain_id})

    def tag(self, namespace: str, source: str, new_name: str) -> Image:
        """NEW_NAME points at what SOURCE points at (replacing what it pointed at)."""
        src = self.get(namespace, source)
        img = Image(namespace, self._name(new_name), src.target, dict(src.labels))
        return self.store.put([img])[0]

    def remove(self, namespace: str, name: str) -> Image:
        """Remove the record; its blobs and snapshots go at the next gc() if nothing else
        reaches them."""
        return self.store.delete(namespace, self._lookup(name))

    def import_(self, namespace: str, src: str | BinaryIO, *, base_name: str | None = None,
                unpack_into: str | None = None) -> builtins.list[str]:
        """Import the tarball SRC (OCI layout or docker save); return the image names. Every
        image is unpacked before any record is written: a failure leaves no image."""
        check_namespace(namespace)
        snap_name, _ = self._snapshotter(unpack_into)
        with self.leases.lease() as lease:
            found: builtins.list[ImportedImage] = import_archive(
                src, content=self.content, default_registry=self.default_registry,
                base_name=base_name, on_blob=lease.add_content)
            images = [self._unpacked(Image(namespace, i.name, i.target), snap_name,
                                     lease.add_snapshot) for i in found]
            self.store.put(images)
        return [i.name for i in images]

    def export(self, namespace: str, names: Sequence[str], out: BinaryIO) -> None:
        images = [self.get(namespace, n) for n in names]
        if not images:
            raise ImageNotFound(f"export {namespace}: no image names given")
        export_archive(out, [(i.name, i.target) for i in images], content=self.content,
                       platform=self.platform)

    def gc(self, *, ingest_max_age: float = 24 * 3600.0) -> GCResult:
        """Remove every blob and committed snapshot no namespace's image (or added root)
        reaches, and ingests idle for INGEST_MAX_AGE seconds."""
        return collect(content=self.content, snapshotters=self.snapshotters, roots=self._roots,
                       ingest_max_age=ingest_max_age, protect_since=self.leases.protect_since())


def _desc(t: Target) -> Descriptor:
    return Descriptor(t.media_type, Digest(t.digest), t.size)
