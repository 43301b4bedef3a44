"""Field sets: which fields of an object a field manager owns (server-side apply).

::

    object ──fields_of()──► FieldSet ◄──from_fields_v1()── {"f:spec": {"f:replicas": {}}}
           ──walk_fields(obj, Nodes())──► the same, and every path walked (look-ups spared)
                              │  | & -  (union, intersection, difference)
                              └──to_fields_v1()──► metadata.managedFields[].fieldsV1

A path is a tuple of elements, each as Kubernetes' FieldsV1 spells it:

    f:<name>              a field of a map          f:spec, f:replicas
    k:{"name":"web"}      an item of an associative list, by its key (JSON, keys sorted)
    v:"x"                 an item of a set list (finalizers), by its value (JSON)
    i:<n>                 an item by index (read, never produced)

A set holds the leaves an object sets (scalars, empty maps, atomic lists, set items) and
the items of associative lists; a map is never owned itself, only its fields. Lists are
associative or sets by the same table strategic merge patch uses (patch.merge_key,
patch.is_set_list); every other list is owned as a whole. In metadata only labels,
annotations, finalizers and ownerReferences are ever owned; apiVersion and kind never.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import json
import pickle
from collections.abc import Container, Iterable, Iterator, Mapping
from typing import Any

import orjson

from controlplane.apiserver.patch import is_set_list, json_equal, merge_key, same_json

Path = tuple[str, ...]

OWNED_METADATA = ("labels", "annotations", "finalizers", "ownerReferences")
_UNOWNED_TOP = ("apiVersion", "kind")


class FieldSetError(ValueError):
    """A FieldsV1 document or an object that cannot be turned into a field set."""


class FieldSet:
    """An immutable set of field paths. An operation that leaves a set as it was gives
    that very set, whose FieldsV1 form, once made, is kept (to_fields_v1)."""

    __slots__ = ("_paths", "_v1")

    def __init__(self, paths: Iterable[Path] = ()) -> None:
        self._paths: frozenset[Path] = frozenset(tuple(p) for p in paths)
        self._v1: bytes | None = None

    @classmethod
    def _of(cls, paths: frozenset[Path]) -> FieldSet:
        """A set over PATHS as they are (tuples already): no copy, no conversion."""
        out = cls.__new__(cls)
        out._paths = paths
        out._v1 = None
        return out

    @property
    def paths(self) -> frozenset[Path]:
        """The paths, unordered (iterating the set sorts them)."""
        return self._paths

    # -- set operations (a result equal to self is self) --
    def union(self, other: FieldSet) -> FieldSet:
        if other._paths <= self._paths:
            return self
        return FieldSet._of(self._paths | other._paths)

    def intersection(self, other: FieldSet) -> FieldSet:
        return self.subset(self._paths & other._paths)

    def difference(self, other: FieldSet) -> FieldSet:
        return self.subset(self._paths - other._paths) if other._paths else self

    def subset(self, paths: frozenset[Path]) -> FieldSet:
        """The set over PATHS (some of this set's): this very set if they are all."""
        return self if len(paths) == len(self._paths) else FieldSet._of(paths)

    __or__ = union
    __and__ = intersection
    __sub__ = difference

    def has_prefix(self, prefix: Path) -> bool:
        """Whether PREFIX or anything below it is in the set."""
        n = len(prefix)
        return any(p[:n] == prefix for p in self._paths)

    def __contains__(self, path: object) -> bool:
        return path in self._paths

    def __iter__(self) -> Iterator[Path]:
        return iter(sorted(self._paths))

    def __len__(self) -> int:
        return len(self._paths)

    def __bool__(self) -> bool:
        return bool(self._paths)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FieldSet) and self._paths == other._paths

    def __hash__(self) -> int:
        return hash(self._paths)

    def __repr__(self) -> str:
        return f"FieldSet({[path_string(p) for p in self]})"

    # -- FieldsV1 --
    def to_fields_v1(self) -> dict[str, Any]:
        """The set in FieldsV1 form: a tree of elements; "." marks a member that also
        has members below it, a member with nothing below is an empty map. Made once
        per set (kept encoded: each call gives a tree of its own)."""
        if self._v1 is not None:
            tree: dict[str, Any] = orjson.loads(self._v1)
            return tree
        tree = self._fields_v1_tree()
        with contextlib.suppress(TypeError):  # (orjson refuses a lone surrogate: not kept)
            self._v1 = orjson.dumps(tree)
        return tree

    def _fields_v1_tree(self) -> dict[str, Any]:
        root: dict[str, Any] = {}
        for path in self._paths:
            node = root
            for element in path:
                node = node.setdefault(element, {})
        for path in self._paths:
            node = root
            for element in path:
                node = node[element]
            if node and "." not in node:
                node["."] = {}
        return _sorted_tree(root)

    @classmethod
    def from_fields_v1(cls, data: object) -> FieldSet:
        """The set DATA spells. The last PARSED_CACHE sets read are kept by DATA's
        encoding: the pods of one template are owned alike, and an object's entries are
        read again at each of its writes."""
        if not isinstance(data, dict):
            raise FieldSetError(f"fieldsV1 must be a map, got {type(data).__name__}")
        try:
            key: bytes | None = orjson.dumps(data)
        except TypeError:  # (not a key: read it every time)
            key = None
        if key is not None and (known := _PARSED.get(key)) is not None:
            _PARSED.move_to_end(key)
            return known
        paths: set[Path] = set()
        _read_tree(data, (), paths)
        out = cls(paths)
        if key is not None:
            _PARSED[key] = out
            if len(_PARSED) > PARSED_CACHE:
                _PARSED.popitem(last=False)
        return out


