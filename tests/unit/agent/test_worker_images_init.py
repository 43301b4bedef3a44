"""The pod worker's image pull policies and init containers, on a fake CRI: which
PullImage calls each policy makes with the image present or absent, the waiting reason
when it cannot start; init containers run one at a time, in order, before any main one."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from agent import worker as W
from runtime.service.cri import api_pb2 as pb
from runtime.service.cri import client as cric
from tests.unit.agent.test_worker_probes import FakeCRI, Rig


class ImageCRI(FakeCRI):
    """FakeCRI with an image store: IMAGES present; PullImage adds, or fails if BROKEN."""

    def __init__(self, images: set[str], *, broken: bool = False) -> None:
        super().__init__()
        self.images = images
        self.broken = broken

    async def image_status(self, image: pb.ImageSpec) -> pb.ImageStatusResponse:
        self.calls.append(("image_status", image.image))
        if image.image in self.images:
            return pb.ImageStatusResponse(image=pb.Image(id="sha256:1"))
        return pb.ImageStatusResponse()

    async def pull_image(self, image: pb.ImageSpec) -> str:
        self.calls.append(("pull", image.image))
        if self.broken:
            raise cric.NotFound("PullImage", "NOT_FOUND", "manifest unknown",
                                subject=image.image)
        self.images.add(image.image)
        return "sha256:1"


def use(rig: Rig, cri: FakeCRI) -> None:
    rig.cri = cri
    rig.worker.env.cri = cri  # type: ignore[assignment]
    rig.worker.env.refresh = cri.refresh


@pytest.mark.parametrize("policy,present,pulls,started,reason", [
    pytest.param("Always", True, 1, True, None, id="always-present"),
    pytest.param("Always", False, 1, True, None, id="always-absent"),
    pytest.param("IfNotPresent", True, 0, True, None, id="ifnotpresent-present"),
    pytest.param("IfNotPresent", False, 1, True, None, id="ifnotpresent-absent"),
    pytest.param("Never", True, 0, True, None, id="never-present"),
    pytest.param("Never", False, 0, False, "ErrImageNeverPull", id="never-absent"),
])
def test_pull_policy(tmp_path: Any, policy: str, present: bool, pulls: int, started: bool,
                     reason: str | None) -> None:
    async def go() -> None:
        rig = Rig(str(tmp_path), {"imagePullPolicy": policy})
        use(rig, ImageCRI({"busybox"} if present else set()))
        for _ in range(2):
            await rig.worker.sync()
        assert [c for c in rig.cri.calls if c[0] == "pull"] == [("pull", "busybox")] * pulls
        assert (("start", "app-0") in rig.cri.calls) is started
        if reason is None:
            assert "app" not in rig.worker.waiting
        else:
            got, message = rig.worker.waiting["app"]
            assert got == reason
            assert 'image "busybox" is not present and imagePullPolicy is Never' in message
            assert rig.app()["state"]["waiting"]["reason"] == reason
        await rig.worker.probes.close()
    asyncio.run(go())


def test_a_failed_pull_is_err_image_pull_then_back_off(tmp_path: Any) -> None:
    async def go() -> None:
        rig = Rig(str(tmp_path), {"imagePullPolicy": "IfNotPresent"})
        use(rig, ImageCRI(set(), broken=True))
        await rig.worker.sync()
        assert rig.worker.waiting["app"][0] == "ErrImagePull"
        await rig.worker.sync()  # within the back-off: no new pull
        assert rig.worker.waiting["app"][0] == "ImagePullBackOff"
        assert [c for c in rig.cri.calls if c[0] == "pull"] == [("pull", "busybox")]
        await rig.worker.probes.close()
    asyncio.run(go())


def started(rig: Rig) -> list[str]:
    return [cid for kind, cid in rig.cri.calls if kind == "start"]


def finish(rig: Rig, cid: str, code: int = 0) -> None:
    rig.cri.containers[cid] = replace(rig.cri.containers[cid], state="exited",
                                      exit_code=code, finished_at=rig.cri.now_ns())


def test_init_containers_run_one_at_a_time_in_order(tmp_path: Any) -> None:
    async def go() -> None:
        rig = Rig(str(tmp_path), {})
        rig.worker.pod["spec"]["initContainers"] = [
            {"name": "first", "image": "busybox", "command": ["true"]},
            {"name": "second", "image": "busybox", "command": ["true"]}]
        await rig.worker.sync()
        assert rig.worker.state is W.PodState.INITIALIZING
        assert started(rig) == ["first-0"]
        await rig.worker.sync()  # first still runs: nothing else starts
        assert started(rig) == ["first-0"]
        assert rig.status()["phase"] == "Pending"
        assert rig.app()["state"]["waiting"]["reason"] == "PodInitializing"
        finish(rig, "first-0")
        await rig.worker.sync()
        assert started(rig) == ["first-0", "second-0"]
        assert rig.worker.state is W.PodState.INITIALIZING
        finish(rig, "second-0")
        await rig.worker.sync()
        assert started(rig) == ["first-0", "second-0", "app-0"]
        assert rig.worker.state.value == "Running"
        await rig.worker.probes.close()
    asyncio.run(go())


def test_a_failed_init_container_is_retried_and_holds_the_next(tmp_path: Any) -> None:
    async def go() -> None:
        rig = Rig(str(tmp_path), {})
        rig.worker.pod["spec"]["initContainers"] = [
            {"name": "first", "image": "busybox", "command": ["false"]},
            {"name": "second", "image": "busybox", "command": ["true"]}]
        await rig.worker.sync()
        finish(rig, "first-0", code=1)
        await rig.worker.sync()  # the first failure restarts at once (no back-off yet)
        assert started(rig) == ["first-0", "first-1"]
        assert rig.worker.state is W.PodState.INITIALIZING
        await rig.worker.probes.close()
    asyncio.run(go())
