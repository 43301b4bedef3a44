"""Graceful termination in the pod worker, on a fake CRI (tests/unit/agent
test_worker_probes.py's Rig): preStop (exec, httpGet, tcpSocket) runs before
StopContainer(grace), on a delete and on a liveness kill (with the probe's own grace); a
remove that fails is retried and the worker ends only when it succeeded; the sandboxes of
pods not bound here are adopted and removed."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from agent import cri as C
from agent import pods as PODS
from agent import probes as PR
from agent import termination as T
from agent import worker as W
from runtime.service.cri import client as cric
from tests.unit.agent.test_probes_pod import settle
from tests.unit.agent.test_worker_probes import FakeCRI, Rig, liveness


def stops_and_hooks(rig: Rig) -> list[tuple[str, Any]]:
    return [c for c in rig.cri.calls if c[0] in ("exec", "stop")]


async def serve(handle: Any) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_pre_stop_exec_runs_before_the_stop_within_the_grace(tmp_path: Any) -> None:
    async def go() -> None:
        rig = Rig(str(tmp_path), {"lifecycle": {"preStop": {"exec": {"command": ["hook"]}}}})
        rig.cri.exec_codes["hook"] = [0]
        await rig.start()
        rig.worker.mark_gone()
        await rig.worker.run()
        assert rig.worker.done
        calls = stops_and_hooks(rig)
        assert calls[0] == ("exec", ("app-0", "hook", 3))  # the pod's grace: 3 s
        assert calls[1][0] == "stop" and calls[1][1][0] == "app-0"
        assert 2 <= calls[1][1][1] <= 3, "the rest of the grace goes to the stop"
        assert rig.cri.sandboxes == [], "the sandbox is removed"
    asyncio.run(go())


@pytest.mark.parametrize("handler", [
    pytest.param("httpGet", id="httpGet"),
    pytest.param("tcpSocket", id="tcpSocket"),
])
def test_pre_stop_http_and_tcp_reach_the_pod_before_the_stop(tmp_path: Any,
                                                             handler: str) -> None:
    async def go() -> None:
        seen: list[str] = []
        stops_then: list[int] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            stops_then.append(len([c for c in rig.cri.calls if c[0] == "stop"]))
            if handler == "httpGet":
                seen.append((await reader.readline()).decode().strip())
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
            else:
                seen.append("connected")
            writer.close()

        server, port = await serve(handle)
        hook: dict[str, Any] = {"port": "hook", "host": "127.0.0.1"}
        if handler == "httpGet":
            hook["path"] = "/shutdown"
        rig = Rig(str(tmp_path), {"ports": [{"name": "hook", "containerPort": port}],
                                  "lifecycle": {"preStop": {handler: hook}}})
        try:
            await rig.start()
            rig.worker.mark_gone()
            await rig.worker.run()
        finally:
            server.close()
            await server.wait_closed()
        want = "GET /shutdown HTTP/1.1" if handler == "httpGet" else "connected"
        assert seen == [want] and stops_then == [0], "the hook ran before any stop"
        assert [c[0] for c in stops_and_hooks(rig)] == ["stop"]
        assert not [e for e in rig.api.events if e["reason"] == "FailedPreStopHook"]
    asyncio.run(go())


def test_a_failed_pre_stop_is_an_event_and_the_stop_goes_on(tmp_path: Any) -> None:
    async def go() -> None:
        rig = Rig(str(tmp_path), {"lifecycle": {"preStop": {"exec": {"command": ["hook"]}}}})
        rig.cri.exec_codes["hook"] = [2]
        await rig.start()
        rig.worker.mark_gone()
        await rig.worker.run()
        assert [c[0] for c in stops_and_hooks(rig)] == ["exec", "stop"]
        failed = [e for e in rig.api.events if e["reason"] == "FailedPreStopHook"]
        assert len(failed) == 1 and failed[0]["type"] == "Warning"
        assert "PreStopHook failed for container app: command ['hook'] exited 2" in \
            failed[0]["message"]
    asyncio.run(go())


@pytest.mark.parametrize("field,probe_grace,want", [
    pytest.param("livenessProbe", 7, 7, id="the-probe-grace"),
    pytest.param("livenessProbe", None, 3, id="the-pod-grace"),
    pytest.param("startupProbe", 9, 9, id="a-startup-kill-the-startup-grace"),
])
def test_a_liveness_kill_runs_pre_stop_with_the_probe_grace(
        tmp_path: Any, field: str, probe_grace: int | None, want: int) -> None:
    async def go() -> None:
        probe = {field: liveness(failureThreshold=1)["livenessProbe"]}
        if probe_grace is not None:
            probe[field]["terminationGracePeriodSeconds"] = probe_grace
        if field == "startupProbe":  # not the one that failed: its grace is not used
            probe["livenessProbe"] = {"exec": {"command": ["other"]},
                                      "terminationGracePeriodSeconds": 4}
        rig = Rig(str(tmp_path), {**probe, "lifecycle": {
            "preStop": {"exec": {"command": ["hook"]}}}})
        rig.cri.exec_codes.update(alive=[1], hook=[0])
        await rig.start()
        await rig.time.advance(10)
        await rig.worker.sync()  # woken by the prober: preStop, then the kill
        calls = stops_and_hooks(rig)
        assert ("exec", ("app-0", "hook", want)) in calls
        assert calls.index(("exec", ("app-0", "hook", want))) < \
            calls.index(("stop", ("app-0", want)))
        await rig.worker.probes.close()
    asyncio.run(go())


BOTH = {"livenessProbe": {"terminationGracePeriodSeconds": 4},
        "startupProbe": {"terminationGracePeriodSeconds": 9}}


@pytest.mark.parametrize("kind,container,want", [
    pytest.param(PR.Kind.LIVENESS, BOTH, 4, id="liveness"),
    pytest.param(PR.Kind.STARTUP, BOTH, 9, id="startup"),
    pytest.param(PR.Kind.LIVENESS, {"livenessProbe": {}}, 30, id="unset"),
    pytest.param(PR.Kind.STARTUP, {"livenessProbe": {"terminationGracePeriodSeconds": 4}},
                 30, id="startup-unset-not-the-liveness-grace"),
])
def test_probe_grace(kind: PR.Kind, container: dict[str, Any], want: int) -> None:
    assert T.probe_grace(container, kind, default=30) == want


class FlakyRemoveCRI(FakeCRI):
    """RemovePodSandbox fails (runtime restarting) the first FAILURES times."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def remove_pod_sandbox(self, sid: str) -> None:
        self.calls.append(("remove_sandbox", sid))
        if self.failures:
            self.failures -= 1
            raise cric.Unavailable("RemovePodSandbox", "UNAVAILABLE", "runtime restarting",
                                   subject=sid)
        await super().remove_pod_sandbox(sid)


