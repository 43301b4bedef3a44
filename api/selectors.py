"""Label and field selectors, with Kubernetes' grammar and meaning.

    labels:  env=prod,tier!=cache,zone in (a,b),region notin (x),gpu,!legacy
    fields:  metadata.name=web,status.phase!=Running

A selector is a list of requirements that must all hold. `key!=v` and `key notin (..)`
also hold when the label is absent, as in Kubernetes. `from_label_selector` reads the
structured form objects carry (spec.selector: matchLabels and matchExpressions with In,
NotIn, Exists, DoesNotExist). Parsing errors say which requirement and why.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class SelectorError(ValueError):
    """A selector that does not parse or names invalid keys or values."""


class Requirement:
    __slots__ = ("key", "op", "values")

    def __init__(self, key: str, op: str, values: tuple[str, ...] = ()) -> None:
        self.key = key
        self.op = op
        self.values = values

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("=", "==", "in"):
            return present and labels[self.key] in self.values
        # "!=" and "notin" also match objects without the label
        return not present or labels[self.key] not in self.values

    def __repr__(self) -> str:
        return f"Requirement({self.key!r}, {self.op!r}, {self.values!r})"

    def __str__(self) -> str:
        if self.op == "exists":
            return self.key
        if self.op == "!":
            return "!" + self.key
        if self.op in ("in", "notin"):
            return f"{self.key} {self.op} ({','.join(self.values)})"
        return f"{self.key}{self.op}{self.values[0]}"


class Selector:
    """All requirements must hold; the empty selector matches everything."""

    def __init__(self, requirements: list[Requirement]) -> None:
        self.requirements = requirements

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def empty(self) -> bool:
        return not self.requirements

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


# ---- label keys and values (Kubernetes' qualified names) -----------------------------

def _is_name_part(s: str, max_len: int = 63) -> bool:
    """alphanumerics, '-', '_', '.'; starts and ends alphanumeric; at most MAX_LEN."""
    if not s or len(s) > max_len or not (s[0].isalnum() and s[-1].isalnum()):
        return False
    return s.isascii() and all(c.isalnum() or c in "-_." for c in s)


def _is_dns_subdomain(s: str) -> bool:
    if not s or len(s) > 253:
        return False
    return all(part and part.isascii() and part[0].isalnum() and part[-1].isalnum()
               and all((c.isalnum() and not c.isupper()) or c == "-" for c in part)
               for part in s.split("."))


def check_key(key: str) -> None:
    prefix, slash, name = key.rpartition("/")
    if slash and not _is_dns_subdomain(prefix):
        raise SelectorError(f"invalid label key {key!r}: prefix must be a DNS subdomain")
    if not _is_name_part(name):
        raise SelectorError(f"invalid label key {key!r}: name must be 1-63 characters, "
                            "alphanumerics, '-', '_' or '.', starting and ending "
                            "alphanumeric")


def check_value(value: str) -> None:
    if value and not _is_name_part(value):
        raise SelectorError(f"invalid label value {value!r}: at most 63 characters, "
                            "alphanumerics, '-', '_' or '.', starting and ending "
                            "alphanumeric")


# ---- the text grammar --------------------------------------------------------------

def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for c in text:
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError(f"unbalanced ')' in {text!r}")
        if c == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    if depth:
        raise SelectorError(f"unbalanced '(' in {text!r}")
    parts.append("".join(cur))
    return parts


def _parse_requirement(raw: str) -> Requirement:
    text = raw.strip()
    if not text:
        raise SelectorError("empty requirement")
    if text.startswith("!"):
        key = text[1:].strip()
        check_key(key)
        return Requirement(key, "!")
    words = text.split(None, 1)
    if len(words) == 2 and words[1].split(None, 1)[0] in ("in", "notin"):
        key = words[0]
        op, _, rest = words[1].partition(" ")
        rest = rest.strip()
        if not (rest.startswith("(") and rest.endswith(")")):
            raise SelectorError(f"{raw.strip()!r}: '{op}' needs a parenthesised value list")
        values = tuple(v.strip() for v in rest[1:-1].split(","))
        if values == ("",):
            raise SelectorError(f"{raw.strip()!r}: '{op}' needs at least one value")
        check_key(key)
        for v in values:
            check_value(v)
        return Requirement(key, op, values)
    for op in ("==", "!=", "="):
        if op in text:
            key, _, value = text.partition(op)
            key, value = key.strip(), value.strip()
            check_key(key)
            check_value(value)
            return Requirement(key, "=" if op == "==" else op, (value,))
    check_key(text)
    return Requirement(text, "exists")


def parse(text: str) -> Selector:
    """A label selector from its text form (`clusterctl get -l ...`, list calls)."""
    if not text.strip():
        return Selector([])
    try:
        return Selector([_parse_requirement(p) for p in _split_top(text)])
    except SelectorError as e:
        raise SelectorError(f"unable to parse label selector {text!r}: {e}") from None


def from_label_selector(sel: Mapping[str, Any] | None, field: str = "selector") -> Selector:
    """The structured LabelSelector of spec.selector (matchLabels, matchExpressions).
    None matches everything; errors name the field."""
    if not sel:
        return Selector([])
    reqs: list[Requirement] = []
    try:
        for key, value in (sel.get("matchLabels") or {}).items():
            check_key(key)
            check_value(value)
            reqs.append(Requirement(key, "=", (value,)))
    except SelectorError as e:
        raise SelectorError(f"{field}.matchLabels: {e}") from None
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for i, expr in enumerate(sel.get("matchExpressions") or []):
        where = f"{field}.matchExpressions[{i}]"
        op = ops.get(expr.get("operator", ""))
        if op is None:
            raise SelectorError(f"{where}.operator: must be one of In, NotIn, Exists, "
                                f"DoesNotExist; got {expr.get('operator')!r}")
        values = tuple(expr.get("values") or ())
        if op in ("in", "notin") and not values:
            raise SelectorError(f"{where}.values: must be non-empty for {expr['operator']}")
        if op in ("exists", "!") and values:
            raise SelectorError(f"{where}.values: must be empty for {expr['operator']}")
        try:
            check_key(expr.get("key", ""))
            for v in values:
                check_value(v)
        except SelectorError as e:
            raise SelectorError(f"{where}: {e}") from None
        reqs.append(Requirement(expr["key"], op, values))
    return Selector(reqs)


# ---- field selectors -----------------------------------------------------------------

class FieldSelector:
    """`path=value` / `path!=value` requirements on dotted paths of an object."""

    def __init__(self, requirements: list[tuple[str, bool, str]]) -> None:
        self.requirements = requirements  # (path, equal?, value)

    def matches(self, obj: Mapping[str, Any]) -> bool:
        for path, equal, value in self.requirements:
            got = _lookup(obj, path)
            if (got == value) != equal:
                return False
        return True


def _lookup(obj: Mapping[str, Any], path: str) -> str:
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return ""
        node = node[part]
    if isinstance(node, bool):
        return "true" if node else "false"
    return "" if node is None else str(node)


def parse_fields(text: str, allowed: frozenset[str] | None = None) -> FieldSelector:
    """A field selector; ALLOWED lists the paths a kind supports (None: any)."""
    reqs: list[tuple[str, bool, str]] = []
    if not text.strip():
        return FieldSelector(reqs)
    for raw in text.split(","):
        for op in ("==", "!=", "="):
            if op in raw:
                path, _, value = raw.partition(op)
                path = path.strip()
                if not path:
                    raise SelectorError(f"invalid field selector {text!r}: {raw!r} has no "
                                        "field")
                if allowed is not None and path not in allowed:
                    raise SelectorError(f"field selector {path!r} is not supported; "
                                        f"supported: {', '.join(sorted(allowed))}")
                reqs.append((path, op != "!=", value.strip()))
                break
        else:
            raise SelectorError(f"invalid field selector {text!r}: {raw!r} is not "
                                "field=value or field!=value")
    return FieldSelector(reqs)
