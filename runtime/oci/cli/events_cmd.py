"""corral-runc events [--stats] [--interval 5s] ID

One JSON object per line: {"type": "stats", "id": ..., "data": ...} every interval (or
once with --stats), and {"type": "oom", "id": ...} when the kernel OOM-kills in it."""

from __future__ import annotations

import sys
import time

from .flags import BOOL, STR, UsageError, parse
from .main import Globals, need_id

FLAGS = {"stats": (BOOL, ()), "interval": (STR, ())}


def parse_duration(text: str) -> float:
    units = (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0))
    for suffix, scale in units:
        if text.endswith(suffix):
            try:
                value = float(text[: -len(suffix)]) * scale
            except ValueError:
                break
            if value > 0:
                return value
            break
    raise UsageError(f"invalid --interval {text!r} (e.g. 5s, 500ms)")


def main(g: Globals, argv: list[str]) -> int:
    v, args = parse(FLAGS, argv, interspersed=True)
    cid = need_id(args, "events")
    interval = parse_duration(v["interval"] or "5s")
    import json

    from .. import state
    c = g.store().load(cid)
    state.require("events", c.status(), cid)
    cg = c.cgroup()

    def emit(event: dict[str, object]) -> None:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()

    if v["stats"]:
        emit({"type": "stats", "id": cid, "data": cg.stats()})
        return 0
    import gc
    gc.enable()  # the launcher disables it for short commands; this one runs on
    ooms = cg.oom_kill_count()
    next_stats = time.monotonic()
    while c.status() != state.STOPPED:
        now = time.monotonic()
        count = cg.oom_kill_count()
        if count > ooms:
            emit({"type": "oom", "id": cid})
            ooms = count
        if now >= next_stats:
            emit({"type": "stats", "id": cid, "data": cg.stats()})
            next_stats = now + interval
        time.sleep(min(0.2, interval))
    return 0
