"""corral-ctr rm CONTAINER...: remove containers (stopping them); a standalone sandbox
(made by `run`) goes with its container."""

from __future__ import annotations

from runtime.service.cri import api_pb2 as pb
from runtime.service.ctr.conn import Conn, UsageError
from runtime.service.ctr.run_cmd import STANDALONE
from runtime.service.ctr.util import find


def run(conn: Conn, args: list[str]) -> int:
    if not args:
        raise UsageError("usage: rm CONTAINER...")
    for ref in args:
        c = find(conn, ref)
        conn.rt("RemoveContainer", pb.RemoveContainerRequest(container_id=c.id))
        sb = conn.rt("PodSandboxStatus", pb.PodSandboxStatusRequest(
            pod_sandbox_id=c.pod_sandbox_id)).status
        left = conn.rt("ListContainers", pb.ListContainersRequest(
            filter=pb.ContainerFilter(pod_sandbox_id=sb.id))).containers
        if sb.annotations.get(STANDALONE) == "true" and not left:
            conn.rt("RemovePodSandbox", pb.RemovePodSandboxRequest(pod_sandbox_id=sb.id))
        print(c.metadata.name)
    return 0
