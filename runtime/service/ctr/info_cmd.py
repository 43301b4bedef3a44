"""corral-ctr info: the daemon's version, conditions and (verbose) config, as JSON."""

from __future__ import annotations

import json

from runtime.service.cri import api_pb2 as pb
from runtime.service.ctr.conn import Conn


def run(conn: Conn, args: list[str]) -> int:
    v = conn.rt("Version", pb.VersionRequest(version="v1"))
    st = conn.rt("Status", pb.StatusRequest(verbose=True))
    print(json.dumps({
        "runtime": v.runtime_name, "version": v.runtime_version,
        "api": v.runtime_api_version, "socket": conn.socket, "namespace": conn.namespace,
        "conditions": {c.type: c.status for c in st.status.conditions},
        "config": json.loads(st.info.get("config", "{}")),
    }, indent=2))
    return 0
