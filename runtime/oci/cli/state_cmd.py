"""corral-runc state ID: runc's state JSON on stdout."""

from __future__ import annotations

import sys

from .flags import parse
from .main import Globals, need_id


def main(g: Globals, argv: list[str]) -> int:
    _, args = parse({}, argv)
    import json
    c = g.store().load(need_id(args, "state"))
    sys.stdout.write(json.dumps(c.runc_state(), indent=2) + "\n")
    return 0
