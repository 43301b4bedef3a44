"""The pod worker with its real probers, on a fake CRI and a manual probe clock: a failed
liveness probe kills and restarts the container (restartCount, lastState, events),
readiness drives containerStatuses[].ready and the Ready/ContainersReady conditions, and
no prober outlives the pod."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import pytest

from agent import cri as C
from agent import probes as PR
from agent import status as S
from agent import worker as W
from runtime.service.cri import api_pb2 as pb
from tests.unit.agent.test_probes_pod import ManualTime, settle


class FakeCRI:
    """Sandboxes and containers in memory; exec_sync answers from a script per command."""

    def __init__(self) -> None:
        self.sandboxes: list[C.SandboxInfo] = []
        self.containers: dict[str, C.ContainerInfo] = {}
        self.exec_codes: dict[str, list[int]] = {}  # command[0] -> exit codes (last repeats)
        self.calls: list[tuple[str, Any]] = []

    def now_ns(self) -> int:
        """Wall time: the back-off compares exits with it (the probe clock starts there)."""
        return time.time_ns()

    async def run_pod_sandbox(self, config: pb.PodSandboxConfig) -> str:
        self.sandboxes.append(C.SandboxInfo("sb", 0, True, "10.1.0.7"))
        return "sb"

    async def image_status(self, image: pb.ImageSpec) -> pb.ImageStatusResponse:
        return pb.ImageStatusResponse(image=pb.Image(id="sha256:1"))

    async def create_container(self, sandbox_id: str, config: pb.ContainerConfig, *,
                               sandbox_config: pb.PodSandboxConfig) -> str:
        cid = f"{config.metadata.name}-{config.metadata.attempt}"
        self.containers[cid] = C.ContainerInfo(
            id=cid, name=config.metadata.name, attempt=config.metadata.attempt,
            state="created", sandbox_id=sandbox_id, created_at=self.now_ns())
        return cid

    async def start_container(self, cid: str) -> None:
        self.calls.append(("start", cid))
        self.containers[cid] = replace(self.containers[cid], state="running",
                                       started_at=self.now_ns())

    async def stop_container(self, cid: str, *, timeout: int = 0) -> None:
        self.calls.append(("stop", (cid, timeout)))
        c = self.containers[cid]
        if c.state == "running":
            self.containers[cid] = replace(c, state="exited", exit_code=137,
                                           finished_at=self.now_ns())

    async def remove_container(self, cid: str) -> None:
        self.containers.pop(cid, None)

    async def stop_pod_sandbox(self, sid: str) -> None:
        self.sandboxes = [replace(s, ready=False) for s in self.sandboxes]

    async def remove_pod_sandbox(self, sid: str) -> None:
        self.sandboxes = []

    async def exec_sync(self, container_id: str, cmd: Iterable[str], *, timeout: int = 0,
                        ) -> pb.ExecSyncResponse:
        first = next(iter(cmd))
        self.calls.append(("exec", (container_id, first, timeout)))
        codes = self.exec_codes[first]
        code = codes.pop(0) if len(codes) > 1 else codes[0]
        return pb.ExecSyncResponse(exit_code=code, stdout=b"out", stderr=b"")

    async def refresh(self) -> Mapping[str, C.PodRuntime]:
        return {"u1": C.PodRuntime("u1", "default", "web", sandboxes=list(self.sandboxes),
                                   containers=list(self.containers.values()))}


class FakeAPI:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.deleted: list[str] = []

    async def create(self, resource: str, obj: dict[str, Any], *, namespace: str = "",
                     **kw: Any) -> dict[str, Any]:
        assert resource == "events" and namespace == obj["metadata"]["namespace"]
        self.events.append(obj)
        return obj

    async def delete(self, resource: str, name: str, *, namespace: str = "",
                     **kw: Any) -> dict[str, Any]:
        self.deleted.append(name)
        return {}

    async def patch(self, resource: str, name: str, patch: bytes, *, patch_type: str,
                    namespace: str = "", **kw: Any) -> dict[str, Any]:
        return {}


class Rig:
    def __init__(self, tmp: str, container: dict[str, Any], *, restart: str = "Always",
                 ) -> None:
        self.cri = FakeCRI()
        self.time = ManualTime()
        self.time.now = time.time() + 100  # containers (wall clock) start in its past
        self.api = FakeAPI()
        self.writer = S.StatusWriter(self.api)
        self.probers: list[PR.PodProber] = []
        env = W.WorkerEnv(api=self.api, cri=self.cri,  # type: ignore[arg-type]
                          refresh=self.cri.refresh, writer=self.writer, log_root=tmp,
                          node_name="n1", probes=self._probes)
        self.pod = {"metadata": {"name": "web", "namespace": "default", "uid": "u1"},
                    "spec": {"restartPolicy": restart, "terminationGracePeriodSeconds": 3,
                             "containers": [{"name": "app", "image": "busybox",
                                             "command": ["sleep", "1d"], **container}]},
                    "status": {}}
        self.worker = W.PodWorker(env, self.pod)

    def _probes(self, pod: Mapping[str, Any], wake: Any) -> W.Probes:
        """The real PodProber, over the worker's own exec adapter, on the manual clock."""
        prober = PR.PodProber(pod, exec_sync=PR.cri_exec(self.cri),
                              on_change=wake,
                              clock=self.time.clock, sleep=self.time.sleep)
        self.probers.append(prober)
        return prober

    def status(self) -> dict[str, Any]:
        pending = self.writer._pending.get("u1")
        return pending[2] if pending else self.writer._written["u1"]

    def app(self) -> dict[str, Any]:
        out: dict[str, Any] = self.status()["containerStatuses"][0]
        return out

    def conditions(self) -> dict[str, str]:
        return {c["type"]: c["status"] for c in self.status()["conditions"]}

    async def start(self) -> None:
        for _ in range(3):  # sandbox, then the container
            await self.worker.sync()
        assert self.worker.state is W.PodState.RUNNING
        await settle()


