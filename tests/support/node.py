"""One of our nodes against a real cluster side, for the node tests and the benches.

    cluster()                    etcd (temp dir) + a registry holding busybox +
        │                        corral-controlplane (leader: scheduler, controllers)
        ▼
    corral_node(cl, tag=, name=, split=)
        split=False: corral-node (nodehost): runtime service + agent in one process
        split=True:  corral-runtimed, then corral-agent on its socket
        the busybox image (also the sandbox image) pulled through CRI (pull_image=)
        │   exit: the node stopped by PID, then Runtimed.cleanup() (sandboxes, tasks,
        ▼   mounts, cgroups, the bridge, the dir)
    idle_node(tag, split=, settle=)   both of the above, the node Ready, SETTLE s idle

The runtime's dirs, config (cgroups under /TAG, a CNI bridge of its own) and cleanup are
Runtimed's (tests/integration/runtime/service/test_runtimed.py); the node's credentials
and the agent's flags are Agent's (tests/integration/agent/test_agent.py).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc  # type: ignore[import-untyped]

from runtime.service.cri import api_pb2 as pb
from runtime.service.cri import api_pb2_grpc as pb_grpc
from tests.integration.agent.test_agent import PYTHON, ROOT, Agent
from tests.integration.runtime.service.test_runtimed import Runtimed
from tests.support import containerd, process
from tests.support.controlplane import ControlPlane
from tests.support.etcd import EtcdServer
from tests.support.registry import Registry
from tests.support.sockets import serving as serving  # the nodes' tests import it here


@dataclass
class Cluster:
    cp: ControlPlane
    registry: Registry
    image: str  # busybox in the registry: also every node's sandbox image


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    """etcd + a registry holding busybox + a leader controlplane; all removed on exit."""
    etcd = EtcdServer().start()
    try:
        with Registry() as reg, ControlPlane(etcd.endpoint, leader=True) as cp:
            yield Cluster(cp=cp, registry=reg, image=containerd.push_busybox(reg))
    finally:
        etcd.cleanup()


def pull(socket_path: str, image: str, *, timeout: float = 120) -> None:
    """IMAGE pulled through the CRI socket (corral's runtime does not pull its sandbox
    image on demand)."""
    with grpc.insecure_channel(f"unix://{socket_path}") as channel:
        pb_grpc.ImageServiceStub(channel).PullImage(  # type: ignore[no-untyped-call]
            pb.PullImageRequest(image=pb.ImageSpec(image=image)), timeout=timeout)


class CorralNode:
    """Our node's processes: corral-node, or (split) corral-runtimed + corral-agent.
    Stopped and killed by PID; start() again after kill9() adopts the running pods."""

    def __init__(self, cp: ControlPlane, rtd: Runtimed, name: str, *, split: bool) -> None:
        self.rtd = rtd
        self.split = split
        self.agent = Agent(cp, rtd, name)  # the node's credentials, root and agent flags
        self.name = name
        if not split:
            flags = self.agent.cmd[self.agent.cmd.index("agent.main") + 1:]
            at = flags.index("--runtime-socket")
            del flags[at:at + 2]
            self.agent.cmd = [PYTHON, "-m", "nodehost", *flags,
                              "--runtime-root", rtd.root, "--runtime-state", rtd.state,
                              "--runtime-socket", rtd.socket,
                              "--runtime-config", rtd.config_path]
            self.agent.log_path = os.path.join(self.agent.root, "node.log")

    @property
    def proc(self) -> process.Process | None:
        """corral-node's process (split: corral-agent's)."""
        return self.agent.proc

    def pids(self) -> list[int]:
        procs = [self.agent.proc, self.rtd.proc] if self.split else [self.agent.proc]
        return [p.pid for p in procs if p is not None]

    def start(self, *, timeout: float = 30) -> CorralNode:
        if self.split:
            if self.rtd.proc is None:
                self.rtd.start(timeout=timeout)
            self.agent.start()
            return self
        # the runtime's environment (the leak check's tag, when Runtimed sets one), which
        # the shims and holders of this node inherit as corral-runtimed's do
        env = getattr(self.rtd, "env", None)
        self.agent.proc = process.start(self.agent.cmd, log_path=self.agent.log_path,
                                        cwd=ROOT, new_session=True,
                                        env=env() if callable(env) else None)
        process.wait_until_ready(self.agent.proc, name="corral-node", condition="serving CRI",
                                 ready=lambda: serving(self.rtd.socket), timeout=timeout,
                                 tail=self.log_tail)
        return self

    def kill9(self) -> None:
        """kill -9 of the agent's process (the one-process node: the whole node)."""
        self.agent.kill9()

    def stop(self) -> None:
        """SIGTERM to every process of the node, by PID; containers keep running."""
        self.agent.stop()
        if self.split:
            self.rtd.stop()

    def log_tail(self) -> str:
        return self.agent.log_tail()


@contextlib.contextmanager
def corral_node(cl: Cluster, *, tag: str, name: str, split: bool = False,
                pull_image: bool = True, state_base: str = "") -> Iterator[CorralNode]:
    """One node of ours on CL's controlplane, started, with busybox pulled (PULL_IMAGE);
    its runtime state under STATE_BASE (Runtimed's)."""
    with Runtimed(tag=tag, sandbox_image=cl.image, registries=[cl.registry.host],
                  state_base=state_base) as rtd:
        rtd.write_cni_conflist()
        node = CorralNode(cl.cp, rtd, name, split=split)
        try:
            node.start()
            if pull_image:
                pull(rtd.socket, cl.image)
            yield node
        finally:
            if not split and node.proc is not None and node.proc.poll() is None:
                with contextlib.suppress(Exception):
                    rtd.drain()  # Runtimed.cleanup drains only a corral-runtimed it started
            node.stop()


def wait_ready(cp: ControlPlane, names: list[str], *, timeout: float = 90) -> None:
    """Every node of NAMES Ready; SystemExit naming them otherwise (benches and tests)."""
    c = cp.client()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = 0
        for name in names:
            with contextlib.suppress(Exception):  # not registered yet
                conds = c.get("nodes", name).get("status", {}).get("conditions") or []
                ready += any(x["type"] == "Ready" and x["status"] == "True" for x in conds)
        if ready == len(names):
            return
        time.sleep(0.2)
    raise SystemExit(f"nodes {names}: not all Ready after {timeout}s")


@dataclass
class IdleNode:
    cluster: Cluster
    node: CorralNode


@contextlib.contextmanager
def idle_node(tag: str, *, name: str, split: bool = False,
              settle: float = 0.0) -> Iterator[IdleNode]:
    """A cluster with one node of ours, Ready and idle (no pods, no image pulled yet) for
    SETTLE seconds."""
    with cluster() as cl, corral_node(cl, tag=tag, name=name, split=split,
                                      pull_image=False) as node:
        wait_ready(cl.cp, [name], timeout=60)
        time.sleep(settle)
        assert node.proc is not None and node.proc.poll() is None, node.log_tail()
        yield IdleNode(cluster=cl, node=node)
