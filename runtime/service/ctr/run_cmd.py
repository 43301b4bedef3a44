"""corral-ctr run [--rm] [-d] IMAGE ID [CMD...]: a standalone sandbox and one container.

Without -d: wait for the exit, print the container's output, exit with its code."""

from __future__ import annotations

import time

from runtime.service.cri import api_pb2 as pb
from runtime.service.ctr.conn import Conn, UsageError
from runtime.service.ctr.util import print_log

STANDALONE = "io.corral.sandbox/standalone"


def run(conn: Conn, args: list[str]) -> int:
    rm = detach = False
    while args and args[0].startswith("-"):
        flag = args.pop(0)
        if flag == "--rm":
            rm = True
        elif flag in ("-d", "--detach"):
            detach = True
        else:
            raise UsageError(f"{flag}: unknown flag")
    if len(args) < 2:
        raise UsageError("usage: run [--rm] [-d] IMAGE ID [CMD...]")
    image, cid_name, cmd = args[0], args[1], args[2:]
    sandbox = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=cid_name, uid=cid_name, namespace="corral-ctr"),
        annotations={STANDALONE: "true"})
    pod = conn.rt("RunPodSandbox", pb.RunPodSandboxRequest(config=sandbox)).pod_sandbox_id
    try:
        config = pb.ContainerConfig(metadata=pb.ContainerMetadata(name=cid_name),
                                    image=pb.ImageSpec(image=image), command=cmd)
        cid = conn.rt("CreateContainer", pb.CreateContainerRequest(
            pod_sandbox_id=pod, config=config, sandbox_config=sandbox)).container_id
        conn.rt("StartContainer", pb.StartContainerRequest(container_id=cid))
    except BaseException:
        conn.rt("RemovePodSandbox", pb.RemovePodSandboxRequest(pod_sandbox_id=pod))
        raise
    if detach:
        print(cid)
        return 0
    offset, delay = 0, 0.002
    while True:
        st = conn.rt("ContainerStatus", pb.ContainerStatusRequest(container_id=cid)).status
        offset = print_log(st.log_path, offset)
        if st.state == pb.CONTAINER_EXITED:
            break
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
    if rm:
        conn.rt("RemovePodSandbox", pb.RemovePodSandboxRequest(pod_sandbox_id=pod))
    return int(st.exit_code)