PARSED_CACHE = 512
_PARSED: collections.OrderedDict[bytes, FieldSet] = collections.OrderedDict()


def _sorted_tree(node: dict[str, Any]) -> dict[str, Any]:
    return {k: _sorted_tree(node[k]) for k in sorted(node)}


def _read_tree(node: dict[str, Any], prefix: Path, out: set[Path]) -> None:
    if not node and prefix:
        out.add(prefix)
    for element, child in node.items():
        if element == ".":
            if prefix:
                out.add(prefix)
            continue
        tag, sep, body = element.partition(":")
        if not sep or tag not in ("f", "k", "v", "i") or not body:
            raise FieldSetError(f"fieldsV1: bad path element {element!r} below "
                                f"{path_string(prefix) or '<root>'}")
        if tag in ("k", "v"):
            try:
                value = json.loads(body)
            except ValueError:
                raise FieldSetError(f"fieldsV1: {element!r} does not hold JSON") from None
            if tag == "k" and not isinstance(value, dict):
                raise FieldSetError(f"fieldsV1: {element!r}: a key must be a JSON object")
        if not isinstance(child, dict):
            raise FieldSetError(f"fieldsV1: {element!r} must map to a map")
        _read_tree(child, (*prefix, element), out)


# ---- path elements ---------------------------------------------------------------------

def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def field_element(name: str) -> str:
    return f"f:{name}"


def key_element(keys: Mapping[str, Any]) -> str:
    return f"k:{_dumps(dict(keys))}"


@functools.lru_cache(maxsize=4096, typed=True)
def _key_element_of(key: str, value: str | int) -> str:
    return key_element({key: value})


def value_element(value: Any) -> str:
    return f"v:{_dumps(value)}"


def path_string(path: Path) -> str:
    """PATH as Kubernetes prints it: .spec.template.spec.containers[name="web"].image"""
    out = []
    for element in path:
        tag, _, body = element.partition(":")
        if tag == "f":
            out.append(f".{body}")
        elif tag == "k":
            keys = json.loads(body)
            out.append("[" + ",".join(f"{k}={_dumps(v)}" for k, v in keys.items()) + "]")
        elif tag == "v":
            out.append(f"[={body}]")
        else:
            out.append(f"[{body}]")
    return "".join(out)


# ---- the fields an object sets ---------------------------------------------------------

def fields_of(obj: Mapping[str, Any]) -> FieldSet:
    """The paths OBJ sets: its leaves and the items of its associative and set lists."""
    return walk_fields(obj, None)


class Nodes:
    """What walk_fields saw besides the leaves: every path it went through, and whether
    value_at(obj, p) finds each of them where the walk did (``exact``). That holds unless
    an associative list has two items with the same key, or a key (or a set an item)
    that is not a string or an integer: find_item matches by JSON equality (1.0 == 1,
    NaN != NaN) and takes the first match."""

    __slots__ = ("exact", "paths")

    def __init__(self) -> None:
        self.paths: set[Path] = set()
        self.exact = True

    @staticmethod
    def known(nodes: Nodes | None) -> set[Path] | frozenset[Path]:
        """The paths NODES vouches the walked object has (value_at finds each): every
        path walked when exact, else (or with no NODES) none."""
        return nodes.paths if nodes is not None and nodes.exact else frozenset()