def test_a_failed_remove_is_retried_before_the_worker_ends(tmp_path: Any) -> None:
    async def go() -> None:
        rig = Rig(str(tmp_path), {"lifecycle": {"preStop": {"exec": {"command": ["hook"]}}}})
        rig.cri.exec_codes["hook"] = [0]
        flaky = FlakyRemoveCRI(failures=2)
        flaky.__dict__.update({k: v for k, v in rig.cri.__dict__.items() if k != "failures"})
        rig.worker.env.cri = flaky  # type: ignore[assignment]
        rig.worker.env.refresh = flaky.refresh
        rig.cri = flaky
        await rig.start()
        rig.worker.mark_gone()
        await rig.worker.sync()
        assert rig.worker.state is W.PodState.TERMINATING and not rig.worker.done
        assert rig.cri.sandboxes, "the sandbox is still there"
        await rig.worker.sync()  # the retry fails again
        assert not rig.worker.done
        await rig.worker.sync()
        assert rig.worker.done and rig.cri.sandboxes == []
        assert [c for c in rig.cri.calls if c[0] == "remove_sandbox"] == \
            [("remove_sandbox", "sb")] * 3
        assert [c[0] for c in rig.cri.calls].count("exec") == 1, "preStop runs once"
    asyncio.run(go())


