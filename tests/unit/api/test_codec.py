"""Manifest decoding: multi-document, strict, errors that point at the line."""

from __future__ import annotations

import pytest

from api import codec

TWO = """\
# a comment
apiVersion: v1
kind: Namespace
metadata:
  name: prod
---
---
apiVersion: v1
kind: ConfigMap
metadata: {name: app, namespace: prod}
data:
  k: v
"""


def test_multi_document_yaml() -> None:
    docs = codec.decode(TWO, source="app.yaml")
    assert [d.obj["kind"] for d in docs] == ["Namespace", "ConfigMap"]
    assert [(d.index, d.line) for d in docs] == [(1, 2), (3, 8)]
    assert docs[1].where() == "app.yaml: document 3 (line 8)"


def test_json_and_list_kind() -> None:
    text = '{"apiVersion": "v1", "kind": "List", "items": [' \
           '{"kind": "ConfigMap", "metadata": {"name": "a"}}, ' \
           '{"kind": "ConfigMap", "metadata": {"name": "b"}}]}'
    assert [d.obj["metadata"]["name"] for d in codec.decode(text)] == ["a", "b"]


@pytest.mark.parametrize("text,words", [
    pytest.param("kind: A\nmetadata:\n  name: x\n  name: y\n",
                 "document 1: line 4: duplicate key 'name' (first at line 3)", id="dup-key"),
    pytest.param("- a\n- b\n", "document 1 (line 1): an object must be a mapping, got list",
                 id="not-a-mapping"),
    pytest.param("kind: A\nmetadata: [\n", "not valid YAML (line 3", id="syntax"),
    pytest.param("a: 1\n---\nb: [1, 2\n", "not valid YAML", id="second-doc-syntax"),
])
def test_decode_errors(text: str, words: str) -> None:
    with pytest.raises(codec.DecodeError, match=words.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[")):
        codec.decode(text, source="f.yaml")


def test_round_trip() -> None:
    objs = [d.obj for d in codec.decode(TWO)]
    again = [d.obj for d in codec.decode(codec.to_yaml(objs))]
    assert again == objs
    assert codec.to_yaml(objs[0]).startswith("apiVersion: v1\nkind: Namespace\n")
