"""corral-ctr logs [-f] CONTAINER: its output (read from its CRI log file)."""

from __future__ import annotations

import time

from runtime.service.cri import api_pb2 as pb
from runtime.service.ctr.conn import Conn, UsageError
from runtime.service.ctr.util import find, print_log


def run(conn: Conn, args: list[str]) -> int:
    follow = "-f" in args or "--follow" in args
    rest = [a for a in args if a not in ("-f", "--follow")]
    if len(rest) != 1:
        raise UsageError("usage: logs [-f] CONTAINER")
    c = find(conn, rest[0])
    offset = 0
    while True:
        st = conn.rt("ContainerStatus", pb.ContainerStatusRequest(container_id=c.id)).status
        offset = print_log(st.log_path, offset)
        if not follow or st.state == pb.CONTAINER_EXITED:
            print_log(st.log_path, offset)
            return 0
        time.sleep(0.1)
