"""agent.main.setup_logging: the one logging set-up of corral-agent and corral-node
(nodehost/main.py calls it too): the level from --log-level in any case, one formatted
line a record on stderr, grpc's logger only from WARNING."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from agent import main as M
from nodehost import main as NM


@pytest.fixture
def bare_root() -> Iterator[logging.Logger]:
    """The root logger, put back as it was afterwards; the test strips its handlers
    (basicConfig only configures a bare root, and pytest adds its own for the call)."""
    root, grpc = logging.getLogger(), logging.getLogger("grpc")
    saved = (root.handlers[:], root.level, grpc.level)
    try:
        yield root
    finally:
        for h in root.handlers:
            h.close()
        root.handlers, root.level = saved[0], saved[1]
        grpc.setLevel(saved[2])


@pytest.mark.parametrize(("level", "want"), [
    pytest.param("debug", logging.DEBUG, id="lower-case"),
    pytest.param("WARNING", logging.WARNING, id="upper-case"),
])
def test_setup_logging(bare_root: logging.Logger, level: str, want: int) -> None:
    bare_root.handlers = []
    M.setup_logging(level)
    assert bare_root.level == want
    assert logging.getLogger("grpc").level == logging.WARNING
    [handler] = bare_root.handlers
    assert isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr
    record = logging.LogRecord("corral.agent.worker", logging.WARNING, __file__, 1,
                               "pod %s: sync failed", ("default/web",), None)
    line = handler.format(record)
    assert line.endswith(" WARNING corral.agent.worker: pod default/web: sync failed")


def test_corral_node_sets_up_logging_the_agents_way(
        bare_root: logging.Logger, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(M, "setup_logging", calls.append)
    config = os.path.join(str(tmp_path), "runtimed.toml")
    with open(config, "w") as f:
        f.write("cgroup_parent = 5\n")  # a config error: main returns before serving
    rc = NM.main(["--config", config, "--node-name", "n1", "--log-level", "debug",
                  "--root", str(tmp_path), "--runtime-config", config,
                  "--runtime-socket", os.path.join(str(tmp_path), "cri.sock")])
    assert rc == 2
    assert calls == ["debug"]
