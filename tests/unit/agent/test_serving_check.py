"""tests/support/sockets.serving: the one "is the socket served" check the node,
containerd and corral-runtimed harnesses wait on, against real unix sockets."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest

from tests.integration.runtime.service import test_runtimed
from tests.support import containerd, node, sockets


def _listening(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.listen(1)
    return s


def _bound_only(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)  # a socket file nobody accepts on: connect is refused
    return s


def _file(path: str) -> None:
    with open(path, "w") as f:
        f.write("not a socket")


@pytest.mark.parametrize(("make", "want"), [
    pytest.param(_listening, True, id="listening"),
    pytest.param(_bound_only, False, id="bound-not-listening"),
    pytest.param(_file, False, id="a-regular-file"),
    pytest.param(None, False, id="missing"),
])
def test_serving(tmp_path: Any, make: Any, want: bool) -> None:
    path = os.path.join(str(tmp_path), "s.sock")
    held = make(path) if make is not None else None
    try:
        assert sockets.serving(path) is want
    finally:
        if isinstance(held, socket.socket):
            held.close()


def test_the_harnesses_share_the_one_check(tmp_path: Any) -> None:
    path = os.path.join(str(tmp_path), "s.sock")
    assert node.serving is sockets.serving
    rtd = object.__new__(test_runtimed.Runtimed)
    ctd = object.__new__(containerd.Containerd)
    rtd.socket = ctd.socket = path
    assert not rtd._serving() and not ctd._serving()
    with _listening(path):
        assert rtd._serving() and ctd._serving()
