"""corral-runc ps [--format table|json] ID [ps options]

json: the host pids of the container's processes. table: `ps` (default args -ef) run on
the host, filtered to those pids, as runc does."""

from __future__ import annotations

import sys

from .flags import STR, UsageError, parse
from .main import Globals, need_id

FLAGS = {"format": (STR, ("f",))}


def main(g: Globals, argv: list[str]) -> int:
    v, args = parse(FLAGS, argv)
    cid = need_id(args, "ps")
    fmt = v["format"] or "table"
    from .. import state
    c = g.store().load(cid)
    state.require("ps", c.status(), cid)
    cg = c.cgroup()
    pids = sorted(cg.pids()) if cg is not None else [c.pid]
    if fmt == "json":
        import json
        sys.stdout.write(json.dumps(pids) + "\n")
        return 0
    if fmt != "table":
        raise UsageError(f"invalid format option {fmt!r}")
    import subprocess
    out = subprocess.run(["ps", *(args[1:] or ["-ef"])], stdout=subprocess.PIPE, check=True,
                         text=True).stdout.splitlines()
    if not out:
        return 0
    header = out[0].split()
    if "PID" not in header:
        raise UsageError("ps output has no PID column")
    col = header.index("PID")
    wanted = set(pids)
    sys.stdout.write(out[0] + "\n")
    for line in out[1:]:
        fields = line.split()
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in wanted:
            sys.stdout.write(line + "\n")
    return 0
