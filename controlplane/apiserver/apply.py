"""Server-side apply and field ownership (metadata.managedFields).

::

    apply(live, applied, manager=, force=, now=)          the `apply` verb
      config = applied minus nulls and server-set metadata; mine = fields_of(config)
      merged = live ⊕ config        maps merge, associative lists merge by key, sets unite
      changed = mine whose value in merged differs from live
      others' fields ∩ changed ──► ApplyConflict (all at once), unless force moves them
      removed = (what my last Apply owned) - mine, unless another manager still owns it
      managedFields: my Apply entry := mine

    track_update(old, new, manager=, now=)                create / update / patch
      changed = fields_of(new) whose value differs from old
      my Update entry += changed; every other entry -= changed; fields gone are dropped

Entries are {"manager", "operation": "Apply"|"Update", "apiVersion", "time",
"fieldsType": "FieldsV1", "fieldsV1"}; an entry left with no fields is dropped.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from controlplane.apiserver.fieldset import (
    MISSING,
    FieldSet,
    FieldSetError,
    Nodes,
    Path,
    changed_fields,
    equal_roots,
    fields_of,
    find_item,
    path_string,
    value_at,
    walk_fields,
)
from controlplane.apiserver.patch import is_set_list, json_equal, merge_key, same_json

APPLY = "Apply"
UPDATE = "Update"
# Metadata the server sets: an applied config never overwrites it on a live object.
SERVER_METADATA = ("uid", "resourceVersion", "generation", "creationTimestamp",
                   "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields",
                   "selfLink")


@dataclass(frozen=True)
class FieldConflict:
    """MANAGER already owns PATH with another value."""

    manager: str
    path: str
    operation: str = field(default="", compare=False)
    api_version: str = field(default="", compare=False)

    def who(self) -> str:
        """The manager as Kubernetes names it: "name", plus `using v` for Update ones."""
        name = json.dumps(self.manager, ensure_ascii=False)
        if self.operation == UPDATE and self.api_version:
            return f"{name} using {self.api_version}"
        return name


class ApplyConflict(Exception):
    """An apply would change fields other managers own; lists every such field."""

    def __init__(self, conflicts: list[FieldConflict]) -> None:
        self.conflicts = list(conflicts)
        super().__init__(conflict_message(self.conflicts))


def conflict_message(conflicts: list[FieldConflict]) -> str:
    """Kubernetes' wording: one conflict on one line, several grouped by manager."""
    if len(conflicts) == 1:
        c = conflicts[0]
        return f"Apply failed with 1 conflict: conflict with {c.who()}: {c.path}"
    groups: dict[str, list[str]] = {}
    for c in sorted(conflicts, key=lambda c: (c.manager, c.operation)):
        groups.setdefault(c.who(), []).append(c.path)
    lines = []
    for who, paths in groups.items():
        lines.append(f"conflicts with {who}:")
        lines += [f"- {p}" for p in paths]
    return f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)


# ---- managedFields entries -------------------------------------------------------------

@dataclass
class _Entry:
    manager: str
    operation: str
    api_version: str
    time: str
    fields: FieldSet
    extra: dict[str, Any]  # keys we do not interpret (subresource), kept as they are

    def to_json(self) -> dict[str, Any]:
        return {"manager": self.manager, "operation": self.operation,
                "apiVersion": self.api_version, "time": self.time, **self.extra,
                "fieldsType": "FieldsV1", "fieldsV1": self.fields.to_fields_v1()}


_KNOWN = ("manager", "operation", "apiVersion", "time", "fieldsType", "fieldsV1")


def _entries(obj: dict[str, Any] | None) -> list[_Entry]:
    """The managedFields of OBJ; entries with the same manager and operation unite."""
    meta = (obj or {}).get("metadata") or {}
    out: dict[tuple[str, str], _Entry] = {}
    for n, raw in enumerate(meta.get("managedFields") or []):
        if not isinstance(raw, dict) or raw.get("fieldsType", "FieldsV1") != "FieldsV1":
            continue
        try:
            fields = FieldSet.from_fields_v1(raw.get("fieldsV1") or {})
        except FieldSetError as e:
            raise FieldSetError(f"metadata.managedFields[{n}]: {e}") from None
        key = (str(raw.get("manager") or ""), str(raw.get("operation") or UPDATE))
        if key in out:
            out[key].fields |= fields
            continue
        out[key] = _Entry(manager=key[0], operation=key[1],
                          api_version=str(raw.get("apiVersion") or ""),
                          time=str(raw.get("time") or ""), fields=fields,
                          extra={k: v for k, v in raw.items() if k not in _KNOWN})
    return list(out.values())


