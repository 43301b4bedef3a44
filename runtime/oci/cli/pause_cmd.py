"""corral-runc pause ID"""

from __future__ import annotations

from .flags import parse
from .main import Globals, need_id


def main(g: Globals, argv: list[str]) -> int:
    _, args = parse({}, argv)
    from ..container import pause
    pause(g.store().load(need_id(args, "pause")))
    return 0
