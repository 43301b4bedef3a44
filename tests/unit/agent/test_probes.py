"""agent/probes.py on fake time: thresholds, initial delay, holding after a liveness
failure, the startup probe gating the others, exec results."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from agent import probes as p
from agent.probes import Kind, Result

S, F = Result.SUCCESS, Result.FAILURE


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class Script:
    """A checker that answers from a list of results (the last repeats)."""

    def __init__(self, results: list[Result]) -> None:
        self.results = results
        self.calls: list[float] = []
        self.time: FakeTime | None = None

    async def __call__(self, spec: Mapping[str, Any], target: p.Target) -> tuple[Result, str]:
        self.calls.append(self.time.now if self.time else 0.0)
        r = self.results.pop(0) if len(self.results) > 1 else self.results[0]
        return r, r.value


def worker(kind: Kind, results: list[Result], spec: dict[str, Any] | None = None,
           *, time: FakeTime | None = None, gate: Any = None,
           ) -> tuple[p.ProbeWorker, list[p.ProbeUpdate], Script]:
    t = time or FakeTime()
    script = Script(results)
    script.time = t
    updates: list[p.ProbeUpdate] = []
    w = p.ProbeWorker(kind, {"exec": {"command": ["true"]}, **(spec or {})},
                      p.Target("cid-1", started_at=t.now), container="app",
                      on_result=updates.append, checker=script, clock=t.clock,
                      sleep=t.sleep, gate=gate)
    return w, updates, script


def steps(w: p.ProbeWorker, n: int) -> list[Result]:
    async def go() -> list[Result]:
        out = []
        for _ in range(n):
            await w.step()
            out.append(w.result)
        return out
    return asyncio.run(go())


@pytest.mark.parametrize(("kind", "spec", "results", "want"), [
    pytest.param(Kind.READINESS, {}, [S], [S, S, S], id="readiness-one-success"),
    pytest.param(Kind.READINESS, {"successThreshold": 3}, [S], [F, F, S, S],
                 id="readiness-success-threshold"),
    pytest.param(Kind.READINESS, {}, [S, F, F, F, S], [S, S, S, F, S],
                 id="readiness-three-failures"),
    pytest.param(Kind.READINESS, {"failureThreshold": 1}, [S, F, S], [S, F, S],
                 id="readiness-failure-threshold-1"),
    pytest.param(Kind.READINESS, {}, [S, F, F, S, F, F, S], [S] * 7,
                 id="readiness-failures-not-in-a-row"),
    pytest.param(Kind.READINESS, {"successThreshold": 2}, [S, F, S, S], [F, F, F, S],
                 id="readiness-successes-not-in-a-row"),
    pytest.param(Kind.LIVENESS, {}, [F], [S, S, F, F, F], id="liveness-fails-then-holds"),
    pytest.param(Kind.LIVENESS, {"successThreshold": 5}, [S], [S], id="liveness-threshold-1"),
    pytest.param(Kind.STARTUP, {"failureThreshold": 2}, [F, F, S], [Result.UNKNOWN, F, F],
                 id="startup-fails"),
    pytest.param(Kind.STARTUP, {}, [F, S], [Result.UNKNOWN, S, S], id="startup-passes"),
    pytest.param(Kind.LIVENESS, {}, [Result.UNKNOWN], [S, S, F], id="unknown-is-failure"),
])
def test_thresholds(kind: Kind, spec: dict[str, Any], results: list[Result],
                    want: list[Result]) -> None:
    w, _, _ = worker(kind, results, spec)
    assert steps(w, len(want)) == want


def test_updates_are_published_on_change_only() -> None:
    w, updates, _ = worker(Kind.READINESS, [S, S, F, F, F, F, S])
    steps(w, 7)
    assert [(u.kind, u.result, u.container, u.container_id) for u in updates] == [
        (Kind.READINESS, S, "app", "cid-1"), (Kind.READINESS, F, "app", "cid-1"),
        (Kind.READINESS, S, "app", "cid-1")]


def test_liveness_failure_holds_until_the_container_restarts() -> None:
    w, updates, script = worker(Kind.LIVENESS, [F, F, F, S])
    steps(w, 6)
    assert len(script.calls) == 3 and w.on_hold
    assert [u.result for u in updates] == [F]
    w.restart(p.Target("cid-2", started_at=0))
    assert w.result is S and not w.on_hold
    steps(w, 2)
    assert len(script.calls) == 5 and w.result is S and len(updates) == 1


def test_initial_delay_counts_from_the_container_start() -> None:
    t = FakeTime()
    w, _, script = worker(Kind.READINESS, [S], {"initialDelaySeconds": 5}, time=t)
    steps(w, 1)
    assert script.calls == [] and w.result is F
    t.now += 5
    steps(w, 1)
    assert script.calls == [1005.0] and w.result is S


def test_run_waits_the_delay_then_probes_every_period() -> None:
    t = FakeTime()
    w, _, script = worker(Kind.READINESS, [S], {"initialDelaySeconds": 3,
                                                "periodSeconds": 7}, time=t)

    async def go() -> None:
        task = asyncio.create_task(w.run())
        while len(script.calls) < 4:
            await asyncio.sleep(0)
        w.stop()
        await task
    asyncio.run(go())
    assert script.calls[:4] == [1003.0, 1010.0, 1017.0, 1024.0]
    assert t.sleeps[:3] == [3.0, 7.0, 7.0]


def test_defaults_are_kubernetes() -> None:
    w = p.ProbeWorker(Kind.READINESS, {"tcpSocket": {"port": 80}}, p.Target("c"),
                      container="app", on_result=lambda u: None)
    assert (w.period, w.initial_delay, w.success_threshold, w.failure_threshold) == \
        (10.0, 0.0, 1, 3)
    assert p.INITIAL == {Kind.LIVENESS: S, Kind.READINESS: F, Kind.STARTUP: Result.UNKNOWN}


def test_startup_probe_gates_liveness_and_readiness() -> None:
    t = FakeTime()
    answers = {Kind.STARTUP: [F, F, S], Kind.LIVENESS: [S], Kind.READINESS: [S]}
    calls: list[str] = []

    async def checker(spec: Mapping[str, Any], target: p.Target) -> tuple[Result, str]:
        kind = Kind(spec["name"])
        calls.append(kind.value)
        r = answers[kind].pop(0) if len(answers[kind]) > 1 else answers[kind][0]
        return r, ""

    container = {"name": "app", **{k.value: {"exec": {"command": ["x"]}, "name": k.value}
                                   for k in Kind}}
    updates: list[p.ProbeUpdate] = []
    prober = p.ContainerProber(container, p.Target("cid", started_at=t.now),
                               on_result=updates.append, checker=checker, clock=t.clock,
                               sleep=t.sleep)

    async def round_() -> None:
        for w in prober.workers.values():
            await w.step()

    async def go() -> None:
        for _ in range(2):
            await round_()
        assert calls == ["startupProbe", "startupProbe"]
        assert not prober.started() and not prober.ready()
        await round_()  # startup passes; the others start with the next round
        assert prober.started() and not prober.ready()
        await round_()
    asyncio.run(go())
    assert calls == ["startupProbe"] * 3 + ["livenessProbe", "readinessProbe"]
    assert prober.ready()
    assert [(u.kind, u.result) for u in updates] == [(Kind.STARTUP, S), (Kind.READINESS, S)]


def test_container_prober_runs_and_stops_its_tasks() -> None:
    t = FakeTime()
    script = Script([S])
    script.time = t
    prober = p.ContainerProber({"name": "app", "readinessProbe": {"tcpSocket": {"port": 1}}},
                               p.Target("cid"), on_result=lambda u: None, checker=script,
                               clock=t.clock, sleep=t.sleep)

    async def go() -> None:
        prober.start()
        while len(script.calls) < 3:
            await asyncio.sleep(0)
        await prober.stop()
        n = len(script.calls)
        for _ in range(20):
            await asyncio.sleep(0)
        assert len(script.calls) == n
    asyncio.run(go())
    assert prober.ready()


@pytest.mark.parametrize(("reply", "want", "message"), [
    pytest.param((0, b"ok\n"), S, "ok\n", id="exit-0"),
    pytest.param((1, "bad"), F, "command ['check'] exited 1: bad", id="exit-1"),
    pytest.param(TimeoutError(), F, "command ['check'] timed out after 2s", id="timeout"),
    pytest.param(RuntimeError("no such container"), F, "command ['check']: no such container",
                 id="error"),
])
def test_exec_probe_results(reply: Any, want: Result, message: str) -> None:
    seen: list[tuple[str, list[str], float]] = []

    async def exec_sync(cid: str, cmd: list[str], timeout: float) -> tuple[int, bytes | str]:
        seen.append((cid, cmd, timeout))
        if isinstance(reply, Exception):
            raise reply
        return reply  # type: ignore[no-any-return]

    got = asyncio.run(p.check({"exec": {"command": ["check"]}, "timeoutSeconds": 2},
                              p.Target("cid-9"), exec_sync=exec_sync))
    assert got == (want, message)
    assert seen == [("cid-9", ["check"], 2.0)]


def test_exec_sync_may_be_a_plain_function() -> None:
    got = asyncio.run(p.check({"exec": {"command": ["x"]}}, p.Target("c"),
                              exec_sync=lambda cid, cmd, timeout: (0, b"")))
    assert got == (S, "")


@pytest.mark.parametrize(("spec", "message"), [
    pytest.param({"tcpSocket": {"port": "web"}}, "probe failed: no container port named "
                 "'web'", id="unknown-named-port"),
    pytest.param({"periodSeconds": 3}, "probe has no handler", id="no-handler"),
    pytest.param({"exec": {"command": ["x"]}}, "exec probe: no exec_sync", id="no-exec"),
])
def test_probe_errors_are_failures(spec: dict[str, Any], message: str) -> None:
    result, text = asyncio.run(p.check(spec, p.Target("c", pod_ip="127.0.0.1")))
    assert result is F and text.startswith(message)


def test_named_ports() -> None:
    assert p.named_ports({"ports": [{"name": "http", "containerPort": 8080},
                                    {"containerPort": 9000}]}) == {"http": 8080}
