"""The example manifests users are pointed at stay valid."""

from __future__ import annotations

import glob
import os

import pytest

from api import codec, kinds

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
EXAMPLES = sorted(glob.glob(os.path.join(ROOT, "manifests", "examples", "*.yaml")))


def test_there_are_examples() -> None:
    assert EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_example_is_valid(path: str) -> None:
    with open(path) as f:
        docs = codec.decode(f.read(), source=path)
    assert docs
    for doc in docs:
        kinds.validate(kinds.defaults(doc.obj))
