"""Pull one image into the content store.

    pull("127.0.0.1:5000/busybox:1")
      resolve tag ──► index? ──select linux/amd64──► manifest ──► config + layers
                                                                  (≤3 at once, each blob
                                                                   once per store: in-flight
                                                                   table keyed by digest)
      commit children first, then parents with GC labels:
        layers, config ◄─gc.ref.content.config / .l.<i>── manifest ◄─gc.ref.content.m.<i>── index

A blob already in the store is not fetched again. On failure every writer is aborted
(nothing unverified is committed, no ingest is left) and the PullError names the image.
"""

from __future__ import annotations

import asyncio
import errno
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from runtime.service.content import ContentStore, Digest, Locked
from runtime.service.images.distribution import RegistryClient
from runtime.service.images.errors import NoSpace, PullError, UnsupportedMediaType, short
from runtime.service.images.mediatypes import (
    INDEX_TYPES,
    LINUX_AMD64,
    Descriptor,
    Kind,
    Platform,
    kind_of,
    parse_manifest,
    select_platform,
)
from runtime.service.images.reference import Reference, parse_reference

LABEL_CONFIG = "containerd.io/gc.ref.content.config"
LABEL_LAYER = "containerd.io/gc.ref.content.l.{}"
LABEL_MANIFEST = "containerd.io/gc.ref.content.m.{}"
LOCKED_WAIT = 0.2  # seconds between looks at a blob another process is writing
LOCKED_TRIES = 150


@dataclass(frozen=True)
class Layer:
    digest: Digest
    media_type: str
    size: int


@dataclass(frozen=True)
class PullResult:
    name: str  # the reference as pulled, e.g. "127.0.0.1:5000/busybox:1"
    digest: Digest  # what the reference resolved to (an index or a manifest)
    media_type: str
    manifest_digest: Digest  # the platform's manifest
    config_digest: Digest
    layers: tuple[Layer, ...]
    total_bytes: int  # index + manifest + config + layers
    downloaded_bytes: int  # what this pull fetched (0 when all was already there)


# One download per (event loop, store, digest): a second caller awaits the first's future.
_INFLIGHT: dict[tuple[int, int, str], asyncio.Future[int]] = {}


async def _once(store: ContentStore, digest: Digest, fetch: Callable[[], Awaitable[int]]) -> int:
    loop = asyncio.get_running_loop()
    key = (id(loop), id(store), str(digest))
    while (fut := _INFLIGHT.get(key)) is not None:
        try:
            await asyncio.shield(fut)
            return 0  # downloaded by the other pull
        except asyncio.CancelledError:
            if not fut.cancelled():
                raise  # we were cancelled
        except Exception:
            pass  # its download failed: try ourselves (our error names our image)
    fut = loop.create_future()
    _INFLIGHT[key] = fut
    try:
        n = await fetch()
    except BaseException as e:
        if isinstance(e, asyncio.CancelledError):
            fut.cancel()
        else:
            fut.set_exception(e)
            fut.exception()  # retrieved: no "never retrieved" warning if nobody waited
        raise
    else:
        fut.set_result(n)
        return n
    finally:
        if _INFLIGHT.get(key) is fut:
            del _INFLIGHT[key]


