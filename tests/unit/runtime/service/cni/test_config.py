"""Conflist/conf parsing and validation, the conf dir order, and the stdin a plugin gets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runtime.service.cni import (
    ConfigError,
    DefaultNetwork,
    load_dir,
    load_file,
    parse_conf,
    parse_conflist,
    plugin_stdin,
)

GOOD = {"cniVersion": "1.0.0", "name": "pods", "plugins": [
    {"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local"}},
    {"type": "portmap", "capabilities": {"portMappings": True, "bandwidth": False}},
]}


def test_a_good_conflist_parses() -> None:
    net = parse_conflist(json.dumps(GOOD), source="10-pods.conflist")
    assert net.name == "pods"
    assert net.cni_version == "1.0.0"
    assert [p.type for p in net.plugins] == ["bridge", "portmap"]
    assert net.plugins[1].capabilities == frozenset({"portMappings"})
    assert net.plugins[0].raw["bridge"] == "cni0"
    assert not net.disable_check


def with_(**changes: Any) -> dict[str, Any]:
    conf: dict[str, Any] = json.loads(json.dumps(GOOD))
    for key, value in changes.items():
        if value is ...:
            del conf[key]
        else:
            conf[key] = value
    return conf


@pytest.mark.parametrize("conf, field, problem", [
    pytest.param(with_(name=...), "name", "required", id="no-name"),
    pytest.param(with_(name="bad name"), "name", "must match", id="bad-name"),
    pytest.param(with_(cniVersion=...), "cniVersion", "required", id="no-version"),
    pytest.param(with_(cniVersion="9.9.9"), "cniVersion", "unsupported", id="unknown-version"),
    pytest.param(with_(cniVersion=1), "cniVersion", "must be a string", id="version-int"),
    pytest.param(with_(plugins=...), "plugins", "required", id="no-plugins"),
    pytest.param(with_(plugins=[]), "plugins", "non-empty", id="empty-plugins"),
    pytest.param(with_(plugins=[{"type": "bridge"}, {"bridge": "x"}]), "plugins[1].type",
                 "required", id="plugin-without-type"),
    pytest.param(with_(plugins=[{"type": "../../bin/sh"}]), "plugins[0].type",
                 "plain executable", id="type-with-slash"),
    pytest.param(with_(plugins=["bridge"]), "plugins[0]", "must be an object",
                 id="plugin-not-object"),
    pytest.param(with_(plugins=[{"type": "a", "capabilities": {"x": "yes"}}]),
                 "plugins[0].capabilities", "booleans", id="bad-capabilities"),
    pytest.param(with_(disableCheck="maybe"), "disableCheck", "boolean", id="bad-disable-check"),
    pytest.param(with_(cniVersions="1.0.0"), "cniVersions", "list", id="bad-versions"),
])
def test_malformed_conflist_names_the_file_and_field(conf: dict[str, Any], field: str,
                                                      problem: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_conflist(json.dumps(conf), source="/etc/cni/net.d/10-pods.conflist")
    assert e.value.field == field
    assert str(e.value).startswith(f"/etc/cni/net.d/10-pods.conflist: {field}: ")
    assert problem in str(e.value)


@pytest.mark.parametrize("data", [
    pytest.param("{not json", id="not-json"),
    pytest.param("[1, 2]", id="not-object"),
])
def test_undecodable_file_is_named(data: str) -> None:
    with pytest.raises(ConfigError, match=r"^x\.conflist: "):
        parse_conflist(data, source="x.conflist")


@pytest.mark.parametrize("versions, expected", [
    pytest.param(["1.0.0", "1.1.0"], "1.1.0", id="highest-supported"),
    pytest.param(["1.0.0", "7.0.0"], "1.0.0", id="skips-unknown"),
])
def test_cni_versions_picks_the_highest_we_speak(versions: list[str], expected: str) -> None:
    assert parse_conflist(json.dumps(with_(cniVersions=versions))).cni_version == expected


def test_disable_flags_accept_strings_like_libcni() -> None:
    net = parse_conflist(json.dumps(with_(disableCheck="true", disableGC=True)))
    assert net.disable_check and net.disable_gc


def test_a_single_conf_becomes_a_list_of_one() -> None:
    net = parse_conf(json.dumps({"cniVersion": "0.4.0", "name": "lo", "type": "loopback"}))
    assert [p.type for p in net.plugins] == ["loopback"]
    assert net.to_json()["plugins"] == [{"cniVersion": "0.4.0", "name": "lo",
                                         "type": "loopback"}]
    with pytest.raises(ConfigError, match=r"^a.conf: \.type: required"):
        parse_conf(json.dumps({"cniVersion": "0.4.0", "name": "lo"}), source="a.conf")


def test_conf_dir_lowest_name_first_and_only_cni_files(tmp_path: Path) -> None:
    (tmp_path / "20-b.conflist").write_text(json.dumps(with_(name="b")))
    (tmp_path / "10-a.conf").write_text(json.dumps(
        {"cniVersion": "1.0.0", "name": "a", "type": "loopback"}))
    (tmp_path / "15-c.json").write_text(json.dumps(with_(name="c")))
    (tmp_path / "05-ignored.txt").write_text("not a network")
    (tmp_path / "00-dir.conflist").mkdir()
    assert [n.name for n in load_dir(str(tmp_path))] == ["a", "c", "b"]
    first = DefaultNetwork(str(tmp_path)).get()
    assert first is not None and first.name == "a"
    assert first.source == str(tmp_path / "10-a.conf")


def test_empty_or_missing_conf_dir(tmp_path: Path) -> None:
    assert DefaultNetwork(str(tmp_path)).get() is None
    assert DefaultNetwork(str(tmp_path / "missing")).get() is None
    assert load_dir(str(tmp_path / "missing")) == []


def write_net(path: Path, name: str) -> None:
    path.write_text(json.dumps(with_(name=name)))


def rename_over(tmp: Path) -> None:
    write_net(tmp / "10-a.conflist.new", "a2")  # replaced by rename, as writers do
    (tmp / "10-a.conflist.new").rename(tmp / "10-a.conflist")


def rewrite_in_place(tmp: Path) -> None:
    write_net(tmp / "10-a.conflist", "a-longer")  # same inode, another size


def new_first_file(tmp: Path) -> None:
    write_net(tmp / "05-c.conflist", "c")


def later_file(tmp: Path) -> None:
    write_net(tmp / "20-z.conflist", "z")  # not the first: the first one is kept


def read_it(tmp: Path) -> None:
    assert b'"a"' in (tmp / "10-a.conflist").read_bytes()  # the access time only


@pytest.mark.parametrize("change, name, parsed_again", [
    pytest.param(rename_over, "a2", True, id="replaced-by-rename"),
    pytest.param(rewrite_in_place, "a-longer", True, id="rewritten"),
    pytest.param(new_first_file, "c", True, id="new-first-file"),
    pytest.param(later_file, "a", False, id="a-later-file"),
    pytest.param(read_it, "a", False, id="read-only"),
])
def test_default_network_is_parsed_again_only_when_its_file_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: Any, name: str,
        parsed_again: bool) -> None:
    from runtime.service.cni import config as cni_config
    loads: list[str] = []
    real = cni_config.load_file
    monkeypatch.setattr(cni_config, "load_file", lambda p: loads.append(p) or real(p))
    write_net(tmp_path / "10-a.conflist", "a")
    default = DefaultNetwork(str(tmp_path))
    first = default.get()
    assert first is not None and first.name == "a"
    assert default.get() is first and len(loads) == 1  # kept while unchanged
    change(tmp_path)
    now = default.get()
    assert now is not None and now.name == name
    assert (now is not first, len(loads)) == (parsed_again, 1 + parsed_again)
    assert default.get() is now  # and kept again


def test_default_network_follows_the_dir_emptying(tmp_path: Path) -> None:
    write_net(tmp_path / "10-a.conflist", "a")
    default = DefaultNetwork(str(tmp_path))
    assert default.get() is not None
    (tmp_path / "10-a.conflist").unlink()
    assert default.get() is None


def test_unreadable_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.conflist: cannot read"):
        load_file(str(tmp_path / "missing.conflist"))


def test_plugin_stdin_carries_name_version_runtime_config_and_prev_result() -> None:
    net = parse_conflist(json.dumps(GOOD))
    caps = {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
            "bandwidth": {"ingressRate": 1}}
    prev = {"cniVersion": "1.0.0", "ips": []}
    bridge = plugin_stdin(net, net.plugins[0], capability_args=caps)
    assert bridge == {"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local"},
                      "name": "pods", "cniVersion": "1.0.0"}
    portmap = plugin_stdin(net, net.plugins[1], prev_result=prev, capability_args=caps)
    assert portmap["runtimeConfig"] == {"portMappings": caps["portMappings"]}  # declared only
    assert portmap["prevResult"] == prev
    assert portmap["name"] == "pods"
