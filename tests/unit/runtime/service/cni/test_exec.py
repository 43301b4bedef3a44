"""The exec layer against fake plugin executables: the env and stdin it builds, how it finds
a plugin, and how every kind of failure is reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.service.cni import (
    IncompatibleVersion,
    Invocation,
    PluginError,
    PluginNotFound,
    build_env,
    find_plugin,
    probe_version,
    run_plugin,
)
from runtime.service.cni.errors import InvalidAttachment
from runtime.service.cni.exec import validate_args, validate_container_id, validate_ifname

from .conftest import FakePlugins

ADD = Invocation(command="ADD", container_id="c1", netns="/run/corral/netns/c1", ifname="eth0",
                 args=(("K8S_POD_NAME", "web"), ("IgnoreUnknown", "1")), path=("/a", "/b"))


@pytest.mark.parametrize("inv, expected", [
    pytest.param(ADD, {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1",
                       "CNI_NETNS": "/run/corral/netns/c1", "CNI_IFNAME": "eth0",
                       "CNI_ARGS": "K8S_POD_NAME=web;IgnoreUnknown=1", "CNI_PATH": "/a:/b"},
                 id="add"),
    pytest.param(Invocation(command="DEL", container_id="c1", ifname="eth0", path=("/a",)),
                 {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c1", "CNI_NETNS": "",
                  "CNI_IFNAME": "eth0", "CNI_ARGS": "", "CNI_PATH": "/a"}, id="del-no-netns"),
    pytest.param(Invocation(command="VERSION", path=("/a",)),
                 {"CNI_COMMAND": "VERSION", "CNI_PATH": "/a"}, id="version"),
])
def test_env(inv: Invocation, expected: dict[str, str]) -> None:
    env = build_env(inv, base={"PATH": "/usr/sbin:/usr/bin", "CNI_NETNS": "stale",
                               "CNI_STALE": "x"})
    assert {k: v for k, v in env.items() if k.startswith("CNI_")} == expected
    assert env["PATH"] == "/usr/sbin:/usr/bin"  # plugins run iptables from PATH


def test_plugin_gets_env_and_stdin(plugins: FakePlugins) -> None:
    plugins.add("bridge")
    inv = Invocation(command="ADD", container_id="c1", netns="/run/ns/c1", ifname="eth0",
                     args=(("A", "1"),), path=(str(plugins.bin),))
    out = run_plugin("bridge", inv=inv, stdin={"cniVersion": "1.0.0", "name": "n",
                                                "type": "bridge"}, network="n")
    assert out is not None and out["interfaces"] == [{"name": "bridge-eth0",
                                                      "sandbox": "/run/ns/c1"}]
    [call] = plugins.calls()
    assert call["env"] == {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1",
                           "CNI_NETNS": "/run/ns/c1", "CNI_IFNAME": "eth0", "CNI_ARGS": "A=1",
                           "CNI_PATH": str(plugins.bin)}
    assert call["stdin"] == {"cniVersion": "1.0.0", "name": "n", "type": "bridge"}
    assert call["path_var"]


def test_find_plugin_first_dir_wins_and_skips_non_executables(tmp_path: Path,
                                                              plugins: FakePlugins) -> None:
    first = tmp_path / "first"
    first.mkdir()
    (first / "bridge").write_text("not executable")
    plugins.add("bridge")
    assert find_plugin("bridge", [str(first), str(plugins.bin)]) == str(plugins.bin / "bridge")


def test_missing_plugin_names_the_dirs_searched(tmp_path: Path) -> None:
    with pytest.raises(PluginNotFound) as e:
        run_plugin("nosuch", inv=Invocation(command="ADD", container_id="c", ifname="eth0",
                                            path=(str(tmp_path / "x"), "/usr/lib/cni")),
                   stdin={})
    assert e.value.searched == [str(tmp_path / "x"), "/usr/lib/cni"]
    assert f"no executable named 'nosuch' in {tmp_path / 'x'}, /usr/lib/cni" in str(e.value)


@pytest.mark.parametrize("step, code, text", [
    pytest.param({"exit": 1, "stdout": {"cniVersion": "1.0.0", "code": 7,
                                        "msg": "failed to parse config",
                                        "details": "ipam.subnet missing"}},
                 7, "[code 7 invalid network config] failed to parse config "
                    "(details: ipam.subnet missing)", id="json-error"),
    pytest.param({"exit": 1, "stdout": {"code": 101, "msg": "no bridge"}},
                 101, "[code 101] no bridge", id="plugin-specific-code"),
    pytest.param({"exit": 2, "stdout_text": "", "stderr": "panic: boom"},
                 None, "exited 2: panic: boom", id="no-json-uses-stderr"),
    pytest.param({"exit": 0, "stdout_text": "{half"}, None, "printed invalid JSON",
                 id="bad-json-on-success"),
    pytest.param({"exit": 0, "stdout": [1]}, None, "printed list, not an object",
                 id="json-not-object"),
])
def test_errors_name_plugin_network_and_container(plugins: FakePlugins, step: dict[str, object],
                                                  code: int | None, text: str) -> None:
    plugins.add("bridge")
    plugins.script("bridge", "ADD", **step)
    inv = Invocation(command="ADD", container_id="pod-1", netns="/n", ifname="eth0",
                     path=(str(plugins.bin),))
    with pytest.raises(PluginError) as e:
        run_plugin("bridge", inv=inv, stdin={}, network="corral")
    assert e.value.code == code
    assert e.value.plugin == "bridge"
    assert str(e.value).startswith("network corral, container pod-1, plugin bridge: ADD failed: ")
    assert text in str(e.value)


def test_incompatible_version_error_has_its_own_class(plugins: FakePlugins) -> None:
    plugins.add("old")
    plugins.script("old", "ADD", exit=1, stdout={"code": 1, "msg": "unsupported 1.0.0"})
    with pytest.raises(IncompatibleVersion, match="code 1 incompatible CNI version"):
        run_plugin("old", inv=Invocation(command="ADD", container_id="c", ifname="eth0",
                                         path=(str(plugins.bin),)), stdin={})


def test_a_hung_plugin_times_out(plugins: FakePlugins) -> None:
    plugins.add("slow")
    plugins.script("slow", "DEL", sleep=5)
    with pytest.raises(PluginError, match=r"plugin slow: DEL failed: timed out after 0.5s"):
        run_plugin("slow", inv=Invocation(command="DEL", container_id="c", ifname="eth0",
                                          path=(str(plugins.bin),)), stdin={}, timeout=0.5)


def test_empty_output_is_none(plugins: FakePlugins) -> None:
    plugins.add("quiet")
    plugins.script("quiet", "CHECK", stdout_text="")
    assert run_plugin("quiet", inv=Invocation(command="CHECK", container_id="c", ifname="eth0",
                                              path=(str(plugins.bin),)), stdin={}) is None


def test_version_probe(plugins: FakePlugins) -> None:
    plugins.add("bridge", "ancient", "broken")
    plugins.script("ancient", "VERSION", stdout_text="")
    plugins.script("broken", "VERSION", stdout={"cniVersion": "1.0.0",
                                                "supportedVersions": "1.0.0"})
    path = [str(plugins.bin)]
    info = probe_version("bridge", path=path)
    assert info.supported_versions == ("0.4.0", "1.0.0", "1.1.0")
    assert probe_version("ancient", path=path).supported_versions == ("0.1.0",)
    with pytest.raises(PluginError, match="supportedVersions: must be a list"):
        probe_version("broken", path=path)
    [call, *_] = plugins.calls()
    assert call["env"] == {"CNI_COMMAND": "VERSION", "CNI_PATH": str(plugins.bin)}
    assert call["stdin"] == {"cniVersion": "1.0.0"}


@pytest.mark.parametrize("check, value", [
    pytest.param(validate_container_id, "", id="empty-id"),
    pytest.param(validate_container_id, "-abc", id="id-leading-dash"),
    pytest.param(validate_container_id, "a/b", id="id-slash"),
    pytest.param(validate_ifname, "", id="empty-ifname"),
    pytest.param(validate_ifname, "..", id="dotdot-ifname"),
    pytest.param(validate_ifname, "a" * 16, id="long-ifname"),
    pytest.param(validate_ifname, "eth:0", id="colon-ifname"),
    pytest.param(validate_ifname, "eth 0", id="space-ifname"),
])
def test_invalid_attachment_fields(check: object, value: str) -> None:
    with pytest.raises(InvalidAttachment, match=repr(value).replace(".", r"\.")):
        check(value)  # type: ignore[operator]


def test_invalid_cni_args() -> None:
    with pytest.raises(InvalidAttachment, match="may not hold"):
        validate_args([("K", "a;b")])
    with pytest.raises(InvalidAttachment, match="must be alphanumeric"):
        validate_args([("K-1", "a")])
    validate_args([("K8S_POD_NAMESPACE", "default")])
    validate_container_id("abc_1.2-3")
    validate_ifname("eth0")
