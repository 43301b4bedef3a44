"""Chain IDs (OCI image-spec config.md, "Layer ChainID"): one identifier for a stack of layers.

    ChainID(L0)      = DiffID(L0)
    ChainID(L0..Ln)  = "sha256:" + hex(sha256(ChainID(L0..Ln-1) + " " + DiffID(Ln)))

A snapshotter names each committed layer snapshot by its chain ID, so two images that share
their first n layers share those n snapshots.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from runtime.service.content.digest import Digest


def chain_ids(diff_ids: Sequence[str]) -> list[Digest]:
    """The chain ID of every prefix of DIFF_IDS: ``[ChainID(L0), ChainID(L0..L1), ...]``."""
    out: list[Digest] = []
    for i, diff_id in enumerate(diff_ids):
        try:
            d = Digest(diff_id)
        except ValueError as e:
            raise ValueError(f"diff_ids[{i}]: {e}") from None
        if not out:
            out.append(d)
        else:
            h = hashlib.sha256(f"{out[-1]} {d}".encode())
            out.append(Digest(f"sha256:{h.hexdigest()}"))
    return out


def chain_id(diff_ids: Sequence[str]) -> Digest:
    """The chain ID of the whole stack DIFF_IDS (bottom layer first)."""
    if not diff_ids:
        raise ValueError("diff_ids: a chain needs at least one layer, got none")
    return chain_ids(diff_ids)[-1]
