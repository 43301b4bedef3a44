"""The three bodies of the PATCH verb (`clusterctl patch --type json|merge|strategic`).

::

    apply_patch(target, body, patch_type=, kind=)     parse JSON, then one of
      ├─ application/json-patch+json             json_patch             RFC 6902 operations
      ├─ application/merge-patch+json            json_merge_patch       RFC 7386
      └─ application/strategic-merge-patch+json  strategic_merge_patch  Kubernetes' SMP
                                                    │ per list field: list_strategy(kind, field)
                                                    ▼
                          MERGE_KEYS / KIND_MERGE_KEYS (merge item by item), SET_LISTS
                          (merge as a set of scalars), anything else is replaced

Every function returns a new object and leaves its arguments untouched. The list table is
shared with server-side apply (fieldset.py): a list merged by key here is an associative
list there, and a set list here is a set there.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import orjson

from api.kinds import KINDS

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH)


class PatchError(ValueError):
    """A patch that cannot be applied; the message names the operation or field path."""


# ---- list strategies: one line per list field ------------------------------------------

# Lists merged item by item, keyed by this field of each item (Kubernetes' patchMergeKey).
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "ports": "containerPort",
    "env": "name",
    "volumeMounts": "mountPath",
    "volumes": "name",
    "imagePullSecrets": "name",
    "ownerReferences": "uid",
    "conditions": "type",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
}
# Where a kind keys a field differently from MERGE_KEYS: (kind, field) -> key.
KIND_MERGE_KEYS: dict[tuple[str, str], str] = {
    ("Service", "ports"): "port",
}
# Lists of scalars merged as sets (patchStrategy merge without a key).
SET_LISTS: frozenset[str] = frozenset({"finalizers"})


def merge_key(kind: str, field: str) -> str | None:
    """The key that list FIELD of KIND is merged by, or None if it is not keyed."""
    return KIND_MERGE_KEYS.get((kind, field), MERGE_KEYS.get(field))


def is_set_list(field: str) -> bool:
    return field in SET_LISTS


# ---- JSON helpers ----------------------------------------------------------------------

def json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values: unlike Python's ==, true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict):
        return (isinstance(b, dict) and a.keys() == b.keys()
                and all(json_equal(v, b[k]) for k, v in a.items()))
    if isinstance(a, list):
        return (isinstance(b, list) and len(a) == len(b)
                and all(json_equal(x, y) for x, y in zip(a, b, strict=True)))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and bool(a == b)


_EXACT = orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATETIME | \
    orjson.OPT_PASSTHROUGH_DATACLASS


def same_json(a: Any, b: Any) -> bool:
    """json_equal(A, B), mostly at C speed, for large values equal more often than not (a
    spec a status write leaves as it was). json_equal implies ==, so unequal values
    are told at once; equal ones are proven by equal orjson encodings, which tell true
    from 1 and 1 from 1.0 (each spelled its own way) but spell NaN and infinities as
    null: an encoding with null in it proves nothing. Whatever is not proven so (keys in
    another order, 1 against 1.0, a value orjson does not take) json_equal decides."""
    if a != b:
        return False
    try:
        encoded = orjson.dumps(a, option=_EXACT)
        if encoded == orjson.dumps(b, option=_EXACT) and b"null" not in encoded:
            return True
    except TypeError:
        pass
    return json_equal(a, b)


def _show(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


# ---- RFC 7386 JSON merge patch ---------------------------------------------------------

def merge_patch_value(target: Any, patch: Any) -> Any:
    """RFC 7386 MergePatch(target, patch) for any JSON values; returns a new value."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    source = target if isinstance(target, dict) else {}
    result: dict[str, Any] = {}
    for key, value in source.items():
        if key not in patch:
            result[key] = copy.deepcopy(value)
        elif patch[key] is not None:
            result[key] = merge_patch_value(value, patch[key])
    for key, value in patch.items():
        if key not in source and value is not None:
            result[key] = merge_patch_value(None, value)
    return result


