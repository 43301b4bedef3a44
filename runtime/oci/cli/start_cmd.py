"""corral-runc start ID"""

from __future__ import annotations

from .flags import parse
from .main import Globals, need_id


def main(g: Globals, argv: list[str]) -> int:
    _, args = parse({}, argv)
    from ..container import start
    start(g.store().load(need_id(args, "start")))
    return 0
