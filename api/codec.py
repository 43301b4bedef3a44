"""Manifests in, manifests out: multi-document YAML (and JSON, which is YAML) as users
write them for `clusterctl apply -f`, and the YAML/JSON `clusterctl get -o` prints.

Decoding is strict the way kubectl's is: a duplicated key is an error (YAML would keep
the last one silently), every document must be a mapping, and errors say which file,
which document and which line. `kind: List` documents are unpacked into their items.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

try:  # libyaml's parser when present: several times faster on large manifests
    _Base: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - pyyaml without libyaml
    _Base = yaml.SafeLoader


class DecodeError(ValueError):
    """A manifest that is not valid YAML/JSON or not a list of objects."""


class Document:
    """One object from a manifest, with where it came from (for error messages)."""

    __slots__ = ("index", "line", "obj", "source")

    def __init__(self, obj: dict[str, Any], *, source: str, index: int, line: int) -> None:
        self.obj = obj
        self.source = source
        self.index = index  # 1-based document number in the file
        self.line = line  # 1-based line where the document starts

    def where(self) -> str:
        return f"{self.source}: document {self.index} (line {self.line})"


class _StrictLoader(_Base):  # type: ignore[misc]  # the base is chosen at import time
    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise DecodeError(f"line {key_node.start_mark.line + 1}: duplicate key "
                                  f"{key!r} (first at line {seen[key]})")
            seen[key] = key_node.start_mark.line + 1
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


_StrictLoader.add_constructor("tag:yaml.org,2002:map", _StrictLoader.construct_mapping)


def decode(text: str, *, source: str = "<stdin>") -> list[Document]:
    """Every object in TEXT (empty documents skipped, `kind: List` unpacked)."""
    loader = _StrictLoader(text)
    docs: list[Document] = []
    index = 0
    try:
        while loader.check_node():
            node = loader.get_node()
            index += 1
            line = node.start_mark.line + 1
            try:
                obj = loader.construct_document(node)
            except DecodeError as e:
                raise DecodeError(f"{source}: document {index}: {e}") from None
            if obj is None:
                continue
            if not isinstance(obj, dict):
                raise DecodeError(f"{source}: document {index} (line {line}): an object "
                                  f"must be a mapping, got {type(obj).__name__}")
            if obj.get("kind") == "List" and isinstance(obj.get("items"), list):
                for i, item in enumerate(obj["items"]):
                    if not isinstance(item, dict):
                        raise DecodeError(f"{source}: document {index} (line {line}): "
                                          f"items[{i}] must be a mapping")
                    docs.append(Document(item, source=source, index=index, line=line))
                continue
            docs.append(Document(obj, source=source, index=index, line=line))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise DecodeError(f"{source}: not valid YAML{where}: {problem}") from None
    finally:
        loader.dispose()
    return docs


def to_yaml(objs: dict[str, Any] | list[dict[str, Any]]) -> str:
    """YAML for one object, or `---`-separated documents for several."""
    items = objs if isinstance(objs, list) else [objs]
    return "---\n".join(yaml.safe_dump(o, sort_keys=False, default_flow_style=False)
                        for o in items)


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=4) + "\n"
