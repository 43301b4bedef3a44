"""Unpack an image's layers into snapshots named by chain ID (containerd's unpacker).

    image target ──resolve_manifest()──► platform manifest ──► config.rootfs.diff_ids d1..dn
    for i in 1..n:                         chain_i = chain_id(d1..di)
        stat(chain_i) committed?  ──yes──► skip (a layer two images share is stored once)
        prepare("extract-<random>-<chain_i>", parent=chain_{i-1})
        apply_layer(layer blob, *layer_target(mounts)) ──► diff ID == d_i ? else UnpackError
        commit(chain_i)  (another unpack committed it first: AlreadyExists, drop ours)
        any failure ──► remove the active snapshot, raise
    config blob label  containerd.io/gc.ref.snapshot.<snapshotter> = chain_n   (GC edge)

Random extract keys let concurrent unpacks of one chain run side by side: both apply, the
first commit wins, the second removes its copy.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from runtime.service.content import ContentStore, Digest
from runtime.service.content import NotFound as ContentNotFound
from runtime.service.diff import DiffError, WhiteoutFormat, apply_layer, chain_ids
from runtime.service.images.errors import ImageError, PullError, short
from runtime.service.images.mediatypes import (
    LINUX_AMD64,
    Descriptor,
    Kind,
    Manifest,
    Platform,
    kind_of,
    parse_manifest,
    select_platform,
)
from runtime.service.snapshots import AlreadyExists, NotFound, Snapshotter, layer_target
from runtime.service.snapshots import Kind as SnapshotKind

LABEL_SNAPSHOT = "containerd.io/gc.ref.snapshot.{}"


class UnpackError(ImageError):
    pass


@dataclass(frozen=True)
class Resolved:
    manifest: Descriptor
    parsed: Manifest
    diff_ids: tuple[Digest, ...]


@dataclass(frozen=True)
class UnpackResult:
    chain_id: Digest  # the top snapshot: a container's rootfs is prepared on it
    applied: int  # layers extracted by this call
    skipped: int  # layers whose snapshot was already there


def resolve_manifest(content: ContentStore, target: Descriptor, *, what: str,
                     platform: Platform = LINUX_AMD64) -> Resolved:
    """The platform manifest under TARGET (a manifest or an index), its config's diff IDs."""
    try:
        body = content.read(target.digest)
        desc = target
        if kind_of(target.media_type, what=f"{what}: {short(target.digest)}") is Kind.INDEX:
            desc = select_platform(body, platform, what=f"{what}: index {short(target.digest)}")
            body = content.read(desc.digest)
        manifest = parse_manifest(body, desc.media_type,
                                  what=f"{what}: manifest {short(desc.digest)}")
        config = json.loads(content.read(manifest.config.digest))
    except ContentNotFound as e:
        raise UnpackError(f"{what}: {e}") from None
    except PullError as e:  # the media type decisions are shared with pull
        raise UnpackError(f"{what}: {e.what}") from None
    except ValueError as e:
        raise UnpackError(f"{what}: config {short(manifest.config.digest)}: not JSON: {e}"
                          ) from None
    raw = config.get("rootfs", {}).get("diff_ids") if isinstance(config, dict) else None
    if not isinstance(raw, list) or len(raw) != len(manifest.layers):
        raise UnpackError(f"{what}: config {short(manifest.config.digest)}: rootfs.diff_ids:"
                          f" want {len(manifest.layers)} entries (one per layer), got {raw!r}")
    try:
        diff_ids = tuple(Digest(d) for d in raw)
    except ValueError as e:
        raise UnpackError(f"{what}: config {short(manifest.config.digest)}: rootfs.diff_ids:"
                          f" {e}") from None
    return Resolved(desc, manifest, diff_ids)


def unpack(
    *,
    content: ContentStore,
    snapshotter: Snapshotter,
    snapshotter_name: str,
    target: Descriptor,
    what: str,
    platform: Platform = LINUX_AMD64,
    on_snapshot: Callable[[str], None] | None = None,
) -> UnpackResult:
    """Unpack TARGET's platform manifest into SNAPSHOTTER (see the module docstring).
    ON_SNAPSHOT(chain id) is told of every snapshot the image relies on, before use (a GC
    lease). WHAT names the image in errors."""
    r = resolve_manifest(content, target, what=what, platform=platform)
    chains = chain_ids(r.diff_ids)
    parent: str | None = None
    applied = skipped = 0
    for i, (layer, chain) in enumerate(zip(r.parsed.layers, chains, strict=True)):
        if on_snapshot is not None:
            on_snapshot(chain)
        if _committed(snapshotter, chain):
            skipped += 1
        else:
            _apply(content=content, snapshotter=snapshotter, layer=layer, chain=chain,
                   parent=parent, diff_id=r.diff_ids[i], what=f"{what}: layer {i}")
            applied += 1
        parent = chain
    if not chains:
        raise UnpackError(f"{what}: manifest {short(r.manifest.digest)} has no layers")
    try:
        content.update_labels(r.parsed.config.digest,
                              {LABEL_SNAPSHOT.format(snapshotter_name): chains[-1]})
    except ContentNotFound as e:
        raise UnpackError(f"{what}: {e}") from None
    return UnpackResult(chains[-1], applied, skipped)


def _committed(snapshotter: Snapshotter, key: str) -> bool:
    try:
        return snapshotter.stat(key).kind is SnapshotKind.COMMITTED
    except NotFound:
        return False


def _apply(*, content: ContentStore, snapshotter: Snapshotter, layer: Descriptor, chain: Digest,
           parent: str | None, diff_id: Digest, what: str) -> None:
    key = f"extract-{secrets.token_hex(6)}-{chain}"
    mounts = snapshotter.prepare(key, parent,
                                 labels={"containerd.io/snapshot.ref": chain})
    try:
        dest, fmt = layer_target(mounts)
        whiteouts: WhiteoutFormat = "overlay" if fmt == "overlay" else "native"
        try:
            with content.open(layer.digest) as f:
                result = apply_layer(f, dest, media_type=layer.media_type, whiteout_format=whiteouts)
        except (DiffError, ContentNotFound) as e:
            raise UnpackError(f"{what} {short(layer.digest)}: {e}") from None
        if result.diff_id != diff_id:
            raise UnpackError(f"{what} {short(layer.digest)}: diff ID {short(result.diff_id)}"
                              f" does not match the config's rootfs.diff_ids ({short(diff_id)})")
        try:
            snapshotter.commit(chain, key)
        except AlreadyExists:  # a concurrent unpack of the same chain committed first
            if not _committed(snapshotter, chain):
                raise
            snapshotter.remove(key)
    except BaseException:
        try:
            snapshotter.remove(key)
        except NotFound:
            pass
        raise
