"""corral-runc run [--detach] [create's flags] ID

Foreground: we become a child subreaper (the init is our grandchild), forward signals to
it, wait, remove the container, and exit with its exit code (128+N for signal N)."""

from __future__ import annotations

from .create_cmd import FLAGS, options
from .flags import parse
from .main import Globals, need_id


def main(g: Globals, argv: list[str]) -> int:
    v, args = parse(FLAGS, argv, interspersed=True)
    cid = need_id(args, "run")
    from ..container import create, destroy, start
    from ..linux import PR_SET_CHILD_SUBREAPER, SYS
    opts = options(g, v)
    if not v["detach"]:
        SYS.prctl(PR_SET_CHILD_SUBREAPER, 1)
    c = create(g.store(), cid, opts)
    try:
        start(c)
    except BaseException:
        from ..container import delete
        delete(c, force=True)
        raise
    if v["detach"]:
        return 0
    from ..signals import wait_forwarding
    code = wait_forwarding(c.pid)
    destroy(c)
    return code
