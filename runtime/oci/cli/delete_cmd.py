"""corral-runc delete [--force] ID"""

from __future__ import annotations

from .flags import BOOL, parse
from .main import Globals, need_id

FLAGS = {"force": (BOOL, ("f",))}


def main(g: Globals, argv: list[str]) -> int:
    v, args = parse(FLAGS, argv, interspersed=True)
    cid = need_id(args, "delete")
    from ..container import delete
    from ..errors import NotFound
    try:
        c = g.store().load(cid)
    except NotFound:
        if v["force"]:
            return 0  # runc: delete --force of a missing container succeeds
        raise
    delete(c, force=bool(v["force"]))
    return 0
