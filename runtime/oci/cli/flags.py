"""A small flag parser with the grammar runc's CLI library accepts: `--name value`,
`--name=value`, `-name value`, single-letter aliases, repeated list flags, and flags
ending at the first positional argument (or `--`).

argparse would cost ~8 ms of imports on every container start; this is 60 lines."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

BOOL, STR, INT, LIST = "bool", "str", "int", "list"


class UsageError(Exception):
    pass


def parse(spec: Mapping[str, tuple[str, tuple[str, ...]]], argv: list[str],
          *, interspersed: bool = False) -> tuple[dict[str, Any], list[str]]:
    """SPEC maps flag name -> (kind, aliases). Returns (values, positional args).
    INTERSPERSED: flags may follow positionals (runc allows it for a few verbs)."""
    names: dict[str, str] = {}
    for name, (_, aliases) in spec.items():
        names[name] = name
        for a in aliases:
            names[a] = name
    values: dict[str, Any] = {n: ([] if k == LIST else None) for n, (k, _) in spec.items()}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            rest.extend(argv[i:])
            break
        if not arg.startswith("-") or arg == "-":
            rest.append(arg)
            if not interspersed:
                rest.extend(argv[i:])
                break
            continue
        key, eq, inline = arg.lstrip("-").partition("=")
        if key not in names:
            raise UsageError(f"flag provided but not defined: {arg.split('=')[0]}")
        name = names[key]
        kind = spec[name][0]
        if kind == BOOL:
            values[name] = inline.lower() not in ("false", "0") if eq else True
            continue
        if not eq:
            if i >= len(argv):
                raise UsageError(f"flag needs an argument: {arg}")
            inline = argv[i]
            i += 1
        if kind == INT:
            try:
                values[name] = int(inline)
            except ValueError:
                raise UsageError(f"invalid value {inline!r} for flag {arg}: "
                                 "must be an integer") from None
        elif kind == LIST:
            values[name].append(inline)
        else:
            values[name] = inline
    return values, rest
