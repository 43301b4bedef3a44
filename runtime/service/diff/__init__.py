"""Layers in, directories out: apply OCI layer tars to snapshot dirs (containerd's ``diff``).

    content store blob (tar or tar+gzip)
        │  apply_layer(stream, dest, whiteout_format=...)      apply.py
        │     gunzip ─► sha256 (= diff ID) ─► safe, streamed extraction into dest
        ▼
    ApplyResult(diff_id, size) ── the image config's rootfs.diff_ids[i] must equal diff_id
        │
        ▼  chain_id(diff_ids[:i+1])                            chain.py
    the name the layer's snapshot is committed under (snapshots/), shared between images

Errors (errors.py): InvalidLayer, UnsafeEntry, ApplyError — each names the tar entry.
"""

from runtime.service.diff.apply import ApplyResult, WhiteoutFormat, apply_layer
from runtime.service.diff.chain import chain_id, chain_ids
from runtime.service.diff.errors import ApplyError, DiffError, InvalidLayer, UnsafeEntry

__all__ = [
    "ApplyError",
    "ApplyResult",
    "DiffError",
    "InvalidLayer",
    "UnsafeEntry",
    "WhiteoutFormat",
    "apply_layer",
    "chain_id",
    "chain_ids",
]
