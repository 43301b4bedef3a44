"""One relist (agent.cri.Runtime.observe) over a fake CRI client: what it asks the runtime.
A sandbox's IP is asked once per ready sandbox, a container's status once per state change,
so a relist of a node with N steady pods costs the two list calls alone."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from agent import cri as C
from runtime.service.cri import api_pb2 as pb


class CountingCRI:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.sandboxes: dict[str, int] = {}  # id -> state
        self.containers: dict[str, tuple[str, int]] = {}  # id -> (sandbox id, state)

    async def list_pod_sandbox(self) -> list[pb.PodSandbox]:
        self.calls["ListPodSandbox"] += 1
        return [pb.PodSandbox(id=sid, state=st, labels={C.POD_UID: f"u-{sid}"},
                              metadata=pb.PodSandboxMetadata(name=sid, namespace="d"))
                for sid, st in self.sandboxes.items()]

    async def list_containers(self) -> list[pb.Container]:
        self.calls["ListContainers"] += 1
        return [pb.Container(id=cid, pod_sandbox_id=sid, state=st,
                             labels={C.POD_UID: f"u-{sid}"},
                             metadata=pb.ContainerMetadata(name="c"))
                for cid, (sid, st) in self.containers.items()]

    async def pod_sandbox_status(self, sid: str) -> pb.PodSandboxStatusResponse:
        self.calls["PodSandboxStatus"] += 1
        return pb.PodSandboxStatusResponse(status=pb.PodSandboxStatus(
            id=sid, network=pb.PodSandboxNetworkStatus(ip=f"10.0.0.{len(sid)}")))

    async def container_status(self, cid: str) -> pb.ContainerStatusResponse:
        self.calls["ContainerStatus"] += 1
        return pb.ContainerStatusResponse(status=pb.ContainerStatus(
            id=cid, state=self.containers[cid][1]))


def pods(n: int) -> CountingCRI:
    cri = CountingCRI()
    for i in range(n):
        cri.sandboxes[f"s{i}"] = pb.SANDBOX_READY
        cri.containers[f"c{i}"] = (f"s{i}", pb.CONTAINER_RUNNING)
    return cri


@pytest.mark.parametrize(("change", "want"), [
    pytest.param(lambda cri: None, {}, id="steady-node-costs-two-lists"),
    pytest.param(lambda cri: cri.containers.update(c3=("s3", pb.CONTAINER_EXITED)),
                 {"ContainerStatus": 1}, id="an-exit-costs-one-status"),
    pytest.param(lambda cri: cri.sandboxes.update(s100=pb.SANDBOX_READY),
                 {"PodSandboxStatus": 1}, id="a-new-sandbox-costs-one-status"),
    pytest.param(lambda cri: cri.sandboxes.update(s5=pb.SANDBOX_NOTREADY),
                 {}, id="a-stopped-sandbox-costs-nothing"),
])
def test_a_relist_asks_only_for_what_changed(change: object, want: dict[str, int]) -> None:
    cri = pods(100)
    rt = C.Runtime(cri)  # type: ignore[arg-type]
    first = asyncio.run(rt.observe())
    assert cri.calls == {"ListPodSandbox": 1, "ListContainers": 1, "PodSandboxStatus": 100,
                         "ContainerStatus": 100}
    assert first["u-s7"].sandboxes[0].ip == "10.0.0.2"
    cri.calls.clear()
    change(cri)  # type: ignore[operator]
    again = asyncio.run(rt.observe())
    assert cri.calls == {"ListPodSandbox": 1, "ListContainers": 1, **want}
    assert again["u-s7"].sandboxes[0].ip == "10.0.0.2"  # from the cache


def test_a_sandbox_ready_again_under_the_same_id_is_asked_again() -> None:
    cri = pods(1)
    rt = C.Runtime(cri)  # type: ignore[arg-type]
    asyncio.run(rt.observe())
    cri.sandboxes["s0"] = pb.SANDBOX_NOTREADY
    got = asyncio.run(rt.observe())
    assert got["u-s0"].sandboxes[0].ip == ""
    cri.sandboxes["s0"] = pb.SANDBOX_READY
    cri.calls.clear()
    asyncio.run(rt.observe())
    assert cri.calls["PodSandboxStatus"] == 1


def test_a_created_container_costs_no_status_call() -> None:
    cri = pods(0)
    cri.sandboxes["s0"] = pb.SANDBOX_READY
    cri.containers["c0"] = ("s0", pb.CONTAINER_CREATED)
    rt = C.Runtime(cri)  # type: ignore[arg-type]
    got = asyncio.run(rt.observe())
    assert cri.calls["ContainerStatus"] == 0
    (c,) = got["u-s0"].containers
    assert (c.id, c.state, c.sandbox_id, c.started_at) == ("c0", "created", "s0", 0)
    cri.containers["c0"] = ("s0", pb.CONTAINER_RUNNING)  # started: now it is asked
    again = asyncio.run(rt.observe())
    assert cri.calls["ContainerStatus"] == 1 and again["u-s0"].containers[0].state == "running"


@pytest.mark.parametrize(("state", "asked"), [
    pytest.param(pb.CONTAINER_RUNNING, 0, id="relist-saw-it-running"),
    pytest.param(pb.CONTAINER_CREATED, 1, id="relist-saw-it-created"),
])
def test_a_worker_reuses_what_a_relist_just_asked(state: int, asked: int) -> None:
    """A relist that lands between a worker's RunPodSandbox/StartContainer and its own
    status call: the worker's call is answered from the relist's (burst of pod starts)."""
    cri = pods(0)
    cri.sandboxes["s0"] = pb.SANDBOX_READY
    cri.containers["c0"] = ("s0", state)
    rt = C.Runtime(cri)  # type: ignore[arg-type]
    asyncio.run(rt.observe())
    cri.containers["c0"] = ("s0", pb.CONTAINER_RUNNING)  # the worker has started it
    cri.calls.clear()
    made = [("sandbox", "s0", "s0"), ("container", "c0", "s0")]
    got = asyncio.run(rt.with_made(C.PodRuntime("u-s0"), made))
    assert got is not None and got.sandboxes[0].ip == "10.0.0.2"
    assert got.containers[0].state == "running"
    assert cri.calls == ({"ContainerStatus": asked} if asked else {})


def test_a_worker_asks_first_and_the_relist_reuses_it() -> None:
    cri = pods(1)
    rt = C.Runtime(cri)  # type: ignore[arg-type]
    made = [("sandbox", "s0", "s0"), ("container", "c0", "s0")]
    asyncio.run(rt.with_made(C.PodRuntime("u-s0"), made))
    assert cri.calls == {"PodSandboxStatus": 1, "ContainerStatus": 1}
    cri.calls.clear()
    asyncio.run(rt.observe())
    assert cri.calls == {"ListPodSandbox": 1, "ListContainers": 1}
