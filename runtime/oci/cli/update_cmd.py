"""corral-runc update [--resources FILE|-] [resource flags] ID"""

from __future__ import annotations

import sys

from .flags import INT, STR, UsageError, parse
from .main import Globals, need_id

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# flag -> (kind, path in linux.resources)
RESOURCE_FLAGS: dict[str, tuple[str, tuple[str, str]]] = {
    "memory": (INT, ("memory", "limit")),
    "memory-reservation": (INT, ("memory", "reservation")),
    "memory-swap": (INT, ("memory", "swap")),
    "cpu-shares": (INT, ("cpu", "shares")),
    "cpu-quota": (INT, ("cpu", "quota")),
    "cpu-period": (INT, ("cpu", "period")),
    "cpu-rt-period": (INT, ("cpu", "realtimePeriod")),
    "cpu-rt-runtime": (INT, ("cpu", "realtimeRuntime")),
    "cpuset-cpus": (STR, ("cpu", "cpus")),
    "cpuset-mems": (STR, ("cpu", "mems")),
    "pids-limit": (INT, ("pids", "limit")),
    "blkio-weight": (INT, ("blockIO", "weight")),
}
FLAGS = {"resources": (STR, ("r",)), **{k: (kind, ()) for k, (kind, _) in RESOURCE_FLAGS.items()}}


def main(g: Globals, argv: list[str]) -> int:
    v, args = parse(FLAGS, argv, interspersed=True)
    cid = need_id(args, "update")
    resources: dict[str, Any] = {}
    if v["resources"]:
        from .. import _json
        if v["resources"] == "-":
            text = sys.stdin.read()
        else:
            with open(v["resources"]) as f:
                text = f.read()
        try:
            resources = _json.loads(text)
        except _json.JSONError as e:
            raise UsageError(f"--resources: invalid JSON: {e}") from None
        if not isinstance(resources, dict):
            raise UsageError("--resources: must be a JSON object (linux.resources)")
    for flag, (_, (group, key)) in RESOURCE_FLAGS.items():
        if v[flag] is not None:
            resources.setdefault(group, {})[key] = v[flag]
    from ..container import update
    update(g.store().load(cid), resources)
    return 0