def json_merge_patch(target: dict[str, Any], patch: object) -> dict[str, Any]:
    """TARGET with the RFC 7386 merge patch PATCH applied: maps merge, null deletes a key,
    anything else (lists too) replaces. PATCH must be an object: the result is an API
    object."""
    if not isinstance(patch, dict):
        raise PatchError(f"merge patch must be a JSON object, got {_show(patch)}")
    result = merge_patch_value(target, patch)
    assert isinstance(result, dict)
    return result


def merge_patch_diff(original: dict[str, Any], modified: dict[str, Any]) -> dict[str, Any]:
    """The RFC 7386 merge patch that turns ORIGINAL into MODIFIED (which holds no nulls)."""
    patch: dict[str, Any] = {}
    for key in original:
        if key not in modified:
            patch[key] = None
    for key, value in modified.items():
        old = original.get(key)
        if key in original and json_equal(old, value):
            continue
        if isinstance(old, dict) and isinstance(value, dict):
            patch[key] = merge_patch_diff(old, value)
        else:
            patch[key] = copy.deepcopy(value)
    return patch


# ---- RFC 6902 JSON patch ---------------------------------------------------------------

_INDEX = re.compile(r"0|[1-9][0-9]*")


def parse_pointer(pointer: str) -> list[str]:
    """The reference tokens of an RFC 6901 JSON pointer ("" is the whole document)."""
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise ValueError(f"JSON pointer {pointer!r} must be empty or start with '/'")
    tokens = []
    for raw in pointer[1:].split("/"):
        if re.search(r"~(?![01])", raw):
            raise ValueError(f"JSON pointer {pointer!r} has a '~' not followed by 0 or 1")
        tokens.append(raw.replace("~1", "/").replace("~0", "~"))
    return tokens


def _index(token: str, size: int, *, for_add: bool) -> int:
    if for_add and token == "-":
        return size
    if not _INDEX.fullmatch(token):
        raise LookupError(f"{token!r} is not an array index")
    i = int(token)
    if i > size or (i == size and not for_add):
        raise LookupError(f"index {i} out of range (the array has {size} items)")
    return i


def _resolve(doc: Any, tokens: list[str]) -> Any:
    for token in tokens:
        if isinstance(doc, dict):
            if token not in doc:
                raise LookupError("path not found")
            doc = doc[token]
        elif isinstance(doc, list):
            doc = doc[_index(token, len(doc), for_add=False)]
        else:
            raise LookupError("path not found")
    return doc


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _resolve(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(last, len(parent), for_add=True), value)
    else:
        raise LookupError("path not found")
    return doc


