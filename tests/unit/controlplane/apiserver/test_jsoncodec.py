"""The API server's JSON codec is api/jsoncodec.py (shared with the client, tested in
tests/unit/api/test_jsoncodec.py), not a copy of it."""

from __future__ import annotations

import pytest

import api.jsoncodec
from controlplane.apiserver import jsoncodec


@pytest.mark.parametrize("name", ["loads", "dumps", "copy", "has_long_number"])
def test_the_server_uses_the_shared_codec(name: str) -> None:
    assert getattr(jsoncodec, name) is getattr(api.jsoncodec, name)
