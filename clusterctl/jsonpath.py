"""kubectl's JSONPath templates, for `-o jsonpath=...` and `wait --for=jsonpath=...`.

    render("{.metadata.name}", obj)                               "web"
    render("{range .items[*]}{.metadata.name}{'\\n'}{end}", lst)   one name a line
    render('{.status.conditions[?(@.type=="Ready")].status}', o)   "True"

Supported: text outside braces, `$`/`@`, `.field`, `['field']`, `[n]`, `[a:b]`, `[*]`,
`.*`, `..field` (recursive), filters `[?(@.path OP literal)]` and `[?(@.path)]`,
`range ... end`, and quoted string literals. Several results of one expression are joined
by a space; maps and lists print as JSON, as kubectl does.
"""

from __future__ import annotations

import json
import re
from typing import Any


class JSONPathError(ValueError):
    """A template that does not parse."""


_MISSING = object()


def parse_template(template: str) -> list[tuple[str, str]]:
    """[("text", s) | ("expr", s)] of TEMPLATE."""
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(template):
        start = template.find("{", i)
        if start < 0:
            out.append(("text", template[i:]))
            break
        if start > i:
            out.append(("text", template[i:start]))
        depth, j, quote = 0, start, ""
        while j < len(template):
            c = template[j]
            if quote:
                if c == "\\":
                    j += 1
                elif c == quote:
                    quote = ""
            elif c in "'\"":
                quote = c
            elif c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        if j >= len(template):
            raise JSONPathError(f"unclosed action in {template!r}")
        out.append(("expr", template[start + 1:j].strip()))
        i = j + 1
    return out


_SEGMENT = re.compile(r"""\.\.(?P<deep>[\w\-/]+|\*)|\.(?P<field>[\w\-/]+|\*)
                          |\[(?P<bracket>(?:'[^']*'|"[^"]*"|[^\]])*)\]""", re.X)


def _segments(path: str) -> list[tuple[str, str]]:
    path = path.strip()
    if path.startswith(("$", "@")):
        path = path[1:]
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(path):
        m = _SEGMENT.match(path, i)
        if m is None:
            raise JSONPathError(f"unrecognized path at {path[i:]!r}")
        if m.group("deep") is not None:
            out.append(("deep", m.group("deep")))
        elif m.group("field") is not None:
            out.append(("field", m.group("field")))
        else:
            inner = m.group("bracket").strip()
            if inner.startswith("?") and _FILTER.match(inner) is None:
                raise JSONPathError(f"unrecognized filter {inner!r}")
            out.append(("bracket", inner))
        i = m.end()
    return out


def _children(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, list):
        return list(value)
    return []


def _descend(value: Any) -> list[Any]:
    out = [value]
    for child in _children(value):
        out += _descend(child)
    return out


def _literal(text: str) -> Any:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    try:
        return json.loads(text)
    except ValueError:
        return text


_FILTER = re.compile(r"^\?\((?P<left>@[^=!<>]*?)\s*(?:(?P<op>==|!=|<=|>=|<|>)\s*"
                     r"(?P<right>.+?))?\s*\)$")


def _filter(items: list[Any], expr: str) -> list[Any]:
    m = _FILTER.match(expr)
    if m is None:
        raise JSONPathError(f"unrecognized filter {expr!r}")
    out = []
    for item in items:
        found = evaluate(m.group("left"), item)
        if not found:
            continue
        if m.group("op") is None:
            out.append(item)
            continue
        left, right, op = found[0], _literal(m.group("right")), m.group("op")
        try:
            ok = {"==": left == right, "!=": left != right}.get(op)
            if ok is None:
                ok = {"<": left < right, ">": left > right, "<=": left <= right,
                      ">=": left >= right}[op]
        except TypeError:
            ok = False
        if ok:
            out.append(item)
    return out


def _bracket(value: Any, inner: str) -> list[Any]:
    if inner == "*":
        return _children(value)
    if inner.startswith("?"):
        return _filter(_children(value) if isinstance(value, list) else [value], inner)
    if inner[:1] in "'\"":
        keys = [_literal(k) for k in inner.split(",")]
        return [value[k] for k in keys if isinstance(value, dict) and k in value]
    if not isinstance(value, list):
        return []
    if ":" in inner:
        parts = [int(p) if p.strip() else None for p in inner.split(":")[:3]]
        return value[slice(*parts)]
    try:
        index = int(inner)
    except ValueError:
        raise JSONPathError(f"unrecognized index [{inner}]") from None
    return [value[index]] if -len(value) <= index < len(value) else []


def evaluate(path: str, root: Any) -> list[Any]:
    """Every value PATH selects in ROOT."""
    nodes = [root]
    for kind, arg in _segments(path):
        nxt: list[Any] = []
        for node in nodes:
            if kind == "field":
                if arg == "*":
                    nxt += _children(node)
                elif isinstance(node, dict) and arg in node:
                    nxt.append(node[arg])
            elif kind == "deep":
                for sub in _descend(node):
                    if arg == "*":
                        nxt += _children(sub)
                    elif isinstance(sub, dict) and arg in sub:
                        nxt.append(sub[arg])
            else:
                nxt += _bracket(node, arg)
        nodes = nxt
    return nodes


def show(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _unescape(text: str) -> str:
    return text.encode("latin-1", "backslashreplace").decode("unicode_escape")


def _run(tokens: list[tuple[str, str]], root: Any, current: Any) -> tuple[str, int]:
    out: list[str] = []
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        if kind == "text":
            out.append(text)
        elif text == "end":
            return "".join(out), i
        elif text.startswith("range "):
            items = evaluate(text[6:], current)
            body = tokens[i + 1:]
            if not items:
                _, used = _run(body, root, None)
            for item in items:
                rendered, used = _run(body, root, item)
                out.append(rendered)
            i += used + 1
        elif text[:1] in "'\"":
            out.append(_unescape(_literal(text)))
        else:
            start = root if text.startswith("$") else current
            out.append(" ".join(show(v) for v in evaluate(text, start)))
        i += 1
    return "".join(out), i


def render(template: str, obj: Any) -> str:
    """TEMPLATE filled in from OBJ."""
    tokens = parse_template(template)
    opened = sum(1 for k, t in tokens if k == "expr" and t.startswith("range "))
    closed = sum(1 for k, t in tokens if k == "expr" and t == "end")
    if opened != closed:
        raise JSONPathError(f"{template!r}: each range needs its end")
    text, _ = _run(tokens, obj, obj)
    return text
