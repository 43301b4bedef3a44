"""The pod worker's state machine (the table walked), its decisions, and the back-off."""

from __future__ import annotations

from typing import Any

import pytest

from agent import backoff as B
from agent import cri as C
from agent import podstate as PS

P = PS.PodState


def pod(*, restart: str = "Always", inits: int = 0, deleted: bool = False,
        phase: str = "") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "web", "namespace": "default", "uid": "u1"}
    if deleted:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "status": {"phase": phase} if phase else {},
            "spec": {"restartPolicy": restart,
                     "initContainers": [{"name": f"i{n}", "image": "x"} for n in range(inits)],
                     "containers": [{"name": "main", "image": "x"}]}}


def rt(*containers: C.ContainerInfo, sandbox: bool = True) -> C.PodRuntime:
    out = C.PodRuntime("u1", "default", "web")
    if sandbox:
        out.sandboxes.append(C.SandboxInfo("sb", 0, True, "10.0.0.2"))
    out.containers.extend(containers)
    return out


def ctr(name: str, state: str, *, code: int = 0, attempt: int = 0) -> C.ContainerInfo:
    return C.ContainerInfo(id=f"{name}{attempt}", name=name, attempt=attempt, state=state,
                           sandbox_id="sb", exit_code=code, started_at=1_000_000_000,
                           finished_at=2_000_000_000 if state == "exited" else 0)


def test_every_state_is_in_the_table_and_terminated_is_final() -> None:
    assert set(PS.TRANSITIONS) == set(P)
    assert PS.TRANSITIONS[P.TERMINATED] == frozenset()
    for state in P:
        if state is not P.TERMINATED:
            assert P.TERMINATING in PS.TRANSITIONS[state] or state is P.TERMINATING


@pytest.mark.parametrize(("old", "new"), [
    (a, b) for a in P for b in P if b is not a and b not in PS.TRANSITIONS[a]])
def test_transitions_outside_the_table_are_refused(old: PS.PodState,
                                                   new: PS.PodState) -> None:
    with pytest.raises(PS.TransitionError, match=f"pod default/web: state: cannot go from "
                       f"{old.value} to {new.value}"):
        PS.check_transition("default/web", old, new)


@pytest.mark.parametrize(("state", "the_pod", "runtime", "gone", "want"), [
    pytest.param(P.PENDING, pod(), rt(sandbox=False), False, P.PENDING, id="no-sandbox-yet"),
    pytest.param(P.PENDING, pod(), rt(), False, P.RUNNING, id="sandbox-up-no-inits"),
    pytest.param(P.PENDING, pod(inits=1), rt(), False, P.INITIALIZING, id="init-pending"),
    pytest.param(P.PENDING, pod(inits=1), rt(ctr("i0", "exited")), False, P.RUNNING,
                 id="init-done"),
    pytest.param(P.PENDING, pod(inits=1, restart="Never"),
                 rt(ctr("i0", "exited", code=1)), False, P.COMPLETED, id="init-failed-never"),
    pytest.param(P.PENDING, pod(inits=1), rt(ctr("i0", "exited", code=1)), False,
                 P.INITIALIZING, id="init-failed-retried"),
    pytest.param(P.PENDING, pod(), rt(ctr("main", "running")), False, P.RUNNING,
                 id="adopted-running"),
    pytest.param(P.PENDING, pod(restart="Never"), rt(ctr("main", "exited")), False,
                 P.COMPLETED, id="adopted-finished"),
    pytest.param(P.PENDING, pod(phase="Succeeded"), rt(sandbox=False), False, P.COMPLETED,
                 id="finished-before-agent-started"),
    pytest.param(P.RUNNING, pod(), rt(ctr("main", "exited", code=1)), False, P.RUNNING,
                 id="always-restarts"),
    pytest.param(P.RUNNING, pod(restart="OnFailure"), rt(ctr("main", "exited")), False,
                 P.COMPLETED, id="onfailure-exit-0"),
    pytest.param(P.RUNNING, pod(deleted=True), rt(ctr("main", "running")), False,
                 P.TERMINATING, id="deleted"),
    pytest.param(P.COMPLETED, pod(), rt(), True, P.TERMINATING, id="gone-from-api"),
    pytest.param(P.TERMINATING, pod(deleted=True), rt(), False, P.TERMINATING,
                 id="terminating-stays"),
])
def test_settle(state: PS.PodState, the_pod: dict[str, Any], runtime: C.PodRuntime,
                gone: bool, want: PS.PodState) -> None:
    assert PS.settle(state, the_pod, runtime, gone=gone) is want


@pytest.mark.parametrize(("crashes", "want"), [
    pytest.param(1, 0.0, id="first-exit-restarts-at-once"),
    pytest.param(2, 10.0, id="then-10s"),
    pytest.param(3, 20.0, id="doubling"),
    pytest.param(6, 160.0, id="160s"),
    pytest.param(7, 300.0, id="capped-at-5min"),
    pytest.param(30, 300.0, id="stays-capped"),
])
def test_crash_delay(crashes: int, want: float) -> None:
    assert B.crash_delay(crashes) == want


def test_backoff_resets_after_ten_minutes_of_clean_running() -> None:
    b = B.Backoff()
    short = C.ContainerInfo(id="a", name="m", attempt=3, state="exited",
                            started_at=100 * 10**9, finished_at=101 * 10**9)
    assert b.restart_at(short) == 101 + 40
    long = C.ContainerInfo(id="b", name="m", attempt=4, state="exited",
                           started_at=100 * 10**9, finished_at=800 * 10**9)
    assert b.restart_at(long) == 800  # ran 700 s: counting starts again
    again = C.ContainerInfo(id="c", name="m", attempt=5, state="exited",
                            started_at=900 * 10**9, finished_at=901 * 10**9)
    assert b.restart_at(again) == 901 + 10
