"""corral-runc create [--bundle DIR] [--pid-file F] [--console-socket S] ID"""

from __future__ import annotations

from .flags import BOOL, INT, STR, parse
from .main import Globals, need_id

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..container import Options

FLAGS = {
    "bundle": (STR, ("b",)),
    "pid-file": (STR, ()),
    "console-socket": (STR, ()),
    "no-pivot": (BOOL, ()),
    "no-new-keyring": (BOOL, ()),
    "preserve-fds": (INT, ()),
    "detach": (BOOL, ("d",)),  # accepted by run only; harmless here
}


def options(g: Globals, v: dict[str, Any]) -> Options:
    from ..container import Options
    return Options(bundle=v["bundle"] or ".", pid_file=v["pid-file"],
                   console_socket=v["console-socket"], no_pivot=bool(v["no-pivot"]),
                   no_new_keyring=bool(v["no-new-keyring"]),
                   preserve_fds=v["preserve-fds"] or 0, systemd_cgroup=g.systemd_cgroup)


def main(g: Globals, argv: list[str]) -> int:
    v, args = parse(FLAGS, argv, interspersed=True)
    cid = need_id(args, "create")
    from ..container import create
    create(g.store(), cid, options(g, v))
    return 0