def walk_fields(obj: Mapping[str, Any], nodes: Nodes | None, *,
                unchanged: Container[str] = ()) -> FieldSet:
    """fields_of(OBJ); with NODES, also collect the paths walked through into it.
    UNCHANGED: top-level fields whose values an earlier write had too (equal_roots): the
    walks of such values are kept (WALKS_KEPT of them, by the value's pickle, which
    is exact: the same bytes, the same walk), not made again at each write."""
    kind = str(obj.get("kind") or "")
    out: set[Path] = set()
    for key, value in obj.items():
        if key in _UNOWNED_TOP or value is None:
            continue
        if key == "metadata" and isinstance(value, dict):
            if nodes is not None:
                nodes.paths.add(("f:metadata",))
            for mkey in OWNED_METADATA:
                if value.get(mkey) is not None:
                    _walk(value[mkey], ("f:metadata", f"f:{mkey}"), field=mkey, kind=kind,
                          out=out, nodes=nodes)
            continue
        if key in unchanged and isinstance(value, dict):
            _walk_kept(value, key=key, kind=kind, out=out, nodes=nodes)
            continue
        _walk(value, (f"f:{key}",), field=key, kind=kind, out=out, nodes=nodes)
    if nodes is not None:
        nodes.paths.update(out)
    return FieldSet._of(frozenset(out))


WALKS_KEPT = 512
# (kind, top-level field, pickle of its value) -> (the paths it sets, the paths walked
# through, whether they are exact): see walk_fields
_WALKS: collections.OrderedDict[tuple[str, str, bytes],
                                tuple[frozenset[Path], frozenset[Path], bool]] = \
    collections.OrderedDict()


def _walk_kept(value: dict[str, Any], *, key: str, kind: str, out: set[Path],
               nodes: Nodes | None) -> None:
    try:
        kept: tuple[str, str, bytes] | None = (kind, key, hashlib.blake2b(
            pickle.dumps(value, protocol=5), digest_size=32).digest())
    except Exception:  # (a value that does not pickle: walked every time)
        kept = None
    walk = None
    if kept is not None and (walk := _WALKS.get(kept)) is not None:
        _WALKS.move_to_end(kept)
    if walk is None:
        sub: set[Path] = set()
        sub_nodes = Nodes()
        _walk(value, (f"f:{key}",), field=key, kind=kind, out=sub, nodes=sub_nodes)
        walk = frozenset(sub), frozenset(sub_nodes.paths), sub_nodes.exact
        if kept is not None:
            _WALKS[kept] = walk
            if len(_WALKS) > WALKS_KEPT:
                _WALKS.popitem(last=False)
    out.update(walk[0])
    if nodes is not None:
        nodes.paths.update(walk[1])
        nodes.exact = nodes.exact and walk[2]


def list_item_element(item: Any, *, field: str, kind: str, path: Path) -> str | None:
    """The element naming ITEM of list FIELD: k:{...} or v:..., None for atomic lists."""
    key = merge_key(kind, field)
    if key is not None:
        if not isinstance(item, dict) or item.get(key) is None:
            raise FieldSetError(f"{path_string(path)}: an item of an associative list "
                                f"must be an object with its key {key!r}")
        value = item[key]
        if type(value) in (str, int):  # (the common keys: their elements are kept)
            return _key_element_of(key, value)
        return key_element({key: value})
    if is_set_list(field):
        if isinstance(item, dict | list):
            raise FieldSetError(f"{path_string(path)}: an item of a set must be a scalar")
        return value_element(item)
    return None


def _walk(value: Any, path: Path, *, field: str, kind: str, out: set[Path],
          nodes: Nodes | None = None) -> None:
    if isinstance(value, dict):
        if nodes is not None:
            nodes.paths.add(path)
        children = [(k, v) for k, v in value.items() if v is not None]
        if not children:
            out.add(path)
        for k, v in children:
            _walk(v, (*path, f"f:{k}"), field=k, kind=kind, out=out, nodes=nodes)
        return
    if isinstance(value, list) and value and (merge_key(kind, field) or is_set_list(field)):
        if nodes is not None:
            nodes.paths.add(path)
            if nodes.exact:
                nodes.exact = _plain_items(value, merge_key(kind, field))
        for item in value:
            element = list_item_element(item, field=field, kind=kind, path=path)
            assert element is not None
            out.add((*path, element))
            if isinstance(item, dict):
                for k, v in item.items():
                    if v is not None:
                        _walk(v, (*path, element, f"f:{k}"), field=k, kind=kind, out=out,
                              nodes=nodes)
        return
    out.add(path)


