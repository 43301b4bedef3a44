"""corral-runc list [--format table|json] [--quiet]"""

from __future__ import annotations

import sys

from .flags import BOOL, STR, UsageError, parse
from .main import Globals

FLAGS = {"format": (STR, ("f",)), "quiet": (BOOL, ("q",))}


def main(g: Globals, argv: list[str]) -> int:
    v, _ = parse(FLAGS, argv)
    fmt = v["format"] or "table"
    if fmt not in ("table", "json"):
        raise UsageError(f"invalid format option {fmt!r}")
    store = g.store()
    from ..errors import NotFound
    states = []
    for cid in store.ids():
        try:
            states.append(store.load(cid).runc_state())
        except NotFound:  # deleted while we listed
            continue
    if v["quiet"]:
        sys.stdout.write("".join(s["id"] + "\n" for s in states))
    elif fmt == "json":
        import json
        sys.stdout.write(json.dumps(states) + "\n")
    else:
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"])
                 for s in states]
        widths = [max(len(r[i]) for r in rows) for i in range(6)]
        for r in rows:
            sys.stdout.write("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))
                             .rstrip() + "\n")
    return 0
