"""Pod status computed from runtime snapshots: phase, conditions, container states."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent import cri as C
from agent import status as S

NOW = 1_800_000_000 * 10**9


def pod(restart: str = "Always", *, inits: int = 0, resources: dict[str, Any] | None = None,
        ) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {"restartPolicy": restart,
                     "initContainers": [{"name": f"i{n}", "image": "x"} for n in range(inits)],
                     "containers": [{"name": "main", "image": "busybox",
                                     "resources": resources or {}}]}}


def rt(*containers: C.ContainerInfo) -> C.PodRuntime:
    out = C.PodRuntime("u1", sandboxes=[C.SandboxInfo("sb", 0, True, "10.0.0.2")])
    out.containers.extend(containers)
    return out


def ctr(state: str, *, name: str = "main", code: int = 0, attempt: int = 0,
        reason: str = "") -> C.ContainerInfo:
    return C.ContainerInfo(id=f"{name}-{attempt}", name=name, attempt=attempt, state=state,
                           sandbox_id="sb", exit_code=code, reason=reason, image_ref="sha256:1",
                           started_at=NOW - 5 * 10**9,
                           finished_at=NOW - 10**9 if state == "exited" else 0)


@pytest.mark.parametrize(("restart", "runtime", "want"), [
    pytest.param("Always", rt(), "Pending", id="not-started"),
    pytest.param("Always", rt(ctr("created")), "Pending", id="created"),
    pytest.param("Always", rt(ctr("running")), "Running", id="running"),
    pytest.param("Always", rt(ctr("exited", code=1)), "Running", id="always-restarting"),
    pytest.param("Always", rt(ctr("exited")), "Running", id="always-restarting-exit-0"),
    pytest.param("OnFailure", rt(ctr("exited", code=2)), "Running", id="onfailure-failed"),
    pytest.param("OnFailure", rt(ctr("exited")), "Succeeded", id="onfailure-done"),
    pytest.param("Never", rt(ctr("exited")), "Succeeded", id="never-0"),
    pytest.param("Never", rt(ctr("exited", code=1)), "Failed", id="never-1"),
])
def test_phase(restart: str, runtime: C.PodRuntime, want: str) -> None:
    assert S.phase(pod(restart)["spec"], runtime) == want


@pytest.mark.parametrize(("runtime", "inits", "restart", "want"), [
    pytest.param(rt(), 1, "Always", "Pending", id="init-not-run"),
    pytest.param(rt(ctr("running", name="i0")), 1, "Always", "Pending", id="init-running"),
    pytest.param(rt(ctr("exited", name="i0", code=1)), 1, "Never", "Failed",
                 id="init-failed-never"),
    pytest.param(rt(ctr("exited", name="i0", code=1)), 1, "OnFailure", "Pending",
                 id="init-failed-retried"),
    pytest.param(rt(ctr("exited", name="i0"), ctr("running")), 1, "Always", "Running",
                 id="init-done"),
])
def test_phase_with_init_containers(runtime: C.PodRuntime, inits: int, restart: str,
                                    want: str) -> None:
    assert S.phase(pod(restart, inits=inits)["spec"], runtime) == want


@pytest.mark.parametrize(("latest", "waiting", "want_state", "want_last"), [
    pytest.param(None, None, {"waiting": {"reason": "ContainerCreating"}}, {}, id="none"),
    pytest.param(None, ("ErrImagePull", "no such image"),
                 {"waiting": {"reason": "ErrImagePull", "message": "no such image"}}, {},
                 id="pull-error"),
    pytest.param(ctr("running"), None, {"running": {"startedAt": S.rfc3339(NOW - 5 * 10**9)}},
                 {}, id="running"),
    pytest.param(ctr("exited", code=137, reason="OOMKilled"), None, "OOMKilled", {},
                 id="oom"),
    pytest.param(ctr("exited", code=0), None, "Completed", {}, id="completed"),
    pytest.param(ctr("exited", code=3), None, "Error", {}, id="error"),
    pytest.param(ctr("exited", code=1, attempt=2), ("CrashLoopBackOff", "back-off 20s"),
                 {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s"}},
                 "Error", id="crash-loop"),
])
def test_container_status(latest: C.ContainerInfo | None, waiting: tuple[str, str] | None,
                          want_state: Any, want_last: Any) -> None:
    view = S.StatusView(now_ns=NOW, waiting={"main": waiting} if waiting else {})
    got = S.container_status({"name": "main", "image": "busybox"}, latest, None, view)
    if isinstance(want_state, str):
        assert got["state"]["terminated"]["reason"] == want_state
        assert got["state"]["terminated"]["exitCode"] == latest.exit_code  # type: ignore
    else:
        assert got["state"] == want_state
    if isinstance(want_last, str):
        assert got["lastState"]["terminated"]["reason"] == want_last
    else:
        assert got["lastState"] == want_last
    if latest is not None:
        assert got["restartCount"] == latest.attempt
        assert got["containerID"] == f"corral://{latest.id}"
        assert got["imageID"] == "sha256:1"


def conds(status: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in status["conditions"]}


def test_running_pod_is_ready_with_ip_and_keeps_transition_times() -> None:
    p = pod()
    st = S.pod_status(p, rt(ctr("running")), S.StatusView(now_ns=NOW, host_ip="192.0.2.1"))
    assert st["phase"] == "Running" and st["podIP"] == "10.0.0.2"
    assert conds(st) == {"Initialized": "True", "Ready": "True", "ContainersReady": "True",
                         "PodScheduled": "True"}
    assert st["hostIP"] == "192.0.2.1" and st["qosClass"] == "BestEffort"
    p["status"] = st
    later = S.pod_status(p, rt(ctr("running")), S.StatusView(now_ns=NOW + 60 * 10**9,
                                                             host_ip="192.0.2.1"))
    assert later == st  # nothing changed: nothing to write


def test_not_ready_probe_makes_pod_unready() -> None:
    st = S.pod_status(pod(), rt(ctr("running")), S.StatusView(now_ns=NOW,
                                                              ready=lambda n: False))
    assert conds(st)["Ready"] == "False"
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["message"] == "containers with unready status: [main]"


def test_terminal_phase_sticks() -> None:
    p = pod("Never")
    p["status"] = {"phase": "Succeeded"}
    assert S.pod_status(p, rt(), S.StatusView(now_ns=NOW))["phase"] == "Succeeded"


@pytest.mark.parametrize(("resources", "want"), [
    pytest.param({}, "BestEffort", id="none"),
    pytest.param({"requests": {"cpu": "100m"}}, "Burstable", id="request-only"),
    pytest.param({"limits": {"cpu": "1", "memory": "1Gi"}}, "Guaranteed", id="limits-only"),
    pytest.param({"limits": {"cpu": "1", "memory": "1Gi"},
                  "requests": {"cpu": "500m", "memory": "1Gi"}}, "Burstable", id="less"),
])
def test_qos_class(resources: dict[str, Any], want: str) -> None:
    assert S.qos_class(pod(resources=resources)["spec"]) == want


class FakeAPI:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def patch(self, resource: str, name: str, patch: bytes, *, patch_type: str,
                    namespace: str = "", **kw: Any) -> dict[str, Any]:
        assert (resource, patch_type, kw) == ("pods", S.MERGE_PATCH,
                                              {"subresource": "status"})
        self.calls.append((f"{namespace}/{name}", json.loads(patch)))
        return {"metadata": {"uid": "u1"}}


@pytest.mark.asyncio
async def test_writer_writes_only_changes_and_clears_removed_fields() -> None:
    api = FakeAPI()
    w = S.StatusWriter(api)
    p = pod()
    p["status"] = {"phase": "Pending", "message": "old"}
    assert w.set(p, {"phase": "Running"})
    assert w.set(p, {"phase": "Running", "podIP": "10.0.0.2"})  # the newest wins
    await w.flush()
    assert api.calls == [("default/web", {"status": {"message": None, "phase": "Running",
                                                     "podIP": "10.0.0.2"}})]
    assert not w.set(p, {"phase": "Running", "podIP": "10.0.0.2"})
    await w.flush()
    assert len(api.calls) == 1
