"""corral-ctr exec [--timeout S] CONTAINER CMD...: run CMD in it; its output, its code."""

from __future__ import annotations

import sys

from runtime.service.cri import api_pb2 as pb
from runtime.service.ctr.conn import Conn, UsageError
from runtime.service.ctr.util import find


def run(conn: Conn, args: list[str]) -> int:
    timeout = 0
    if args[:1] == ["--timeout"] and len(args) > 1:
        timeout, args = int(args[1]), args[2:]
    if len(args) < 2:
        raise UsageError("usage: exec [--timeout S] CONTAINER CMD...")
    c = find(conn, args[0])
    r = conn.rt("ExecSync", pb.ExecSyncRequest(container_id=c.id, cmd=args[1:],
                                               timeout=timeout), timeout=None)
    sys.stdout.buffer.write(r.stdout)
    sys.stderr.buffer.write(r.stderr)
    return int(r.exit_code)
