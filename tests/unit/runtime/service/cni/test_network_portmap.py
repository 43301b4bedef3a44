"""portmap runs only for pods that map host ports (ADD, CHECK-free DEL), and on a DEL whose
ADD is unknown (no cache entry) every plugin runs, so nothing a lost ADD made can stay."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from runtime.service.cni import Attachment, Network, parse_conflist

from .conftest import FakePlugins

PORTS = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]


def net(plugins: FakePlugins, tmp_path: Path) -> Network:
    plugins.add("bridge", "loopback", "portmap")
    conf = {"cniVersion": "1.0.0", "name": "pods",
            "plugins": [{"type": "bridge"}, {"type": "loopback"},
                        {"type": "portmap", "capabilities": {"portMappings": True}}]}
    return Network(parse_conflist(json.dumps(conf)), plugin_dirs=[str(plugins.bin)],
                   cache_dir=str(tmp_path / "cache"))


@pytest.mark.parametrize(("caps", "added", "deleted"), [
    pytest.param({}, ["bridge", "loopback"], ["loopback", "bridge"], id="no-host-ports"),
    pytest.param({"portMappings": []}, ["bridge", "loopback"], ["loopback", "bridge"],
                 id="empty-mappings"),
    pytest.param({"portMappings": PORTS}, ["bridge", "loopback", "portmap"],
                 ["portmap", "loopback", "bridge"], id="host-ports"),
])
def test_portmap_only_for_pods_with_host_ports(plugins: FakePlugins, tmp_path: Path,
                                               caps: dict[str, Any], added: list[str],
                                               deleted: list[str]) -> None:
    n = net(plugins, tmp_path)
    result = n.add(Attachment(container_id="pod1", netns="/proc/self/ns/net",
                              capability_args=caps))
    assert [c["plugin"] for c in plugins.calls()] == added
    assert result.primary_ip() is not None
    count = len(plugins.calls())
    n.delete(Attachment(container_id="pod1", netns="/proc/self/ns/net"))  # args from cache
    assert [c["plugin"] for c in plugins.calls()[count:]] == deleted


def test_del_without_a_cache_entry_runs_every_plugin(plugins: FakePlugins,
                                                     tmp_path: Path) -> None:
    n = net(plugins, tmp_path)
    n.add(Attachment(container_id="pod1", netns="/proc/self/ns/net", capability_args={}))
    cached = n.cached("pod1")
    assert cached is not None
    os.unlink(cached.path)  # a crash lost what the ADD was given
    count = len(plugins.calls())
    n.delete(Attachment(container_id="pod1", netns="/proc/self/ns/net"))
    assert [c["plugin"] for c in plugins.calls()[count:]] == ["portmap", "loopback", "bridge"]
