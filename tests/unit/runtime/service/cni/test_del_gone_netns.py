"""DEL when the sandbox's namespace is gone: CNI_NETNS is empty (the spec's "torn down"), so
plugins that cannot enter a namespace still run and IPAM still releases the address."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from runtime.service.cni import Attachment, Network, netns, parse_conflist

from .conftest import FakePlugins


def _missing(tmp: Path) -> str:
    return str(tmp / "gone")


def _plain_file(tmp: Path) -> str:
    """What is left when the bind mount went but the file did not (unknown FS magic)."""
    p = tmp / "unmounted"
    p.write_bytes(b"")
    return str(p)


def _live(tmp: Path) -> str:
    return "/proc/self/ns/net"


@pytest.mark.parametrize(("make_path", "passed"), [
    pytest.param(_missing, False, id="file-removed"),
    pytest.param(_plain_file, False, id="file-left-unmounted"),
    pytest.param(_live, True, id="live-namespace-is-passed"),
])
def test_del_passes_the_netns_only_while_it_is_one(
        plugins: FakePlugins, tmp_path: Path, make_path: Callable[[Path], str],
        passed: bool) -> None:
    plugins.add("loopback", "bridge")
    conf = {"cniVersion": "1.0.0", "name": "pods",
            "plugins": [{"type": "bridge"}, {"type": "loopback"}]}
    net = Network(parse_conflist(json.dumps(conf)), plugin_dirs=[str(plugins.bin)],
                  cache_dir=str(tmp_path / "cache"))
    path = make_path(tmp_path)
    net.add(Attachment(container_id="pod1", netns="/proc/self/ns/net"))
    net.delete(Attachment(container_id="pod1", netns=path))
    dels = [c for c in plugins.calls() if c["env"]["CNI_COMMAND"] == "DEL"]
    assert [c["plugin"] for c in dels] == ["loopback", "bridge"]  # every plugin still runs
    assert [c["env"]["CNI_NETNS"] for c in dels] == [path if passed else ""] * 2
    assert net.cached("pod1") is None


@pytest.mark.parametrize(("make_path", "want"), [
    pytest.param(_missing, False, id="missing"),
    pytest.param(_plain_file, False, id="plain-file"),
    pytest.param(_live, True, id="proc-ns-link"),
])
def test_is_netns(tmp_path: Path, make_path: Callable[[Path], str], want: bool) -> None:
    assert netns.is_netns(make_path(tmp_path)) is want
