"""The one schema source for API objects: nodes that validate, default and document.

An object is the plain dict JSON/YAML gives. A kind's schema is a tree of nodes
(`Obj`, `List`, `Map`, scalars); from it follow

    validate(obj)   every error at once, each naming its field path (kubectl shows all)
    defaults(obj)   a copy with Kubernetes' defaults filled in
    explain(path)   the documentation `clusterctl explain` prints

Unknown fields are errors (kubectl's strict field validation), with a did-you-mean.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


class FieldError:
    """One problem at one field path, e.g. `spec.replicas: must be >= 0, got -1`."""

    __slots__ = ("path", "problem")

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}" if self.path else self.problem

    def __repr__(self) -> str:
        return f"FieldError({self.path!r}, {self.problem!r})"


Errors = list[FieldError]
Check = Callable[[Any], "str | None"]  # a value check: None if fine, else the problem
# A cross-field rule of an object: given the (well-typed) value and its path, it appends
# errors at whatever sub-path they concern, e.g. `spec.template.metadata.labels`.
Validator = Callable[[Any, str, "Errors"], None]
# A default that depends on other fields: given the object with its field defaults
# applied, it fills in more (imagePullPolicy from the image tag, targetPort from port).
PostDefault = Callable[[dict[str, Any]], None]


class Node:
    type_name = "value"

    def __init__(self, *, doc: str = "", default: Any = None,
                 checks: tuple[Check, ...] = ()) -> None:
        self.doc = doc
        self.default = default
        self.checks = checks

    def validate(self, value: Any, path: str, errors: Errors) -> None:
        if self._type_ok(value, path, errors):
            for check in self.checks:
                problem = check(value)
                if problem:
                    errors.append(FieldError(path, problem))

    def _type_ok(self, value: Any, path: str, errors: Errors) -> bool:
        return True

    def with_defaults(self, value: Any) -> Any:
        return value


class Scalar(Node):
    def __init__(self, *types: type, type_name: str, doc: str = "", default: Any = None,
                 checks: tuple[Check, ...] = ()) -> None:
        super().__init__(doc=doc, default=default, checks=checks)
        self.types = types
        self.type_name = type_name

    def _type_ok(self, value: Any, path: str, errors: Errors) -> bool:
        if (isinstance(value, bool) and bool not in self.types) or not isinstance(value,
                                                                                  self.types):
            errors.append(FieldError(path, f"must be {self.type_name}, got {_show(value)}"))
            return False
        return True


def string(doc: str = "", *, default: str | None = None, checks: tuple[Check, ...] = (),
           enum: tuple[str, ...] = ()) -> Scalar:
    if enum:
        checks = (*checks, one_of(enum))
    return Scalar(str, type_name="a string", doc=doc, default=default, checks=checks)


def integer(doc: str = "", *, default: int | None = None, minimum: int | None = None,
            maximum: int | None = None) -> Scalar:
    checks: tuple[Check, ...] = ()
    if minimum is not None or maximum is not None:
        checks = (in_range(minimum, maximum),)
    return Scalar(int, type_name="an integer", doc=doc, default=default, checks=checks)


def boolean(doc: str = "", *, default: bool | None = None) -> Scalar:
    return Scalar(bool, type_name="a boolean", doc=doc, default=default)


def int_or_string(doc: str = "", *, default: int | str | None = None,
                  checks: tuple[Check, ...] = ()) -> Scalar:
    return Scalar(int, str, type_name="an integer or a string", doc=doc, default=default,
                  checks=checks)


class List(Node):
    type_name = "a list"

    def __init__(self, item: Node, *, doc: str = "", checks: tuple[Check, ...] = ()) -> None:
        super().__init__(doc=doc, checks=checks)
        self.item = item

    def _type_ok(self, value: Any, path: str, errors: Errors) -> bool:
        if not isinstance(value, list):
            errors.append(FieldError(path, f"must be a list, got {_show(value)}"))
            return False
        for i, v in enumerate(value):
            self.item.validate(v, f"{path}[{i}]", errors)
        return True

    def with_defaults(self, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        return [self.item.with_defaults(v) for v in value]


class Map(Node):
    """An object with free keys (labels, annotations, data)."""

    type_name = "a map"

    def __init__(self, value: Node, *, doc: str = "", checks: tuple[Check, ...] = ()) -> None:
        super().__init__(doc=doc, checks=checks)
        self.value = value

    def _type_ok(self, value: Any, path: str, errors: Errors) -> bool:
        if not isinstance(value, dict):
            errors.append(FieldError(path, f"must be a map, got {_show(value)}"))
            return False
        before = len(errors)
        for k, v in value.items():
            self.value.validate(v, f"{path}[{k!r}]", errors)
        return len(errors) == before  # the map's own checks need well-typed values

    def with_defaults(self, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {k: self.value.with_defaults(v) for k, v in value.items()}


class Obj(Node):
    type_name = "an object"

    def __init__(self, fields: dict[str, Node], *, doc: str = "",
                 required: tuple[str, ...] = (), checks: tuple[Check, ...] = (),
                 validators: tuple[Validator, ...] = (),
                 post_defaults: tuple[PostDefault, ...] = (), default: Any = None) -> None:
        super().__init__(doc=doc, checks=checks, default=default)
        self.fields = fields
        self.required = required
        self.validators = validators  # run only when the fields themselves are valid
        self.post_defaults = post_defaults

    def _type_ok(self, value: Any, path: str, errors: Errors) -> bool:
        if not isinstance(value, dict):
            errors.append(FieldError(path, f"must be an object, got {_show(value)}"))
            return False
        for key in self.required:
            if value.get(key) in (None, ""):
                errors.append(FieldError(_join(path, key), "is required"))
        before = len(errors)
        for key, v in value.items():
            node = self.fields.get(key)
            if node is None:
                errors.append(FieldError(_join(path, key),
                                         "unknown field" + did_you_mean(key, self.fields)))
            elif v is not None:
                node.validate(v, _join(path, key), errors)
        if len(errors) == before:
            for validator in self.validators:
                validator(value, path, errors)
        return True

    def with_defaults(self, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        out = dict(value)
        for key, node in self.fields.items():
            if out.get(key) is None and node.default is not None:
                d = node.default
                out[key] = d() if callable(d) else d
            if key in out:
                out[key] = node.with_defaults(out[key])
        for post in self.post_defaults:
            post(out)
        return out

    def describe(self, path: str) -> tuple[str, Node]:
        """The node at a dotted PATH below this one (for `explain`)."""
        node: Node = self
        for part in [p for p in path.split(".") if p]:
            while isinstance(node, List | Map):
                node = node.item if isinstance(node, List) else node.value
            if not isinstance(node, Obj) or part not in node.fields:
                raise KeyError(f"field {part!r} does not exist" + (
                    did_you_mean(part, node.fields) if isinstance(node, Obj) else ""))
            node = node.fields[part]
        return path, node


def explain(node: Node, path: str = "") -> str:
    """What `clusterctl explain` prints for NODE: its type, doc, and its fields."""
    lines = [f"FIELD: {path or '<root>'} <{node.type_name}>", ""]
    if node.doc:
        lines += ["DESCRIPTION:", f"    {node.doc}", ""]
    inner = node
    while isinstance(inner, List | Map):
        inner = inner.item if isinstance(inner, List) else inner.value
    if isinstance(inner, Obj) and inner.fields:
        lines.append("FIELDS:")
        for name, child in inner.fields.items():
            req = " -required-" if name in inner.required else ""
            lines.append(f"  {name}\t<{child.type_name}>{req}")
            if child.doc:
                lines.append(f"    {child.doc.splitlines()[0]}")
    return "\n".join(lines)


# ---- reusable checks ----------------------------------------------------------------

def one_of(choices: tuple[str, ...]) -> Check:
    def check(v: Any) -> str | None:
        return None if v in choices else f"must be one of {', '.join(choices)}; got {v!r}"
    return check


def exactly_one_of(*keys: str, what: str = "") -> Check:
    """An object check: exactly one of KEYS is set (a volume's source, a probe's handler)."""
    def check(v: Any) -> str | None:
        given = [k for k in keys if isinstance(v, dict) and v.get(k) is not None]
        if len(given) == 1:
            return None
        name = what or "of " + ", ".join(keys)
        if not given:
            return f"must specify exactly one {name}: {', '.join(keys)}"
        return f"must specify exactly one {name}, got {', '.join(given)}"
    return check


def at_most_one_of(*keys: str, what: str = "") -> Check:
    """An object check: at most one of KEYS is set."""
    def check(v: Any) -> str | None:
        given = [k for k in keys if isinstance(v, dict) and v.get(k) is not None]
        if len(given) <= 1:
            return None
        return f"may not specify more than one {what or 'of ' + ', '.join(keys)}, " \
               f"got {', '.join(given)}"
    return check


def in_range(minimum: int | None, maximum: int | None) -> Check:
    def check(v: Any) -> str | None:
        if minimum is not None and v < minimum:
            return f"must be >= {minimum}, got {v}"
        if maximum is not None and v > maximum:
            return f"must be <= {maximum}, got {v}"
        return None
    return check


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _show(value: Any) -> str:
    names = {str: "string", bool: "boolean", int: "integer", float: "number", list: "list",
             dict: "object", type(None): "null"}
    kind = names.get(type(value), type(value).__name__)
    if isinstance(value, dict | list):
        return kind
    text = repr(value)
    return f"{kind} {text if len(text) <= 40 else text[:37] + '...'}"


def did_you_mean(key: str, known: Mapping[str, object]) -> str:
    import difflib
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
