"""The pod worker's states and the pure rules between them (worker.py acts on them).

    PENDING ──► INITIALIZING ──► RUNNING ──► COMPLETED
       │  └────────(phase already Succeeded/Failed)──────►│
       │             │              │            │
       └─────────────┴──────┬───────┴────────────┘
                            ▼
                       TERMINATING ──► TERMINATED

    decide(state, pod, runtime)   one step: deletion or a gone pod -> TERMINATING; a
                                  ready sandbox -> INITIALIZING; init containers done ->
                                  RUNNING; a terminal phase -> COMPLETED
    settle(...)                   decide() to a fixed point, each step checked against
                                  TRANSITIONS (a restarted agent walks an adopted pod
                                  straight to RUNNING)
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from agent import cri as C
from agent import status as S


class PodState(enum.Enum):
    PENDING = "Pending"
    INITIALIZING = "Initializing"
    RUNNING = "Running"
    COMPLETED = "Completed"
    TERMINATING = "Terminating"
    TERMINATED = "Terminated"


P = PodState
TRANSITIONS: Mapping[PodState, frozenset[PodState]] = {
    P.PENDING: frozenset({P.INITIALIZING, P.COMPLETED, P.TERMINATING}),
    P.INITIALIZING: frozenset({P.RUNNING, P.COMPLETED, P.TERMINATING}),
    P.RUNNING: frozenset({P.COMPLETED, P.TERMINATING}),
    P.COMPLETED: frozenset({P.TERMINATING}),
    P.TERMINATING: frozenset({P.TERMINATED}),
    P.TERMINATED: frozenset(),
}


class TransitionError(RuntimeError):
    pass


def check_transition(pod: str, old: PodState, new: PodState) -> None:
    if new is not old and new not in TRANSITIONS[old]:
        raise TransitionError(f"pod {pod}: state: cannot go from {old.value} to {new.value}")


def decide(state: PodState, pod: Mapping[str, Any], rt: C.PodRuntime, *,
           gone: bool) -> PodState:
    """The next state from the pod and what the runtime holds (one step)."""
    spec = pod.get("spec") or {}
    if state is not P.TERMINATED and state is not P.TERMINATING and (
            gone or (pod.get("metadata") or {}).get("deletionTimestamp")):
        return P.TERMINATING
    sb = rt.sandbox()
    if state is P.PENDING and (pod.get("status") or {}).get("phase") in S.TERMINAL:
        return P.COMPLETED  # finished before this agent started: never run it again
    if state is P.PENDING and sb is not None and sb.ready:
        return P.INITIALIZING
    if state is P.INITIALIZING:
        if S.init_done(spec, rt):
            return P.RUNNING
        if S.phase(spec, rt) == "Failed":
            return P.COMPLETED
    if state is P.RUNNING and S.phase(spec, rt) in S.TERMINAL:
        return P.COMPLETED
    return state


def settle(state: PodState, pod: Mapping[str, Any], rt: C.PodRuntime, *,
           gone: bool) -> PodState:
    """decide() repeated until it stops moving, each step checked against TRANSITIONS."""
    name = f"{pod['metadata'].get('namespace')}/{pod['metadata']['name']}"
    for _ in range(len(PodState)):
        new = decide(state, pod, rt, gone=gone)
        check_transition(name, state, new)
        if new is state:
            break
        state = new
    return state
