"""ADD/DEL/CHECK/GC over a list of fake plugins: order, prevResult chaining, the result
cache, idempotent DEL and the undo of a failed ADD."""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path
from typing import Any

import pytest

from runtime.service.cni import (
    Attachment,
    IncompatibleVersion,
    Network,
    NotAttached,
    PluginError,
    parse_conflist,
)

from .conftest import FakePlugins


def make(plugins: FakePlugins, tmp_path: Path, *types: str, **extra: Any) -> Network:
    plugins.add(*types)
    conf = {"cniVersion": extra.pop("cniVersion", "1.0.0"), "name": "pods",
            "plugins": [{"type": t, **({"capabilities": {"portMappings": True}}
                                       if t == "portmap" else {})} for t in types], **extra}
    return Network(parse_conflist(json.dumps(conf)), plugin_dirs=[str(plugins.bin)],
                   cache_dir=str(tmp_path / "cache"))


PORTS = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]
ATT = Attachment(container_id="pod1", netns="/proc/self/ns/net", ifname="eth0",
                 args=(("K8S_POD_NAME", "web"),), capability_args={"portMappings": PORTS})


def test_add_chains_prev_result_in_order_and_caches(plugins: FakePlugins,
                                                    tmp_path: Path) -> None:
    net = make(plugins, tmp_path, "bridge", "tuning", "portmap")
    result = net.add(ATT)
    assert plugins.sequence() == [("bridge", "ADD"), ("tuning", "ADD"), ("portmap", "ADD")]
    calls = plugins.calls()
    assert "prevResult" not in calls[0]["stdin"]
    assert [i["name"] for i in calls[2]["stdin"]["prevResult"]["interfaces"]] == [
        "bridge-eth0", "tuning-eth0"]
    assert "runtimeConfig" not in calls[0]["stdin"]
    assert calls[2]["stdin"]["runtimeConfig"] == {"portMappings": PORTS}
    assert all(c["env"]["CNI_ARGS"] == "K8S_POD_NAME=web" for c in calls)
    assert [i.name for i in result.interfaces] == ["bridge-eth0", "tuning-eth0", "portmap-eth0"]
    assert result.primary_ip() == ipaddress.ip_address("10.9.0.2")
    cached = net.cached("pod1", "eth0")
    assert cached is not None and cached.result == result
    assert cached.attachment == ATT
    assert os.path.basename(cached.path) == "pods-pod1-eth0"


def test_del_runs_in_reverse_with_the_cached_result_and_is_idempotent(
        plugins: FakePlugins, tmp_path: Path) -> None:
    net = make(plugins, tmp_path, "bridge", "portmap")
    added = net.add(ATT)
    n = len(plugins.calls())
    # the caller forgot the port mappings: DEL uses those the ADD was given
    net.delete(Attachment(container_id="pod1", netns=ATT.netns))
    first = plugins.calls()[n:]
    assert [(c["plugin"], c["env"]["CNI_COMMAND"]) for c in first] == [
        ("portmap", "DEL"), ("bridge", "DEL")]
    assert all(c["stdin"]["prevResult"] == added.raw for c in first)
    assert first[0]["stdin"]["runtimeConfig"] == {"portMappings": PORTS}
    assert net.cached("pod1") is None
    net.delete(Attachment(container_id="pod1", netns=ATT.netns))  # a second DEL: fine
    second = plugins.calls()[n + 2:]
    assert [c["plugin"] for c in second] == ["portmap", "bridge"]
    assert all("prevResult" not in c["stdin"] for c in second)


def test_del_of_a_gone_netns_passes_no_netns(plugins: FakePlugins, tmp_path: Path) -> None:
    net = make(plugins, tmp_path, "bridge")
    net.delete(Attachment(container_id="pod1", netns=str(tmp_path / "gone")))
    assert [c["env"]["CNI_NETNS"] for c in plugins.calls()] == [""]


def test_del_runs_every_plugin_and_raises_the_first_failure(plugins: FakePlugins,
                                                            tmp_path: Path) -> None:
    net = make(plugins, tmp_path, "bridge", "portmap")
    net.add(ATT)
    plugins.script("portmap", "DEL", exit=1, stdout={"code": 11, "msg": "busy"})
    with pytest.raises(PluginError, match="plugin portmap: DEL failed") as e:
        net.delete(ATT)
    assert e.value.try_again
    assert plugins.sequence()[-2:] == [("portmap", "DEL"), ("bridge", "DEL")]
    assert net.cached("pod1") is not None  # kept: the DEL must be retried