def _remove(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        raise LookupError("cannot remove the whole document")
    parent = _resolve(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise LookupError("path not found")
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(last, len(parent), for_add=False))
    raise LookupError("path not found")


def _apply_op(doc: Any, op: Any, number: int) -> Any:
    if not isinstance(op, dict):
        raise PatchError(f"json patch op {number}: must be an object, got {_show(op)}")
    name, path = op.get("op"), op.get("path")
    label = f"json patch op {number} ({name} {path})"
    if name not in ("add", "remove", "replace", "move", "copy", "test"):
        raise PatchError(f"{label}: op must be one of add, remove, replace, move, copy, test")
    if not isinstance(path, str):
        raise PatchError(f"{label}: path must be a string")
    if name in ("add", "replace", "test") and "value" not in op:
        raise PatchError(f"{label}: value is required")
    source = op.get("from")
    if name in ("move", "copy") and not isinstance(source, str):
        raise PatchError(f"{label}: from must be a string")
    try:
        tokens = parse_pointer(path)
        if name == "add":
            return _add(doc, tokens, copy.deepcopy(op["value"]))
        if name == "remove":
            _remove(doc, tokens)
            return doc
        if name == "replace":
            _resolve(doc, tokens)
            if tokens:
                _remove(doc, tokens)
            return _add(doc, tokens, copy.deepcopy(op["value"]))
        if name == "test":
            actual = _resolve(doc, tokens)
            if not json_equal(actual, op["value"]):
                raise LookupError(f"test failed: value is {_show(actual)}, "
                                  f"expected {_show(op['value'])}")
            return doc
        assert isinstance(source, str)
        from_tokens = parse_pointer(source)
        if name == "copy":
            return _add(doc, tokens, copy.deepcopy(_resolve(doc, from_tokens)))
        if tokens[:len(from_tokens)] == from_tokens and tokens != from_tokens:
            raise LookupError(f"cannot move {source} into one of its children")
        if tokens == from_tokens:
            _resolve(doc, tokens)
            return doc
        return _add(doc, tokens, _remove(doc, from_tokens))
    except (LookupError, ValueError) as e:
        raise PatchError(f"{label}: {e.args[0] if e.args else e}") from None


def json_patch(target: dict[str, Any], ops: object) -> dict[str, Any]:
    """TARGET with the RFC 6902 operations OPS applied in order (all or nothing); errors
    name the operation by its index in OPS."""
    if not isinstance(ops, list):
        raise PatchError(f"json patch must be a JSON array of operations, got {_show(ops)}")
    doc: Any = copy.deepcopy(target)
    for number, op in enumerate(ops):
        doc = _apply_op(doc, op, number)
    if not isinstance(doc, dict):
        raise PatchError(f"json patch: the result must be a JSON object, got {_show(doc)}")
    return doc


# ---- Kubernetes strategic merge patch --------------------------------------------------

_ORDER = "$setElementOrder/"
_DELETE_FROM = "$deleteFromPrimitiveList/"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _item_path(path: str, key: str, value: Any) -> str:
    return f"{path}[{key}={json.dumps(value)}]"


def strategic_merge_patch(target: dict[str, Any], patch: dict[str, Any], *,
                          kind: str) -> dict[str, Any]:
    """TARGET (an object of KIND) with Kubernetes' strategic merge patch PATCH applied:
    maps merge, null deletes, lists merge by their patch merge key or as sets or are
    replaced (list_strategy), and the directives $patch (merge, replace, delete),
    $retainKeys, $deleteFromPrimitiveList/<field> and $setElementOrder/<field> apply."""
    if not isinstance(patch, dict):
        raise PatchError(f"strategic merge patch must be a JSON object, got {_show(patch)}")
    if kind not in {k for _, k in KINDS}:
        raise PatchError(f"strategic merge patch is not supported for kind {kind!r}; "
                         f"use {MERGE_PATCH} or {JSON_PATCH}")
    if patch.get("$patch") == "delete":
        raise PatchError("strategic merge patch: $patch: delete cannot delete the object")
    return _merge_map(copy.deepcopy(target), patch, kind=kind, path="")


def _merge_map(original: dict[str, Any], patch: dict[str, Any], *, kind: str,
               path: str) -> dict[str, Any]:
    where = path or "<root>"
    directive = patch.get("$patch", "merge")
    if directive == "replace":
        original = {}
    elif directive not in ("merge", "delete"):
        raise PatchError(f"{where}: unknown $patch directive {directive!r} "
                         "(merge, replace or delete)")
    result = dict(original)
    retain = patch.get("$retainKeys")
    if retain is not None:
        if not isinstance(retain, list) or not all(isinstance(k, str) for k in retain):
            raise PatchError(f"{where}: $retainKeys must be a list of field names")
        extra = sorted(k for k, v in patch.items()
                       if not k.startswith("$") and v is not None and k not in retain)
        if extra:
            raise PatchError(f"{where}: $retainKeys does not list {', '.join(extra)}, "
                             "which the patch sets")
        result = {k: v for k, v in result.items() if k in retain}
    for key, value in patch.items():
        if key.startswith(_DELETE_FROM):
            field = key[len(_DELETE_FROM):]
            if not isinstance(value, list):
                raise PatchError(f"{_join(path, field)}: {_DELETE_FROM}{field} "
                                 "must be a list")
            if isinstance(result.get(field), list):
                result[field] = [x for x in result[field]
                                 if not any(json_equal(x, v) for v in value)]
        elif key.startswith("$") and not key.startswith(_ORDER) and key not in (
                "$patch", "$retainKeys"):
            raise PatchError(f"{where}: unknown directive {key!r}")
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        sub = _join(path, key)
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            if value.get("$patch") == "delete":
                result.pop(key, None)
                continue
            old = result.get(key)
            result[key] = _merge_map(old if isinstance(old, dict) else {}, value,
                                     kind=kind, path=sub)
        elif isinstance(value, list):
            result[key] = _merge_list(result.get(key), value, field=key, kind=kind, path=sub)
        else:
            result[key] = value
    for key, value in patch.items():
        if key.startswith(_ORDER):
            field = key[len(_ORDER):]
            if not isinstance(value, list):
                raise PatchError(f"{_join(path, field)}: {_ORDER}{field} must be a list")
            if isinstance(result.get(field), list):
                result[field] = _set_order(result[field], value, key=merge_key(kind, field))
    return result


def _merge_list(original: Any, patch: list[Any], *, field: str, kind: str,
                path: str) -> list[Any]:
    replace = any(isinstance(i, dict) and i.get("$patch") == "replace" and len(i) == 1
                  for i in patch)
    items = [i for i in patch
             if not (isinstance(i, dict) and len(i) == 1 and "$patch" in i)]
    key = merge_key(kind, field)
    if key is None and not is_set_list(field):
        return copy.deepcopy(items)
    result = [] if replace or not isinstance(original, list) else list(original)
    if key is None:  # a set of scalars
        for n, item in enumerate(items):
            if isinstance(item, dict | list):
                raise PatchError(f"{path}[{n}]: {field} is a list of scalars, "
                                 f"got {_show(item)}")
            if not any(json_equal(item, x) for x in result):
                result.append(item)
        return result
    for n, item in enumerate(items):
        if not isinstance(item, dict) or item.get(key) is None:
            raise PatchError(f"{path}[{n}]: an item of {field} must be an object with "
                             f"its merge key {key!r}, got {_show(item)}")
        sub = _item_path(path, key, item[key])
        matches = [i for i, x in enumerate(result)
                   if isinstance(x, dict) and json_equal(x.get(key), item[key])]
        directive = item.get("$patch", "merge")
        if directive == "delete":
            result = [x for i, x in enumerate(result) if i not in matches]
        elif directive == "replace":
            merged = _merge_map({}, {k: v for k, v in item.items() if k != "$patch"},
                                kind=kind, path=sub)
            if matches:
                result[matches[0]] = merged
            else:
                result.append(merged)
        elif matches:
            result[matches[0]] = _merge_map(result[matches[0]], item, kind=kind, path=sub)
        else:
            result.append(_merge_map({}, item, kind=kind, path=sub))
    return result


def _set_order(items: list[Any], order: list[Any], *, key: str | None) -> list[Any]:
    """ITEMS with those named in ORDER ($setElementOrder) first, in that order; the rest
    keep their relative order after them."""
    def ident(x: Any) -> str:
        return json.dumps(x.get(key) if key is not None and isinstance(x, dict) else x,
                          sort_keys=True)
    rank = {ident(x): n for n, x in enumerate(order)}
    return sorted(items, key=lambda x: rank.get(ident(x), len(rank)))


# ---- the PATCH verb --------------------------------------------------------------------

def apply_patch(target: dict[str, Any], patch: bytes, *, patch_type: str,
                kind: str) -> dict[str, Any]:
    """TARGET with the PATCH body of content type PATCH_TYPE applied."""
    media = patch_type.split(";", 1)[0].strip().lower()
    if media not in PATCH_TYPES:
        raise PatchError(f"unsupported patch type {patch_type!r}; supported: "
                         + ", ".join(PATCH_TYPES))
    try:
        body = json.loads(patch)
    except (ValueError, UnicodeDecodeError) as e:
        raise PatchError(f"{kind} patch: the body is not valid JSON: {e}") from None
    if media == JSON_PATCH:
        return json_patch(target, body)
    if media == MERGE_PATCH:
        return json_merge_patch(target, body)
    if not isinstance(body, dict):
        raise PatchError(f"strategic merge patch must be a JSON object, got {_show(body)}")
    return strategic_merge_patch(target, body, kind=kind)
