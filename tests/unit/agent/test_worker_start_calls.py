"""The CRI calls of one pod's start: a relist to begin with, then single status calls for
the sandbox and the container the worker made (a relist lists every pod of the node), and
the next relist reuses what those calls answered."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from agent import cri as C
from agent import pods as P
from agent import status as S
from agent import worker as W
from runtime.service.cri import api_pb2 as pb
from runtime.service.cri import client as cric
from tests.unit.agent.test_worker_probes import FakeAPI


class NodeCRI:
    """A runtime in memory that counts every call, with the labels the agent sets."""

    def __init__(self, *, fail_status: bool = False) -> None:
        self.calls: Counter[str] = Counter()
        self.fail_status = fail_status
        self.sandboxes: dict[str, pb.PodSandboxConfig] = {}
        self.containers: dict[str, tuple[str, pb.ContainerConfig, int]] = {}

    async def run_pod_sandbox(self, config: pb.PodSandboxConfig) -> str:
        self.calls["RunPodSandbox"] += 1
        sid = f"sb{len(self.sandboxes)}"
        self.sandboxes[sid] = config
        return sid

    async def image_status(self, image: pb.ImageSpec) -> pb.ImageStatusResponse:
        self.calls["ImageStatus"] += 1
        return pb.ImageStatusResponse(image=pb.Image(id="sha256:1"))

    async def create_container(self, sandbox_id: str, config: pb.ContainerConfig, *,
                               sandbox_config: pb.PodSandboxConfig) -> str:
        self.calls["CreateContainer"] += 1
        cid = f"c{len(self.containers)}"
        self.containers[cid] = (sandbox_id, config, pb.CONTAINER_CREATED)
        return cid

    async def start_container(self, cid: str) -> None:
        self.calls["StartContainer"] += 1
        sid, config, _ = self.containers[cid]
        self.containers[cid] = (sid, config, pb.CONTAINER_RUNNING)

    async def list_pod_sandbox(self) -> list[pb.PodSandbox]:
        self.calls["ListPodSandbox"] += 1
        return [pb.PodSandbox(id=sid, state=pb.SANDBOX_READY, labels=cfg.labels,
                              metadata=cfg.metadata) for sid, cfg in self.sandboxes.items()]

    async def list_containers(self) -> list[pb.Container]:
        self.calls["ListContainers"] += 1
        return [pb.Container(id=cid, pod_sandbox_id=sid, state=st, labels=cfg.labels,
                             metadata=cfg.metadata)
                for cid, (sid, cfg, st) in self.containers.items()]

    async def pod_sandbox_status(self, sid: str) -> pb.PodSandboxStatusResponse:
        self.calls["PodSandboxStatus"] += 1
        return pb.PodSandboxStatusResponse(status=pb.PodSandboxStatus(
            id=sid, state=pb.SANDBOX_READY, created_at=1,
            network=pb.PodSandboxNetworkStatus(ip="10.1.0.9")))

    async def container_status(self, cid: str) -> pb.ContainerStatusResponse:
        self.calls["ContainerStatus"] += 1
        if self.fail_status:
            raise cric.NotFound("ContainerStatus", "NOT_FOUND", "gone", subject=cid)
        _, cfg, st = self.containers[cid]
        return pb.ContainerStatusResponse(status=pb.ContainerStatus(
            id=cid, state=st, metadata=cfg.metadata, labels=cfg.labels, created_at=2,
            started_at=3, image=cfg.image))


def pod() -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {"containers": [{"name": "app", "image": "busybox",
                                     "command": ["sleep", "1d"]}]},
            "status": {}}


STARTED = {"RunPodSandbox": 1, "ImageStatus": 1, "CreateContainer": 1, "StartContainer": 1}


@pytest.mark.parametrize(("with_runtime", "fail_status", "want"), [
    pytest.param(True, False, {**STARTED, "ListPodSandbox": 1, "ListContainers": 1,
                               "PodSandboxStatus": 1, "ContainerStatus": 1},
                 id="one-relist-and-two-status-calls"),
    pytest.param(True, True, {**STARTED, "ListPodSandbox": 2, "ListContainers": 2,
                              "PodSandboxStatus": 1, "ContainerStatus": 2},
                 id="a-status-call-that-fails-falls-back-to-a-relist"),
    # a pods.Relist has its Runtime in it, but only the runtime= given is used
    pytest.param(False, False, {**STARTED, "ListPodSandbox": 3, "ListContainers": 3,
                                "PodSandboxStatus": 1, "ContainerStatus": 1},
                 id="without-a-runtime-a-relist-after-each-step"),
])
def test_a_pod_start_asks_the_runtime_this_much(tmp_path: Any, with_runtime: bool,
                                                fail_status: bool, want: dict[str, int]
                                                ) -> None:
    cri = NodeCRI(fail_status=fail_status)
    runtime = C.Runtime(cri)  # type: ignore[arg-type]
    relist = P.Relist(runtime)
    env = W.WorkerEnv(api=FakeAPI(), cri=cri,  # type: ignore[arg-type]
                      refresh=relist, runtime=runtime if with_runtime else None,
                      writer=S.StatusWriter(FakeAPI()), log_root=str(tmp_path))
    worker = W.PodWorker(env, pod())

    async def start_then_relist() -> dict[str, C.PodRuntime]:
        await worker.sync()
        assert cri.calls == want
        cri.calls.clear()
        return await runtime.observe()
    after = asyncio.run(start_then_relist())
    if fail_status:
        return
    assert worker.state is W.PodState.RUNNING
    status = worker.env.writer._pending["u1"][2]
    assert status["phase"] == "Running" and status["podIP"] == "10.1.0.9"
    assert status["containerStatuses"][0]["state"].keys() == {"running"}
    # the status calls' answers are the relist's cache: it asks for nothing more
    assert cri.calls == {"ListPodSandbox": 1, "ListContainers": 1}
    assert [c.state for c in after["u1"].containers] == ["running"]
    assert after["u1"].sandboxes[0].ip == "10.1.0.9"
