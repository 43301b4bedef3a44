"""corral-ctr ps: CONTAINER, NAME, IMAGE, STATE (and the exit code of exited ones)."""

from __future__ import annotations

from runtime.service.cri import api_pb2 as pb
from runtime.service.ctr.conn import Conn
from runtime.service.ctr.util import STATES


def run(conn: Conn, args: list[str]) -> int:
    print(f"{'CONTAINER':<15} {'NAME':<20} {'IMAGE':<50} STATE")
    for c in conn.rt("ListContainers", pb.ListContainersRequest()).containers:
        state = STATES.get(c.state, "?")
        if c.state == pb.CONTAINER_EXITED:
            st = conn.rt("ContainerStatus", pb.ContainerStatusRequest(container_id=c.id))
            state += f" ({st.status.exit_code})"
        print(f"{c.id[:13]:<15} {c.metadata.name:<20} {c.image.image:<50} {state}")
    return 0