def _plain_items(items: list[Any], key: str | None) -> bool:
    """Every item's KEY (KEY None: every item of a set) a string or an integer (or a
    boolean); for KEY, no two the same."""
    seen: set[tuple[type, Any]] = set()
    for item in items:
        value = item.get(key) if key is not None and isinstance(item, dict) else item
        if key is not None and not isinstance(item, dict):
            return False
        if type(value) not in (str, int, bool):
            return False
        if key is not None:
            if (type(value), value) in seen:
                return False
            seen.add((type(value), value))
    return True


# ---- reading an object at a path -------------------------------------------------------

class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
PRESENT = "<present>"  # the value of an existing list item (its content is its fields)


@functools.lru_cache(maxsize=4096)
def _element_value(body: str) -> Any:
    """The JSON value of a k: or v: element's BODY (shared: read it, never change it)."""
    return json.loads(body)


def find_item(items: list[Any], element: str) -> int | None:
    """The index of the list item ELEMENT (k:, v: or i:) names, or None."""
    tag, _, body = element.partition(":")
    if tag == "i":
        n = int(body)
        return n if 0 <= n < len(items) else None
    wanted = _element_value(body)
    for n, item in enumerate(items):
        if tag == "v" and json_equal(item, wanted):
            return n
        if tag == "k" and isinstance(item, dict) and all(
                k in item and json_equal(item[k], v) for k, v in wanted.items()):
            return n
    return None


def value_at(obj: Any, path: Path) -> Any:
    """The value at PATH in OBJ; PRESENT for an existing list item; MISSING if absent."""
    node = obj
    for n, element in enumerate(path):
        tag, _, body = element.partition(":")
        if tag == "f":
            if not isinstance(node, dict) or body not in node or node[body] is None:
                return MISSING
            node = node[body]
        else:
            if not isinstance(node, list):
                return MISSING
            index = find_item(node, element)
            if index is None:
                return MISSING
            if n == len(path) - 1:
                return PRESENT
            node = node[index]
    return node


def changed_fields(old: Any, new: Any, candidates: FieldSet, nodes: Nodes | None = None,
                   *, roots: tuple[set[str], set[str]] | None = None) -> FieldSet:
    """The paths of CANDIDATES whose value in NEW differs from OLD (or is new).

    A path under a top-level field (or a metadata field) equal in OLD and NEW cannot
    have changed: those are not looked at one by one (a status write leaves the spec).
    ROOTS: equal_roots(OLD, NEW) if the caller has it. NODES (exact, from walking NEW)
    tells which paths NEW has without a look-up."""
    same_top, same_meta = roots if roots is not None else equal_roots(old, new)
    known = Nodes.known(nodes)
    out = []
    for path in candidates.paths:
        if path[0] in same_top or (len(path) > 1 and path[1] in same_meta
                                   and path[0] == "f:metadata"):
            continue
        before = value_at(old, path)
        if before is MISSING:
            if path in known or value_at(new, path) is not MISSING:
                out.append(path)
            continue
        after = value_at(new, path)
        if after is not MISSING and not json_equal(before, after):
            out.append(path)
    return FieldSet._of(frozenset(out))


def equal_roots(old: Any, new: Any) -> tuple[set[str], set[str]]:
    """The elements f:<key> of the top-level fields, and of the metadata fields, whose
    values are equal in OLD and NEW (JSON equality, as changed_fields compares; told
    mostly at C speed, patch.same_json)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return set(), set()
    top = {f"f:{k}" for k, v in new.items()
           if k != "metadata" and k in old and same_json(old[k], v)}
    meta: set[str] = set()
    old_meta, new_meta = old.get("metadata"), new.get("metadata")
    if isinstance(old_meta, dict) and isinstance(new_meta, dict):
        meta = {f"f:{k}" for k in OWNED_METADATA
                if k in new_meta and k in old_meta and same_json(old_meta[k], new_meta[k])}
    return top, meta
