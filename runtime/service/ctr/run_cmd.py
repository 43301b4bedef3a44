"""corral-ctr run [--rm] [-d] [-i] [-t] IMAGE ID [CMD...]: a standalone sandbox and one
container.

Without -d: wait for the exit, print the container's output, exit with its code.
-i: our stdin is the container's (created with stdin and stdin_once: our EOF is its EOF);
-t: it gets a terminal, ours in raw mode, resized with ours. Both go over CRI Attach
(ctr/attach_io.py), never the private socket.

Over the daemon's private socket (ctr/fast.py) when it serves one: one call creates and
starts, the exit is pushed when the shim reports it, and no gRPC is imported. Otherwise
over CRI: RunPodSandbox, CreateContainer, StartContainer, ContainerStatus until exited,
RemovePodSandbox.
"""

from __future__ import annotations

import time

from runtime.service.ctr.conn import UsageError
from runtime.service.ctr.crilog import print_log

TYPE_CHECKING = False
if TYPE_CHECKING:  # neither typing nor dataclasses at run time: `run` starts fast
    from typing import Any

STANDALONE = "io.corral.sandbox/standalone"


class Args:
    __slots__ = ("cmd", "detach", "image", "interactive", "name", "rm", "tty")

    def __init__(self, *, image: str, name: str, cmd: list[str], rm: bool,
                 detach: bool, interactive: bool = False, tty: bool = False) -> None:
        self.image, self.name, self.cmd, self.rm, self.detach = image, name, cmd, rm, detach
        self.interactive, self.tty = interactive, tty


SHORT = {"d": "detach", "i": "interactive", "t": "tty"}
LONG = {"--rm": "rm", "--detach": "detach", "--interactive": "interactive", "--tty": "tty"}


def parse(args: list[str]) -> Args:
    args = list(args)
    on = {"rm": False, "detach": False, "interactive": False, "tty": False}
    while args and args[0].startswith("-"):
        flag = args.pop(0)
        if flag in LONG:
            on[LONG[flag]] = True
        elif flag[1:] and not flag.startswith("--") and all(c in SHORT for c in flag[1:]):
            for c in flag[1:]:  # -d, -i, -t, -it
                on[SHORT[c]] = True
        else:
            raise UsageError(f"{flag}: unknown flag")
    if len(args) < 2:
        raise UsageError("usage: run [--rm] [-d] [-i] [-t] IMAGE ID [CMD...]")
    if on["detach"] and (on["interactive"] or on["tty"]):
        raise UsageError("-d: cannot be used with -i or -t (they attach this terminal)")
    return Args(image=args[0], name=args[1], cmd=args[2:], **on)


def run_fast(client: Any, namespace: str, a: Args) -> int:
    """`run` over the private socket (CLIENT: a connected ctr/fast.Client)."""
    client.send({"op": "run", "namespace": namespace, "image": a.image, "name": a.name,
                 "args": a.cmd, "rm": a.rm, "detach": a.detach})
    started = client.recv()
    if a.detach:
        print(started["id"])
        return 0
    log_path, offset, delay = str(started["log_path"]), 0, 0.002
    while True:
        done = client.recv(timeout=delay)
        offset = print_log(log_path, offset)
        if done is not None:
            break
        delay = min(delay * 2, 0.1)
    client.send({"op": "done"})
    client.recv()  # removed (with --rm)
    return int(done["exit_code"])


def run(conn: Any, args: list[str]) -> int:
    """`run` over CRI (CONN: ctr/conn.Conn), for a daemon without the private socket."""
    from runtime.service.cri import api_pb2 as pb

    a = parse(args)
    sandbox = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=a.name, uid=a.name, namespace="corral-ctr"),
        annotations={STANDALONE: "true"})
    pod = conn.rt("RunPodSandbox", pb.RunPodSandboxRequest(config=sandbox)).pod_sandbox_id
    try:
        config = pb.ContainerConfig(metadata=pb.ContainerMetadata(name=a.name),
                                    image=pb.ImageSpec(image=a.image), command=a.cmd,
                                    stdin=a.interactive, stdin_once=a.interactive,
                                    tty=a.tty)
        cid = conn.rt("CreateContainer", pb.CreateContainerRequest(
            pod_sandbox_id=pod, config=config, sandbox_config=sandbox)).container_id
        conn.rt("StartContainer", pb.StartContainerRequest(container_id=cid))
    except BaseException:
        conn.rt("RemovePodSandbox", pb.RemovePodSandboxRequest(pod_sandbox_id=pod))
        raise
    if a.detach:
        print(cid)
        return 0
    offset, delay = 0, 0.002
    if a.interactive or a.tty:  # what it wrote before the session, then the session
        from runtime.service.ctr.attach_io import attach

        st = conn.rt("ContainerStatus", pb.ContainerStatusRequest(container_id=cid)).status
        offset = print_log(st.log_path, offset)
        attach(conn, cid, stdin=a.interactive, tty=a.tty)
        offset = -1  # printed by the session: not again from the log
    while True:
        st = conn.rt("ContainerStatus", pb.ContainerStatusRequest(container_id=cid)).status
        if offset >= 0:
            offset = print_log(st.log_path, offset)
        if st.state == pb.CONTAINER_EXITED:
            break
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
    if a.rm:
        conn.rt("RemovePodSandbox", pb.RemovePodSandboxRequest(pod_sandbox_id=pod))
    return int(st.exit_code)
