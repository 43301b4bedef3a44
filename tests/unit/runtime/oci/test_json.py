from __future__ import annotations

import json

import pytest

from runtime.oci import _json


@pytest.mark.parametrize("text", ['{"a": [1, 2.5, "x", null, true, false]}', " [] ",
                                  '"\\u00e9\\n"', '{"nested": {"k": {}}}', "-0", "1e3"])
def test_loads_matches_stdlib(text: str) -> None:
    assert _json.loads(text) == json.loads(text)


@pytest.mark.parametrize("text", ["{", "[1,]", '{"a":1} x', "NaN", '"\x01"', "", b"\xff"])
def test_loads_rejects(text: str | bytes) -> None:
    with pytest.raises(_json.JSONError):
        _json.loads(text)


def test_dumps_matches_stdlib() -> None:
    obj = {"a": [1, "é", None, True, {"b": 2.5}]}
    assert _json.dumps(obj) == json.dumps(obj, separators=(",", ":"))
