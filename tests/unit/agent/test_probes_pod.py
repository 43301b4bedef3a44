"""agent/probes.py PodProber on a manual clock: probers follow the running container
instances, readiness and startup verdicts, liveness kills, events, no task left behind."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from agent import cri as C
from agent import probes as p
from agent.probes import Result

S, F = Result.SUCCESS, Result.FAILURE
EXEC = {"exec": {"command": ["check"]}}


class ManualTime:
    """Sleeps end only when advance() passes their deadline."""

    def __init__(self) -> None:
        self.now = 5000.0
        self.sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sleepers.append((self.now + seconds, fut))
        await fut

    async def advance(self, seconds: float) -> None:
        await settle()
        self.now += seconds
        for at, fut in list(self.sleepers):
            if at <= self.now and not fut.done():
                fut.set_result(None)
        self.sleepers = [(at, f) for at, f in self.sleepers if not f.done()]
        await settle()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


class Answers:
    """A checker answering per (kind, container id) from lists (the last one repeats)."""

    def __init__(self, **by_kind: list[Result]) -> None:
        self.by_kind = by_kind
        self.calls: list[tuple[str, str]] = []

    async def __call__(self, spec: Mapping[str, Any], target: p.Target) -> tuple[Result, str]:
        kind = str(spec["kind"])
        self.calls.append((kind, target.container_id))
        answers = self.by_kind[kind]
        r = answers.pop(0) if len(answers) > 1 else answers[0]
        return r, f"said {r.value.lower()}"


def probe(kind: str, **extra: Any) -> dict[str, Any]:
    return {**EXEC, "kind": kind, **extra}


def the_pod(*containers: dict[str, Any], status: dict[str, Any] | None = None,
            ) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {"containers": list(containers)}, "status": status or {}}


def runtime(t: ManualTime, *running: tuple[str, str], state: str = "running",
            ) -> C.PodRuntime:
    rt = C.PodRuntime("u1", "default", "web", sandboxes=[C.SandboxInfo("sb", 0, True,
                                                                       "10.1.0.5")])
    for n, (name, cid) in enumerate(running):
        rt.containers.append(C.ContainerInfo(id=cid, name=name, attempt=n, state=state,
                                             sandbox_id="sb",
                                             started_at=int(t.now * 1e9)))
    return rt


class Harness:
    def __init__(self, pod: dict[str, Any], answers: Answers) -> None:
        self.time = ManualTime()
        self.wakes = 0
        self.prober = p.PodProber(pod, exec_sync=None, on_change=self._wake,
                                  checker=answers, clock=self.time.clock,
                                  sleep=self.time.sleep)

    def _wake(self) -> None:
        self.wakes += 1


def test_a_container_without_probes_is_ready_and_started_and_gets_no_prober() -> None:
    async def go() -> None:
        h = Harness(the_pod({"name": "app"}), Answers())
        h.prober.update(h.prober.pod, runtime(h.time, ("app", "c1")))
        assert h.prober.probers == {}
        assert h.prober.ready("app") and h.prober.started("app")
        assert h.prober.kill_reason("app", "c1") is None
    asyncio.run(go())


@pytest.mark.parametrize(("container", "ready", "started"), [
    pytest.param({"readinessProbe": probe("r")}, False, True, id="readiness"),
    pytest.param({"startupProbe": probe("s")}, False, False, id="startup"),
    pytest.param({"livenessProbe": probe("l")}, True, True, id="liveness-only"),
])
def test_before_any_probe_result(container: dict[str, Any], ready: bool,
                                 started: bool) -> None:
    """Kubernetes' initial results: not ready until a readiness success, not started
    until a startup success; a liveness probe alone does not hold readiness back."""
    h = Harness(the_pod({"name": "app", **container}), Answers())
    assert (h.prober.ready("app"), h.prober.started("app")) == (ready, started)


def test_readiness_follows_the_probe_and_wakes_the_worker() -> None:
    answers = Answers(r=[F, S, S, F, F, F])

    async def go() -> None:
        h = Harness(the_pod({"name": "app", "readinessProbe": probe("r")}), answers)
        h.prober.update(h.prober.pod, runtime(h.time, ("app", "c1")))
        await settle()
        assert answers.calls == [("r", "c1")] and not h.prober.ready("app")
        await h.time.advance(10)  # the default period
        assert h.prober.ready("app") and h.wakes == 1
        await h.time.advance(10)
        await h.time.advance(10)
        await h.time.advance(10)
        assert h.prober.ready("app"), "two failures are under the threshold of 3"
        await h.time.advance(10)
        assert not h.prober.ready("app") and h.wakes == 2
        assert h.prober.kill_reason("app", "c1") is None, "readiness never kills"
        assert h.prober.take_events() == [("Warning", "Unhealthy",
                                           "Readiness probe failed: said failure")]
        await h.prober.close()
    asyncio.run(go())


@pytest.mark.parametrize(("kind", "field", "what", "probe_kind"), [
    pytest.param("l", "livenessProbe", "liveness", p.Kind.LIVENESS, id="liveness"),
    pytest.param("s", "startupProbe", "startup", p.Kind.STARTUP, id="startup"),
])
def test_a_failure_past_the_threshold_asks_for_a_kill_of_that_instance_only(
        kind: str, field: str, what: str, probe_kind: p.Kind) -> None:
    answers = Answers(**{kind: [F]})

    async def go() -> None:
        h = Harness(the_pod({"name": "app", field: probe(kind, failureThreshold=2)}),
                    answers)
        h.prober.update(h.prober.pod, runtime(h.time, ("app", "c1")))
        await settle()
        assert h.prober.kill_reason("app", "c1") is None
        await h.time.advance(10)
        want = p.Kill(probe_kind, f"Container app failed {what} probe, will be restarted")
        assert h.prober.kill_reason("app", "c1") == want
        assert h.prober.kill_reason("app", "c0") is None
        assert h.prober.take_events() == [
            ("Warning", "Unhealthy", f"{what.capitalize()} probe failed: said failure")]
        await h.time.advance(10)
        assert len(answers.calls) == 2, "a failed instance is not probed again"
        # the restarted instance gets a fresh prober and no kill
        h.prober.update(h.prober.pod, runtime(h.time, ("app", "c2")))
        await settle()
        assert h.prober.kill_reason("app", "c2") is None
        assert answers.calls[-1] == (kind, "c2")
        await h.prober.close()
    asyncio.run(go())


def test_startup_gates_readiness_and_liveness() -> None:
    answers = Answers(s=[F, F, S], r=[S], l=[S])

    async def go() -> None:
        h = Harness(the_pod({"name": "app", "startupProbe": probe("s", periodSeconds=1),
                             "readinessProbe": probe("r"), "livenessProbe": probe("l")}),
                    answers)
        h.prober.update(h.prober.pod, runtime(h.time, ("app", "c1")))
        await settle()
        await h.time.advance(1)
        assert not h.prober.started("app") and not h.prober.ready("app")
        await h.time.advance(1)
        assert h.prober.started("app") and not h.prober.ready("app")
        assert answers.calls == [("s", "c1")] * 3
        await h.time.advance(8)  # readiness and liveness probe at their next period
        assert h.prober.started("app") and h.prober.ready("app")
        assert {k for k, _ in answers.calls} == {"s", "r", "l"}
        await h.prober.close()
    asyncio.run(go())


@pytest.mark.parametrize(("state", "gone"), [
    pytest.param("exited", False, id="container-exited"),
    pytest.param("running", True, id="container-removed-from-spec"),
])
def test_probers_stop_when_their_container_stops(state: str, gone: bool) -> None:
    answers = Answers(r=[S])

    async def go() -> None:
        pod = the_pod({"name": "app", "readinessProbe": probe("r", periodSeconds=1)})
        h = Harness(pod, answers)
        h.prober.update(pod, runtime(h.time, ("app", "c1")))
        await settle()
        tasks = list(h.prober.probers["app"]._tasks)
        assert tasks and not any(t.done() for t in tasks)
        h.prober.update(the_pod() if gone else pod,
                        runtime(h.time, ("app", "c1"), state=state))
        await settle()
        assert h.prober.probers == {} and all(t.done() for t in tasks)
        n = len(answers.calls)
        await h.time.advance(5)
        assert len(answers.calls) == n
        await h.prober.close()
    asyncio.run(go())


def test_close_leaves_no_task_behind() -> None:
    async def go() -> None:
        pod = the_pod({"name": "a", "readinessProbe": probe("r")},
                      {"name": "b", "livenessProbe": probe("l")})
        h = Harness(pod, Answers(r=[S], l=[S]))
        before = asyncio.all_tasks()
        h.prober.update(pod, runtime(h.time, ("a", "c1"), ("b", "c2")))
        await settle()
        assert len(asyncio.all_tasks() - before) >= 2  # two probers, their sleeps
        await h.prober.close()
        await settle()  # a cancelled sleep ends at the next turn of the loop
        assert asyncio.all_tasks() - before == set()
    asyncio.run(go())


@pytest.mark.parametrize(("cid", "ready"), [
    pytest.param("c1", True, id="same-instance-stays-ready"),
    pytest.param("c0", False, id="other-instance-starts-unready"),
])
def test_an_adopted_container_keeps_the_readiness_the_api_holds(cid: str,
                                                                ready: bool) -> None:
    """A restarted agent must not flap a ready pod to unready while it re-probes."""
    status = {"containerStatuses": [{"name": "app", "containerID": f"corral://{cid}",
                                     "ready": True, "started": True}]}

    async def go() -> None:
        pod = the_pod({"name": "app", "readinessProbe": probe("r", initialDelaySeconds=30),
                       "startupProbe": probe("s", initialDelaySeconds=30)}, status=status)
        h = Harness(pod, Answers(r=[S], s=[S]))
        h.prober.update(pod, runtime(h.time, ("app", "c1")))
        assert h.prober.ready("app") is ready and h.prober.started("app") is ready
        await h.prober.close()
    asyncio.run(go())


def test_the_target_is_the_pod_ip_and_the_container_start() -> None:
    async def go() -> None:
        pod = the_pod({"name": "app", "readinessProbe": probe("r"),
                       "ports": [{"name": "http", "containerPort": 8080}]})
        h = Harness(pod, Answers(r=[S]))
        h.prober.update(pod, runtime(h.time, ("app", "c1")))
        target = h.prober.probers["app"].workers[p.Kind.READINESS].target
        assert (target.container_id, target.pod_ip, target.started_at, dict(target.ports)) \
            == ("c1", "10.1.0.5", h.time.now, {"http": 8080})
        await h.prober.close()
    asyncio.run(go())