def test_failed_add_undoes_what_ran_and_caches_nothing(plugins: FakePlugins,
                                                       tmp_path: Path) -> None:
    net = make(plugins, tmp_path, "bridge", "portmap", "loopback")
    plugins.script("portmap", "ADD", exit=1, stdout={"code": 999, "msg": "iptables failed"})
    with pytest.raises(PluginError, match="network pods, container pod1, plugin portmap"):
        net.add(ATT)
    assert plugins.sequence() == [("bridge", "ADD"), ("portmap", "ADD"),
                                  ("loopback", "DEL"), ("portmap", "DEL"), ("bridge", "DEL")]
    assert plugins.calls()[-1]["stdin"]["prevResult"]["interfaces"][0]["name"] == "bridge-eth0"
    assert net.cached("pod1") is None


def test_add_with_an_invalid_result_is_undone(plugins: FakePlugins, tmp_path: Path) -> None:
    net = make(plugins, tmp_path, "bridge")
    plugins.script("bridge", "ADD", stdout={"cniVersion": "1.0.0", "ips": [{"address": "x"}]})
    with pytest.raises(Exception, match=r"plugin bridge: result\.ips\[0\]\.address"):
        net.add(ATT)
    assert plugins.sequence() == [("bridge", "ADD"), ("bridge", "DEL")]


def test_check_uses_the_cached_result(plugins: FakePlugins, tmp_path: Path) -> None:
    net = make(plugins, tmp_path, "bridge", "portmap")
    with pytest.raises(NotAttached, match="network pods, container pod1, interface eth0"):
        net.check(ATT)
    added = net.add(ATT)
    net.check(ATT)
    checks = [c for c in plugins.calls() if c["env"]["CNI_COMMAND"] == "CHECK"]
    assert [c["plugin"] for c in checks] == ["bridge", "portmap"]
    assert all(c["stdin"]["prevResult"] == added.raw for c in checks)
    plugins.script("bridge", "CHECK", exit=1, stdout={"code": 100, "msg": "veth gone"})
    with pytest.raises(PluginError, match=r"plugin bridge: CHECK failed: .*veth gone"):
        net.check(ATT)


def test_check_disabled_or_too_old(plugins: FakePlugins, tmp_path: Path) -> None:
    net = make(plugins, tmp_path, "bridge", disableCheck=True)
    net.add(ATT)
    net.check(ATT)
    assert ("bridge", "CHECK") not in plugins.sequence()
    old = make(plugins, tmp_path, "bridge", cniVersion="0.3.1")
    with pytest.raises(PluginError, match="has no CHECK"):
        old.check(ATT)


@pytest.mark.parametrize("version, gc_sent", [
    pytest.param("1.1.0", True, id="spec-1.1-sends-gc"),
    pytest.param("1.0.0", False, id="spec-1.0-only-dels"),
])
def test_gc_deletes_stale_attachments(plugins: FakePlugins, tmp_path: Path, version: str,
                                      gc_sent: bool) -> None:
    net = make(plugins, tmp_path, "bridge", cniVersion=version)
    for cid in ("keep", "stale"):
        net.add(Attachment(container_id=cid, netns="/proc/self/ns/net"))
    removed = net.gc([("keep", "eth0")])
    assert [a.container_id for a in removed] == ["stale"]
    assert [e.attachment.container_id for e in net.attachments()] == ["keep"]
    gcs = [c for c in plugins.calls() if c["env"]["CNI_COMMAND"] == "GC"]
    assert bool(gcs) == gc_sent
    if gc_sent:
        assert gcs[0]["stdin"]["cni.dev/valid-attachments"] == [
            {"containerID": "keep", "ifname": "eth0"}]


def test_versions_probe_every_plugin(plugins: FakePlugins, tmp_path: Path) -> None:
    net = make(plugins, tmp_path, "bridge", "old")
    plugins.script("old", "VERSION", stdout={"cniVersion": "0.4.0",
                                             "supportedVersions": ["0.3.1", "0.4.0"]})
    with pytest.raises(IncompatibleVersion, match=r"plugin old: VERSION failed: .*speaks "
                                                  r"0\.3\.1, 0\.4\.0, not the list's cniVersion"):
        net.versions()
    assert set(make(plugins, tmp_path, "bridge").versions()) == {"bridge"}


def test_invalid_attachment_runs_nothing(plugins: FakePlugins, tmp_path: Path) -> None:
    net = make(plugins, tmp_path, "bridge")
    with pytest.raises(ValueError, match="interface name"):
        net.add(Attachment(container_id="pod1", netns="/n", ifname="a/b"))
    assert plugins.calls() == []