def liveness(**extra: Any) -> dict[str, Any]:
    return {"livenessProbe": {"exec": {"command": ["alive"]}, **extra}}


def readiness(**extra: Any) -> dict[str, Any]:
    return {"readinessProbe": {"exec": {"command": ["ready"]}, **extra}}


def test_a_failed_liveness_probe_kills_and_restarts_the_container(tmp_path: Any) -> None:
    async def go() -> None:
        rig = Rig(str(tmp_path), liveness())
        rig.cri.exec_codes["alive"] = [0, 1]  # healthy once, then failing
        await rig.start()
        assert rig.app()["restartCount"] == 0 and rig.app()["ready"] is True
        for _ in range(3):  # three failures, one per default period of 10 s
            await rig.time.advance(10)
        assert [a for k, a in rig.cri.calls if k == "exec"] == [("app-0", "alive", 1)] * 4
        await rig.worker.sync()  # woken by the prober: kill
        assert ("stop", ("app-0", 3)) in rig.cri.calls
        await rig.worker.sync()  # the exit is a crash like any other: restarted at once
        await settle()
        app = rig.app()
        assert app["restartCount"] == 1 and "running" in app["state"], app
        assert app["lastState"]["terminated"]["exitCode"] == 137
        assert app["lastState"]["terminated"]["reason"] == "Error"
        assert [(e["type"], e["reason"], e["message"]) for e in rig.api.events] == [
            ("Warning", "Unhealthy", "Liveness probe failed: command ['alive'] exited 1: out"),
            ("Normal", "Killing", "Container app failed liveness probe, will be restarted")]
        assert rig.api.events[0]["involvedObject"] == {
            "apiVersion": "v1", "kind": "Pod", "name": "web", "namespace": "default",
            "uid": "u1"}
        assert rig.api.events[0]["source"] == {"component": "kubelet", "host": "n1"}
        # the new instance is probed afresh
        await rig.time.advance(0)
        assert [a for k, a in rig.cri.calls if k == "exec"][-1] == ("app-1", "alive", 1)
        await rig.worker.probes.close()
    asyncio.run(go())


def test_restart_policy_never_kills_and_leaves_the_pod_failed(tmp_path: Any) -> None:
    async def go() -> None:
        rig = Rig(str(tmp_path), liveness(failureThreshold=1), restart="Never")
        rig.cri.exec_codes["alive"] = [1]
        await rig.start()
        await rig.worker.sync()
        await rig.worker.sync()
        assert rig.worker.state is W.PodState.COMPLETED
        assert rig.status()["phase"] == "Failed"
        assert rig.app()["restartCount"] == 0
        assert [c for c in rig.cri.calls if c[0] == "start"] == [("start", "app-0")]
        await rig.worker.probes.close()
    asyncio.run(go())


@pytest.mark.parametrize(("codes", "advances", "ready"), [
    pytest.param([1], 0, False, id="not-ready-before-a-success"),
    pytest.param([0], 0, True, id="ready-on-the-first-success"),
    pytest.param([0, 1], 3, False, id="unready-after-three-failures"),
    pytest.param([0, 1, 1, 0], 3, True, id="two-failures-are-not-enough"),
])
def test_readiness_drives_container_ready_and_pod_conditions(
        tmp_path: Any, codes: list[int], advances: int, ready: bool) -> None:
    async def go() -> None:
        rig = Rig(str(tmp_path), readiness())
        rig.cri.exec_codes["ready"] = codes
        await rig.start()
        for _ in range(advances):
            await rig.time.advance(10)
        await rig.worker.sync()
        want = "True" if ready else "False"
        assert rig.app()["ready"] is ready and rig.app()["started"] is True
        conds = rig.conditions()
        assert (conds["ContainersReady"], conds["Ready"]) == (want, want), conds
        assert rig.status()["phase"] == "Running"
        await rig.worker.probes.close()
    asyncio.run(go())


def test_startup_probe_holds_started_and_ready(tmp_path: Any) -> None:
    async def go() -> None:
        rig = Rig(str(tmp_path), {"startupProbe": {"exec": {"command": ["up"]},
                                                   "periodSeconds": 1}})
        rig.cri.exec_codes["up"] = [1, 0]
        await rig.start()
        await rig.worker.sync()
        assert (rig.app()["started"], rig.app()["ready"]) == (False, False)
        assert rig.conditions()["Ready"] == "False"
        await rig.time.advance(1)
        await rig.worker.sync()
        assert (rig.app()["started"], rig.app()["ready"]) == (True, True)
        assert rig.conditions()["Ready"] == "True"
        await rig.worker.probes.close()
    asyncio.run(go())


def test_deleting_the_pod_stops_every_prober(tmp_path: Any) -> None:
    async def go() -> None:
        rig = Rig(str(tmp_path), {**readiness(), **liveness()})
        rig.cri.exec_codes.update(ready=[0], alive=[0])
        before = asyncio.all_tasks()
        await rig.start()
        assert asyncio.all_tasks() - before, "the probers run as tasks"
        rig.worker.mark_gone()
        await rig.worker.run()  # terminates, removes, ends
        await settle()
        assert rig.worker.done and asyncio.all_tasks() - before == set()
        n = len(rig.cri.calls)
        await rig.time.advance(30)
        assert len(rig.cri.calls) == n, "no probe after the pod is gone"
    asyncio.run(go())
