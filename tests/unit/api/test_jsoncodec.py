"""api/jsoncodec.py's cheap paths give the standard answers: the digit-run test answers as
the regular expression \\d{19} does, copy() as copy.deepcopy, and both stay the cheaper; the
client and the API server use this one codec."""

from __future__ import annotations

import copy
import json
import random
import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from api import client as api_client
from api import jsoncodec

LONG_RUN = re.compile(rb"\d{19}")
CONFIGMAP = {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "cfg", "namespace": "default", "labels": {"a": "b"},
                          "uid": "0c6b8a4e-1f7e-4a53-9f0e-2d1c1e1f2a3b", "generation": 1,
                          "managedFields": [{"manager": "m", "fieldsV1": {"f:data": {}}}]},
             "data": {"payload": "x" * 900}}


@pytest.mark.parametrize("raw, found", [
    pytest.param(b"", False, id="empty"),
    pytest.param(b'{"n":123456789012345678}', False, id="18-digits"),
    pytest.param(b'{"n":1234567890123456789}', True, id="19-digits"),
    pytest.param(b'{"n":-18446744073709551616}', True, id="negative-20-digits"),
    pytest.param(b'{"s":"1234567890123456789"}', True, id="in-a-string"),
    pytest.param(b'{"n":123456789.0123456789}', False, id="split-by-a-point"),
    pytest.param("١٢٣٤٥٦٧٨٩٠١٢٣٤٥٦٧٨٩٠".encode(), False, id="non-ascii-digits"),
    pytest.param(b"x" * 5000 + b"9" * 19, True, id="at-the-end"),
    pytest.param(b"1234567890 123456789", False, id="runs-split-by-a-space"),
])
def test_long_number_test_answers_as_the_regex(raw: bytes, found: bool) -> None:
    assert jsoncodec.has_long_number(raw) is found
    assert (LONG_RUN.search(raw) is not None) is found


def test_long_number_test_agrees_with_the_regex_on_random_bytes() -> None:
    rng = random.Random(4)
    alphabet = b"0123456789" * 6 + b'x.-",:{}\xc3\xa9 '
    for _ in range(2000):
        raw = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 60)))
        assert jsoncodec.has_long_number(raw) is (LONG_RUN.search(raw) is not None), raw


@pytest.mark.parametrize("raw", [
    pytest.param(b'{"n":18446744073709551615}', id="uint64-max"),
    pytest.param(b'{"n":18446744073709551616}', id="uint64-max-plus-one"),
    pytest.param(b'{"s":"12345678901234567890123"}', id="digits-in-a-string"),
])
def test_loads_with_long_digit_runs_answers_as_the_standard_library(raw: bytes) -> None:
    for got in (jsoncodec.loads(raw), api_client._loads(raw)):
        want = json.loads(raw)
        assert got == want
        assert [type(v) for v in got.values()] == [type(v) for v in want.values()]


@pytest.mark.parametrize("obj, want", [
    pytest.param({"n": 2 ** 64}, b'{"n":18446744073709551616}', id="over-64-bits"),
    pytest.param({"s": "\u00e9", "n": 2 ** 70}, '{"s":"\u00e9","n":1180591620717411303424}'.encode(),
                 id="non-ascii-as-utf8-in-the-fallback-too"),
    pytest.param({"a": [1, None, True]}, b'{"a":[1,null,true]}', id="orjson"),
])
def test_client_and_server_encode_alike(obj: Any, want: bytes) -> None:
    assert jsoncodec.dumps(obj) == api_client._encode(obj) == want


@pytest.mark.parametrize("doc", [
    pytest.param(CONFIGMAP, id="configmap"),
    pytest.param({"a": [1, 2.5, True, None, "s", [[{"b": []}]]], "c": {}}, id="nested"),
    pytest.param([{"big": 2 ** 70}], id="list-root-big-int"),
    pytest.param("scalar", id="scalar"),
])
def test_copy_equals_deepcopy_and_shares_no_container(doc: Any) -> None:
    out = jsoncodec.copy(doc)
    assert out == copy.deepcopy(doc)
    originals = {id(x) for x in _containers(doc)}
    assert not originals & {id(x) for x in _containers(out)}


def test_copy_keeps_scalar_types_and_falls_back_for_other_values() -> None:
    doc: dict[str, Any] = {"t": True, "i": 1, "f": 1.0, "tuple": ([1],)}
    out = jsoncodec.copy(doc)
    assert [type(v) for v in out.values()] == [bool, int, float, tuple]
    out["tuple"][0].append(2)  # deepcopy's copy: the original list is untouched
    assert doc["tuple"] == ([1],)


def _containers(doc: Any) -> list[Any]:
    if isinstance(doc, dict):
        return [doc, *(c for v in doc.values() for c in _containers(v))]
    if isinstance(doc, list):
        return [doc, *(c for v in doc for c in _containers(v))]
    return []


def _best(fn: Callable[[], object], n: int = 300) -> float:
    """The fastest of five timings of N calls: what a loaded machine disturbs least."""
    out = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        out.append(time.perf_counter() - t0)
    return min(out)


def test_the_cheap_paths_stay_cheaper_than_what_they_replace() -> None:
    raw = jsoncodec.dumps(CONFIGMAP)
    assert _best(lambda: jsoncodec.has_long_number(raw)) < 0.5 * _best(
        lambda: LONG_RUN.search(raw))  # measured: ~13x
    assert _best(lambda: jsoncodec.copy(CONFIGMAP)) < 0.75 * _best(
        lambda: copy.deepcopy(CONFIGMAP))  # measured: ~3.5x
