"""The lifecycle table: every verb in every state, walked."""

from __future__ import annotations

import pytest

from runtime.oci import state
from runtime.oci.errors import InvalidState

VERBS = sorted(state.ALLOWED)


@pytest.mark.parametrize("verb", VERBS)
@pytest.mark.parametrize("status", [s for s in state.STATUSES if s != state.CREATING])
def test_require_walks_the_table(verb: str, status: str) -> None:
    if status in state.ALLOWED[verb]:
        state.require(verb, status, "c1")
    else:
        with pytest.raises(InvalidState):
            state.require(verb, status, "c1")


def test_transitions_only_from_allowed_states() -> None:
    for (src, verb), dst in state.TRANSITIONS.items():
        assert dst in state.STATUSES
        if verb in state.ALLOWED:
            assert src in state.ALLOWED[verb], (src, verb)


@pytest.mark.parametrize("verb,status,message", [
    pytest.param("start", state.RUNNING, "cannot start an already running container", id="a"),
    pytest.param("start", state.STOPPED, "cannot start a container that has stopped", id="b"),
    pytest.param("kill", state.STOPPED, "container not running", id="c"),
    pytest.param("delete", state.RUNNING, "cannot delete container c1 that is not stopped: "
                 "running", id="d"),
    pytest.param("resume", state.RUNNING, "container not paused", id="e"),
    pytest.param("exec", state.STOPPED, "cannot exec in a stopped container", id="f"),
])
def test_runc_messages(verb: str, status: str, message: str) -> None:
    with pytest.raises(InvalidState, match=message):
        state.require(verb, status, "c1")


@pytest.mark.parametrize("cid,ok", [
    pytest.param("abc-1.2_x+y", True, id="runc-charset"),
    pytest.param("", False, id="empty"),
    pytest.param("..", False, id="dotdot"),
    pytest.param("a/b", False, id="slash"),
    pytest.param("é", False, id="non-ascii"),
])
def test_valid_id(cid: str, ok: bool) -> None:
    assert state.valid_id(cid) is ok


def test_rfc3339() -> None:
    ts = state.now_rfc3339()
    assert ts.endswith("Z") and len(ts) == len("2026-01-01T00:00:00.123456789Z")
