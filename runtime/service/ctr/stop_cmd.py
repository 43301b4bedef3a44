"""corral-ctr stop [-t SECONDS] CONTAINER...: SIGTERM, then SIGKILL after the grace."""

from __future__ import annotations

from runtime.service.cri import api_pb2 as pb
from runtime.service.ctr.conn import Conn, UsageError
from runtime.service.ctr.util import find


def run(conn: Conn, args: list[str]) -> int:
    grace = 10
    if args[:1] == ["-t"] and len(args) > 1:
        grace, args = int(args[1]), args[2:]
    if not args:
        raise UsageError("usage: stop [-t SECONDS] CONTAINER...")
    for ref in args:
        c = find(conn, ref)
        conn.rt("StopContainer", pb.StopContainerRequest(container_id=c.id, timeout=grace),
                timeout=grace + 60)
        print(c.metadata.name)
    return 0
