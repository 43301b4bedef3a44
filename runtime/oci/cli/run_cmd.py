"""corral-runc run [--detach] [create's flags] ID

Foreground: we become a child subreaper (with a user namespace the init is our
grandchild), forward signals to it, relay its terminal to ours if it has one, wait,
remove the container, and exit with its exit code (128+N for signal N)."""

from __future__ import annotations

import os

from .create_cmd import FLAGS, options
from .flags import parse
from .main import Globals, need_id


def main(g: Globals, argv: list[str]) -> int:
    v, args = parse(FLAGS, argv, interspersed=True)
    cid = need_id(args, "run")
    from ..container import create, destroy, poststart
    from ..linux import PR_SET_CHILD_SUBREAPER, SYS
    opts = options(g, v)
    opts.own_console = not v["detach"]
    opts.start_now = True
    if not v["detach"]:
        SYS.prctl(PR_SET_CHILD_SUBREAPER, 1)
    c = create(g.store(), cid, opts)
    master = -1
    try:
        if c.console is not None:
            master = c.console.receive()
            c.console.close()
        poststart(c)
    except BaseException:
        from ..container import delete
        delete(c, force=True)
        raise
    if v["detach"]:
        return 0
    from ..signals import forward_to, wait_forwarding
    if master >= 0:
        from ..console import relay
        forward_to(c.pid)
        relay(master)
        os.close(master)
    code = wait_forwarding(c.pid)
    destroy(c)
    return code