def _unchanged(before: dict[str, Any], after: dict[str, Any], old: list[_Entry],
               new: list[_Entry], *, same_top: set[str] | frozenset[str] = frozenset(),
               ) -> bool:
    """A no-op write: the object and every entry's fields are as they were (then the
    entries keep their times, as in Kubernetes). SAME_TOP: the elements f:<key> of the
    top-level fields already found equal (fieldset.equal_roots), not compared again."""
    sets = {(e.manager, e.operation): e.fields for e in old if e.fields}
    if sets != {(e.manager, e.operation): e.fields for e in new if e.fields}:
        return False
    if before.keys() | {"metadata"} != after.keys() | {"metadata"}:
        return False
    def meta(obj: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    return all(k == "metadata" or f"f:{k}" in same_top or same_json(before[k], v)
               for k, v in after.items()) and same_json(meta(before), meta(after))


def _store(obj: dict[str, Any], entries: list[_Entry]) -> None:
    meta = obj.setdefault("metadata", {})
    kept = [e.to_json() for e in entries if e.fields]
    if kept:
        meta["managedFields"] = kept
    else:
        meta.pop("managedFields", None)


def _mine(entries: list[_Entry], *, manager: str, operation: str, api_version: str,
          now: str) -> _Entry:
    for e in entries:
        if e.manager == manager and e.operation == operation:
            e.api_version, e.time = api_version, now
            return e
    entry = _Entry(manager=manager, operation=operation, api_version=api_version, time=now,
                   fields=FieldSet(), extra={})
    entries.append(entry)
    return entry


def _existing(obj: dict[str, Any], fields: FieldSet, nodes: Nodes | None = None) -> FieldSet:
    """The paths of FIELDS that OBJ has; NODES (exact, from walking OBJ) answers most
    without a look-up."""
    known = Nodes.known(nodes)
    return fields.subset(frozenset(p for p in fields.paths
                                   if p in known or value_at(obj, p) is not MISSING))


# ---- apply -----------------------------------------------------------------------------

def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _merge(live: Any, config: Any, *, field: str, kind: str) -> Any:
    """CONFIG merged into LIVE the way apply merges: maps field by field, associative
    lists item by item by key, set lists as sets; anything else CONFIG replaces."""
    if isinstance(live, dict) and isinstance(config, dict):
        out = dict(live)
        for k, v in config.items():
            out[k] = _merge(live.get(k, MISSING), v, field=k, kind=kind)
        return out
    if isinstance(live, list) and isinstance(config, list):
        key = merge_key(kind, field)
        if key is not None and all(isinstance(x, dict) and key in x for x in live + config):
            merged = list(live)
            for item in config:
                at = next((n for n, x in enumerate(merged) if json_equal(x[key], item[key])),
                          None)
                if at is None:
                    merged.append(copy.deepcopy(item))
                else:
                    merged[at] = _merge(merged[at], item, field=field, kind=kind)
            return merged
        if is_set_list(field):
            merged = list(live)
            merged += [copy.deepcopy(x) for x in config
                       if not any(json_equal(x, y) for y in merged)]
            return merged
    return copy.deepcopy(config)


def _remove_path(obj: dict[str, Any], path: Path, owned: FieldSet) -> None:
    """Remove PATH from OBJ, then any map or list left empty by it that no one in OWNED
    owns (never a top-level field)."""
    trail: list[tuple[Any, Path]] = []  # (container, path of container)
    node: Any = obj
    for n, element in enumerate(path[:-1]):
        trail.append((node, path[:n]))
        tag, _, body = element.partition(":")
        if tag == "f" and isinstance(node, dict) and isinstance(node.get(body), dict | list):
            node = node[body]
        elif tag != "f" and isinstance(node, list):
            index = find_item(node, element)
            if index is None:
                return
            node = node[index]
        else:
            return
    last = path[-1]
    tag, _, body = last.partition(":")
    if tag == "f" and isinstance(node, dict):
        node.pop(body, None)
    elif tag != "f" and isinstance(node, list):
        index = find_item(node, last)
        if index is not None:
            node.pop(index)
    # node is the container of the removed element, at path[:-1]
    depth = len(path) - 1
    while depth > 1 and not node and not owned.has_prefix(path[:depth]):
        parent, _ = trail[depth - 1]
        element = path[depth - 1]
        tag, _, body = element.partition(":")
        if tag != "f" or not isinstance(parent, dict):
            break  # an emptied list item keeps its place; its key fields are never removed
        parent.pop(body, None)
        node, depth = parent, depth - 1


def _is_key_field(path: Path) -> bool:
    """Whether PATH is a key field of an associative list item (f:name under k:{name})."""
    if len(path) < 2 or not path[-2].startswith("k:") or not path[-1].startswith("f:"):
        return False
    return path[-1][2:] in json.loads(path[-2][2:])


def apply(live: dict[str, Any] | None, applied: dict[str, Any], *, manager: str,
          force: bool, now: str) -> dict[str, Any]:
    """LIVE with the APPLIED configuration of MANAGER merged in and managedFields updated
    (LIVE None: create). Raises ApplyConflict listing every field another manager owns
    with a different value, unless FORCE, which takes them over."""
    if not isinstance(applied, dict):
        raise FieldSetError(f"an applied configuration must be a map, got "
                            f"{type(applied).__name__}")
    config: dict[str, Any] = _without_nulls(applied)
    config_meta = config.get("metadata")
    if isinstance(config_meta, dict):
        drop = SERVER_METADATA if live is not None else ("managedFields",)
        config["metadata"] = {k: v for k, v in config_meta.items() if k not in drop}
    kind = str(config.get("kind") or (live or {}).get("kind") or "")
    api_version = str(config.get("apiVersion") or (live or {}).get("apiVersion") or "")
    mine = fields_of(config)
    if live is None:
        result: dict[str, Any] = copy.deepcopy(config)
        _store(result, [_Entry(manager=manager, operation=APPLY, api_version=api_version,
                               time=now, fields=mine, extra={})])
        return result

    entries = _entries(live)
    original = _entries(live)
    merged = _merge(copy.deepcopy(live), config, field="", kind=kind)
    assert isinstance(merged, dict)
    changed = changed_fields(live, merged, mine)
    conflicts = [FieldConflict(e.manager, path_string(p), operation=e.operation,
                               api_version=e.api_version)
                 for e in entries if e.manager != manager for p in e.fields & changed]
    if conflicts and not force:
        raise ApplyConflict(conflicts)
    for e in entries:
        if e.manager != manager:
            e.fields -= changed

    previous = next((e.fields for e in entries
                     if e.manager == manager and e.operation == APPLY), FieldSet())
    entry = _mine(entries, manager=manager, operation=APPLY, api_version=api_version,
                  now=now)
    entry.fields = mine
    owned = FieldSet()
    for e in entries:
        owned |= e.fields
    removed = [p for p in previous - mine
               if not owned.has_prefix(p) and not _is_key_field(p)]
    for path in sorted(removed, key=len):
        _remove_path(merged, path, owned)
    for e in entries:
        e.fields = _existing(merged, e.fields)
    if _unchanged(live, merged, original, entries):
        return copy.deepcopy(live)
    _store(merged, entries)
    return merged


def track_update(old: dict[str, Any] | None, new: dict[str, Any], *, manager: str,
                 now: str) -> dict[str, Any]:
    """NEW with managedFields updated for an ordinary write by MANAGER: it owns (as an
    Update entry) every field whose value it changed, which other managers lose; fields
    that no longer exist leave every entry. The entries come from OLD (NEW's are ignored,
    clients send back what they read)."""
    # only metadata.managedFields is set below: the rest may be shared with NEW
    result = {**new}
    if isinstance(new.get("metadata"), dict):
        result["metadata"] = dict(new["metadata"])
    entries = _entries(old)
    original = [dataclasses.replace(e) for e in entries]  # (entries' fields are replaced,
    nodes = Nodes()                                       # never changed in place)
    roots = equal_roots(old or {}, result)  # (the top-level fields a write left alone)
    walked = walk_fields(result, nodes, unchanged={root[2:] for root in roots[0]})
    changed = changed_fields(old or {}, result, walked, nodes, roots=roots)
    for e in entries:
        if not (e.manager == manager and e.operation == UPDATE):
            e.fields = e.fields - changed
    if changed:
        entry = _mine(entries, manager=manager, operation=UPDATE,
                      api_version=str(result.get("apiVersion") or ""), now=now)
        entry.fields |= changed
    for e in entries:
        e.fields = _existing(result, e.fields, nodes)
    # a changed field is a change to the object (changed_fields compares as _unchanged);
    # the top-level fields changed_fields found equal are not compared again
    if old is not None and not changed and _unchanged(old, result, original, entries,
                                                      same_top=roots[0]):
        original_meta = (old.get("metadata") or {}).get("managedFields")
        _store(result, [])
        if original_meta:
            result.setdefault("metadata", {})["managedFields"] = copy.deepcopy(original_meta)
        return result
    _store(result, entries)
    return result