class Puller:
    def __init__(
        self,
        *,
        store: ContentStore,
        client: RegistryClient,
        platform: Platform = LINUX_AMD64,
        max_concurrent_downloads: int = 3,
    ) -> None:
        if max_concurrent_downloads < 1:
            raise ValueError(
                f"max_concurrent_downloads: must be >= 1, got {max_concurrent_downloads}"
            )
        self.store = store
        self.client = client
        self.platform = platform
        self._limit = asyncio.Semaphore(max_concurrent_downloads)

    async def pull(self, ref: str | Reference, *, default_registry: str | None = None) -> PullResult:
        r = ref if isinstance(ref, Reference) else parse_reference(
            ref, default_registry=default_registry)
        try:
            return await self._pull(r)
        except PullError as e:
            if e.image is None:
                e.image = str(r)
            raise

    async def _manifest_bytes(self, r: Reference, desc: Descriptor) -> tuple[str, bytes]:
        if self.store.exists(desc.digest) and desc.media_type:
            return desc.media_type, self.store.read(desc.digest)
        media_type, body, _ = await self.client.get_manifest(r, desc.digest)
        return media_type, body

    async def _pull(self, r: Reference) -> PullResult:
        top, body = await self.client.resolve(r)
        if body is not None:
            top_type = top.media_type
        else:
            top_type, body = await self._manifest_bytes(r, top)
        top = Descriptor(media_type=top_type, digest=top.digest, size=len(body))
        index: tuple[Descriptor, bytes, int] | None = None
        manifest_desc, manifest_body = top, body
        if kind_of(top_type, what=f"manifest {short(top.digest)}") is Kind.INDEX:
            child = select_platform(body, self.platform, what=f"index {short(top.digest)}")
            child_type, child_body = await self._manifest_bytes(r, child)
            if child_type in INDEX_TYPES:
                raise UnsupportedMediaType(
                    f"manifest {short(child.digest)}: an index inside an index is not supported")
            position = _position(body, child.digest)
            index = (top, body, position)
            manifest_desc = Descriptor(media_type=child_type, digest=child.digest,
                                       size=len(child_body))
            manifest_body = child_body
        manifest = parse_manifest(manifest_body, manifest_desc.media_type,
                                  what=f"manifest {short(manifest_desc.digest)}")

        blobs = [(manifest.config, f"config {short(manifest.config.digest)}")]
        blobs += [(d, f"layer {short(d.digest)}") for d in manifest.layers]
        tasks = [asyncio.ensure_future(self._blob(r, d, what)) for d, what in blobs]
        try:
            downloaded = sum(await asyncio.gather(*tasks))
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

        labels = {LABEL_CONFIG: manifest.config.digest}
        labels.update({LABEL_LAYER.format(i): d.digest for i, d in enumerate(manifest.layers)})
        self._put(manifest_desc.digest, manifest_body, labels, what="manifest")
        total = len(manifest_body) + manifest.config.size + sum(d.size for d in manifest.layers)
        if index is not None:
            idx, idx_body, position = index
            self._put(idx.digest, idx_body,
                      {LABEL_MANIFEST.format(position): manifest_desc.digest}, what="index")
            total += len(idx_body)
        return PullResult(
            name=str(r),
            digest=top.digest,
            media_type=top_type,
            manifest_digest=manifest_desc.digest,
            config_digest=manifest.config.digest,
            layers=tuple(Layer(d.digest, d.media_type, d.size) for d in manifest.layers),
            total_bytes=total,
            downloaded_bytes=downloaded,
        )

    async def _blob(self, r: Reference, desc: Descriptor, what: str) -> int:
        async def fetch() -> int:
            for _ in range(LOCKED_TRIES):
                if self.store.exists(desc.digest):
                    return 0
                try:
                    async with self._limit:
                        return await self.client.fetch_blob(r, desc, store=self.store,
                                                            what=what)
                except Locked:  # another process is pulling it: wait for its commit
                    await asyncio.sleep(LOCKED_WAIT)
            raise PullError(f"{what}: ingest still locked by another writer after"
                            f" {LOCKED_TRIES * LOCKED_WAIT:g} s")

        return await _once(self.store, desc.digest, fetch)

    def _put(self, digest: Digest, body: bytes, labels: Mapping[str, str], *, what: str) -> None:
        """Commit a (verified) manifest or index with its GC labels."""
        if self.store.exists(digest):
            self.store.update_labels(digest, labels)
            return
        try:
            w = self.store.writer(f"pull-{digest}", expected_digest=digest,
                                  expected_size=len(body))
        except Locked:
            return  # another process is committing the same bytes right now
        with w:
            try:
                w.write(body)
            except OSError as e:
                if e.errno == errno.ENOSPC:
                    raise NoSpace(f"{what} {short(digest)}: no space left on device writing"
                                  " to the content store") from e
                raise PullError(f"{what} {short(digest)}: writing to the content store: "
                                f"{e.strerror or e}") from e
            w.commit(labels=labels)


def _position(index_body: bytes, digest: Digest) -> int:
    entries = json.loads(index_body).get("manifests", [])
    for i, e in enumerate(entries):
        if isinstance(e, dict) and e.get("digest") == digest:
            return i
    return 0


async def pull(
    ref: str | Reference,
    *,
    store: ContentStore,
    client: RegistryClient,
    platform: Platform = LINUX_AMD64,
    max_concurrent_downloads: int = 3,
    default_registry: str | None = None,
) -> PullResult:
    """Pull REF into STORE (see the module docstring); raise a PullError naming REF."""
    puller = Puller(store=store, client=client, platform=platform,
                    max_concurrent_downloads=max_concurrent_downloads)
    return await puller.pull(ref, default_registry=default_registry)
