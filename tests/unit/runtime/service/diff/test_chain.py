"""Chain IDs, image-spec config.md "Layer ChainID"."""

from __future__ import annotations

import hashlib

import pytest

from runtime.service.diff import chain_id, chain_ids

# The two diff_ids of the image-spec config.md example; the chain ID below was computed with
# coreutils: printf 'sha256:c6f9… sha256:5f70…' | sha256sum
L0 = "sha256:c6f988f4874bb0add23a778f753c65efe992244e148a1d2ec2a8b664fb66bbd1"
L1 = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
L0_L1 = "sha256:c3191d32a37d7159b2e30830937d2e30268ad6c375a773a8994911a3aba9b93f"


@pytest.mark.parametrize(
    ("diff_ids", "want"),
    [
        pytest.param([L0], L0, id="one-layer-is-its-diff-id"),
        pytest.param([L0, L1], L0_L1, id="spec-example-two-layers"),
        pytest.param(
            [L0, L1, L0],
            "sha256:" + hashlib.sha256(f"{L0_L1} {L0}".encode()).hexdigest(),
            id="three-layers-builds-on-the-prefix",
        ),
    ],
)
def test_chain_id(diff_ids: list[str], want: str) -> None:
    assert chain_id(diff_ids) == want


def test_chain_ids_are_every_prefix() -> None:
    assert chain_ids([L0, L1]) == [L0, L0_L1]
    assert chain_id([L1, L0]) != L0_L1  # order matters


@pytest.mark.parametrize(
    ("diff_ids", "message"),
    [
        pytest.param([], "at least one layer", id="empty"),
        pytest.param([L0, "sha256:xyz"], r"diff_ids\[1\]: invalid digest 'sha256:xyz'",
                     id="bad-digest"),
    ],
)
def test_chain_id_errors(diff_ids: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        chain_id(diff_ids)