def test_the_worker_loop_retries_a_failed_remove_with_backoff(tmp_path: Any) -> None:
    async def go() -> None:
        rig = Rig(str(tmp_path), {})
        flaky = FlakyRemoveCRI(failures=1)
        flaky.__dict__.update({k: v for k, v in rig.cri.__dict__.items() if k != "failures"})
        rig.worker.env.cri = flaky  # type: ignore[assignment]
        rig.worker.env.refresh = flaky.refresh
        await rig.start()
        rig.worker.mark_gone()
        await asyncio.wait_for(rig.worker.run(), 5)  # about 1 s of back-off, then done
        assert rig.worker.done and flaky.sandboxes == []
        assert [c for c in flaky.calls if c[0] == "remove_sandbox"] == \
            [("remove_sandbox", "sb")] * 2
    asyncio.run(go())


class NoPods:
    async def list(self, resource: str, *, namespace: str = "", **kw: Any
                   ) -> dict[str, Any]:
        return {"items": []}

    def watch(self, resource: str, *, namespace: str = "", **kw: Any) -> Any:
        raise AssertionError("not watched in this test")


class Runtime2:
    """Two pods in the runtime: u1 (on FakeCRI) and u2, which the API binds here."""

    def __init__(self, cri: FakeCRI) -> None:
        self.cri = cri

    async def __call__(self) -> Mapping[str, C.PodRuntime]:
        pods = dict(await self.cri.refresh())
        pods["u2"] = C.PodRuntime("u2", "default", "kept",
                                  sandboxes=[C.SandboxInfo("sb2", 0, True, "10.1.0.8")])
        return pods


@pytest.mark.parametrize("known,removed", [
    pytest.param(set(), True, id="orphan-removed"),
    pytest.param({"u1"}, False, id="bound-pod-kept"),
])
def test_adopt_orphans_removes_the_sandboxes_of_pods_not_bound_here(
        tmp_path: Any, known: set[str], removed: bool) -> None:
    async def go() -> None:
        rig = Rig(str(tmp_path), {})
        await rig.start()  # u1 runs: a sandbox and a container
        relist = Runtime2(rig.cri)
        manager = PODS.PodManager(source=NoPods(), node_name="n1", env=rig.worker.env,
                                  relist=relist)  # type: ignore[arg-type]
        await manager.adopt_orphans(known | {"u2"})
        tasks = list(manager._tasks.values())
        assert sorted(manager.workers) == ([] if not removed else ["u1"])
        if removed:
            adopted = manager.workers["u1"]
            assert adopted.gone and adopted.key == "default/web"
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        await settle()
        assert manager.workers == {}
        if removed:
            assert rig.cri.sandboxes == []
            assert [c.state for c in rig.cri.containers.values()] == ["exited"]
            assert ("stop", ("app-0", 2)) in rig.cri.calls  # the orphan's grace
            assert rig.api.deleted == [], "a pod the API does not know is not deleted"
        else:
            assert len(rig.cri.sandboxes) == 1 and rig.cri.sandboxes[0].ready
            assert not [c for c in rig.cri.calls if c[0] == "stop"]
        await rig.worker.probes.close()
    asyncio.run(go())


class SlowHookCRI(FakeCRI):
    """ExecSync that takes 1.2 s (a preStop hook longer than a 1 s grace)."""

    async def exec_sync(self, container_id: str, cmd: Any, *, timeout: int = 0) -> Any:
        await asyncio.sleep(1.2)
        return await super().exec_sync(container_id, cmd, timeout=timeout)


@pytest.mark.parametrize("hook,want", [
    pytest.param(True, T.PRE_STOP_EXTRA, id="pre-stop-used-the-grace"),
    pytest.param(False, 1, id="no-pre-stop"),
])
def test_a_pre_stop_that_used_the_grace_leaves_two_seconds_for_term(
        tmp_path: Any, hook: bool, want: int) -> None:
    async def go() -> None:
        rig = Rig(str(tmp_path), {"lifecycle": {"preStop": {"exec": {
            "command": ["hook"]}}}} if hook else {})
        rig.worker.pod["spec"]["terminationGracePeriodSeconds"] = 1
        slow = SlowHookCRI()
        slow.exec_codes["hook"] = [0]
        rig.cri = slow
        rig.worker.env.cri = slow  # type: ignore[assignment]
        rig.worker.env.refresh = slow.refresh
        await rig.start()
        rig.worker.mark_gone()
        await rig.worker.run()
        assert [c for c in slow.calls if c[0] == "stop"] == [("stop", ("app-0", want))]
    asyncio.run(go())
