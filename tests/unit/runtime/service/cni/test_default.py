"""The node's default bridge conflist: what it holds, that our own parser accepts it, and
bad input named."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runtime.service.cni import ConfigError, bridge_conflist, load_file, write_default


def test_default_conflist() -> None:
    conf = bridge_conflist(subnets=["10.88.0.0/16"], data_dir="/tmp/ipam")
    assert [p["type"] for p in conf["plugins"]] == ["bridge", "portmap"]
    bridge = conf["plugins"][0]
    assert bridge["bridge"] == "corral0" and bridge["isGateway"] and bridge["ipMasq"]
    assert bridge["ipam"] == {"type": "host-local", "ranges": [[{"subnet": "10.88.0.0/16"}]],
                              "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "/tmp/ipam"}
    assert conf["plugins"][1]["capabilities"] == {"portMappings": True}


def test_write_default_is_loadable_and_not_overwritten(tmp_path: Path) -> None:
    path = write_default(str(tmp_path / "net.d"), subnets=["10.88.0.0/24", "fd00:88::/64"],
                         bridge="br-x", port_map=False)
    net = load_file(path)
    assert net.name == "corral" and [p.type for p in net.plugins] == ["bridge"]
    assert net.plugins[0].raw["ipam"]["routes"] == [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"
    write_default(str(tmp_path / "net.d"), subnets=["10.99.0.0/24"])
    assert json.loads(Path(path).read_text())["plugins"][0]["bridge"] == "br-x"
    write_default(str(tmp_path / "net.d"), subnets=["10.99.0.0/24"], overwrite=True)
    assert json.loads(Path(path).read_text())["plugins"][0]["bridge"] == "corral0"
    assert sorted(os.listdir(tmp_path / "net.d")) == ["10-corral.conflist"]


@pytest.mark.parametrize("subnets, bridge, field", [
    pytest.param([], "corral0", "subnets", id="no-subnet"),
    pytest.param(["10.0.0.0/33"], "corral0", "subnets[0]", id="bad-prefix"),
    pytest.param(["10.0.0.1/24"], "corral0", "subnets[0]", id="host-bits-set"),
    pytest.param(["10.0.0.0/31"], "corral0", "subnets[0]", id="too-small"),
    pytest.param(["10.0.0.0/24"], "a-bridge-name-too-long", "bridge", id="long-bridge"),
])
def test_bad_options_are_named(subnets: list[str], bridge: str, field: str) -> None:
    with pytest.raises(ConfigError) as e:
        bridge_conflist(subnets=subnets, bridge=bridge)
    assert e.value.field == field
    assert str(e.value).startswith(f"network corral: {field}: ")
