"""corral-node's flags: the agent's as they are, the runtime service's under --runtime-
(no processes: parse_args and daemon.configure only)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from nodehost.main import PREFIX, parse_args
from runtime.service import daemon
from runtime.service.config import ConfigError

AGENT = ["--config", "/etc/corral/node.conf", "--node-name", "n1"]


@pytest.mark.parametrize(("flags", "toml", "want"), [
    pytest.param([], "", {"root": "/var/lib/corral/runtime", "socket": "/run/corral/runtime.sock"},
                 id="defaults"),
    pytest.param(["--runtime-root", "/r", "--runtime-state", "/s", "--runtime-socket",
                  "/x/cri.sock"], "", {"root": "/r", "state": "/s", "socket": "/x/cri.sock"},
                 id="flags"),
    pytest.param([], 'socket = "/from/file.sock"\n', {"socket": "/from/file.sock"},
                 id="config-file"),
    pytest.param(["--runtime-socket", "/flag.sock"], 'socket = "/from/file.sock"\n',
                 {"socket": "/flag.sock"}, id="flag-over-file"),
])
def test_runtime_flags_take_the_runtime_prefix(tmp_path: Any, flags: list[str], toml: str,
                                               want: dict[str, str]) -> None:
    extra = []
    if toml:
        path = os.path.join(str(tmp_path), "runtimed.toml")
        with open(path, "w") as f:
            f.write(toml)
        extra = ["--runtime-config", path]
    args = parse_args([*AGENT, "--root", "/agent", *flags, *extra])
    cfg = daemon.configure(args, prefix=PREFIX)
    for key, value in want.items():
        assert getattr(cfg, key) == value, key
    # the agent's --config and --root keep their meaning
    assert (args.config, args.root, args.node_name) == ("/etc/corral/node.conf", "/agent", "n1")


def test_a_bad_runtime_config_names_the_file_and_the_field(tmp_path: Any) -> None:
    path = os.path.join(str(tmp_path), "runtimed.toml")
    with open(path, "w") as f:
        f.write("root = 5\n")
    with pytest.raises(ConfigError, match=r"runtimed\.toml: root:"):
        daemon.configure(parse_args([*AGENT, "--runtime-config", path]), prefix=PREFIX)


def test_the_agent_flags_are_still_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--runtime-root", "/r"])
    assert "--config" in capsys.readouterr().err
