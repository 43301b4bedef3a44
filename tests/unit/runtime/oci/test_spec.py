"""config.json validation: every bad input names its field."""

from __future__ import annotations

import copy
import json
import os

import pytest

from runtime.oci import spec
from runtime.oci.errors import ConfigError, Unsupported
from tests.support.busybox import config as base_config


def good() -> dict[str, object]:
    return copy.deepcopy(base_config(["/bin/true"]))


def mutate(path: str, value: object) -> dict[str, object]:
    c = good()
    node: object = c
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node.setdefault(k, {})  # type: ignore[index,union-attr]
    if isinstance(node, list):
        node[int(keys[-1])] = value
    else:
        node[keys[-1]] = value  # type: ignore[index]
    return c


def test_default_config_is_valid() -> None:
    spec.validate(good())


@pytest.mark.parametrize("path,value,field,words", [
    pytest.param("ociVersion", 1, "ociVersion", "must be a string", id="version-type"),
    pytest.param("ociVersion", "2.0.0", "ociVersion", "unsupported version", id="version-major"),
    pytest.param("process.args", "sh", "process.args", "must be an array", id="args-type"),
    pytest.param("process.args", [], "process.args", "must name the program", id="args-empty"),
    pytest.param("process.cwd", "tmp", "process.cwd", "absolute", id="cwd-relative"),
    pytest.param("process.env", ["NOEQUALS"], "process.env[0]", "KEY=VALUE", id="env-format"),
    pytest.param("process.user.uid", -1, "process.user.uid", ">= 0", id="uid-negative"),
    pytest.param("process.user.uid", "0", "process.user.uid", "unsigned integer", id="uid-str"),
    pytest.param("process.terminal", "yes", "process.terminal", "boolean", id="terminal-type"),
    pytest.param("process.capabilities.bounding", ["CAP_FLY"],
                 "process.capabilities.bounding[0]", "unknown capability", id="cap-unknown"),
    pytest.param("process.rlimits", [{"type": "RLIMIT_NOPE", "soft": 1, "hard": 1}],
                 "process.rlimits[0].type", "unknown rlimit", id="rlimit-unknown"),
    pytest.param("process.rlimits", [{"type": "RLIMIT_NOFILE", "soft": 2, "hard": 1}],
                 "process.rlimits[0]", "above the hard", id="rlimit-soft-above-hard"),
    pytest.param("process.oomScoreAdj", 5000, "process.oomScoreAdj", "<= 1000", id="oom-range"),
    pytest.param("linux.namespces", [], "linux.namespces", "did you mean 'namespaces'",
                 id="typo-suggests"),
    pytest.param("linux.namespaces", [{"type": "bogus"}], "linux.namespaces[0].type",
                 "must be one of", id="ns-unknown"),
    pytest.param("linux.namespaces", [{"type": "mount"}, {"type": "mount"}],
                 "linux.namespaces[1].type", "duplicate", id="ns-duplicate"),
    pytest.param("linux.namespaces", [{"type": "mount"}, {"type": "user"}],
                 "linux.uidMappings", "needs uidMappings", id="userns-no-maps"),
    pytest.param("linux.namespaces", [{"type": "mount", "path": "rel"}],
                 "linux.namespaces[0].path", "absolute", id="ns-path-relative"),
    pytest.param("mounts.0.destination", "proc", "mounts[0].destination", "absolute",
                 id="mount-dest-relative"),
    pytest.param("mounts.0.options", "ro", "mounts[0].options", "must be an array",
                 id="mount-options-type"),
    pytest.param("linux.resources.memory.limit", "1g", "linux.resources.memory.limit",
                 "must be an integer", id="memory-type"),
    pytest.param("linux.devices", [{"type": "c", "path": "/etc/x", "major": 1, "minor": 3}],
                 "linux.devices[0].path", "below /dev", id="device-path"),
    pytest.param("linux.sysctl", {"../x": "1"}, "linux.sysctl['../x']", "sysctl name",
                 id="sysctl-name"),
    pytest.param("hooks.prestart", [{"path": "hook"}], "hooks.prestart[0].path", "absolute",
                 id="hook-relative"),
    pytest.param("hooks.prestart", [{"args": []}], "hooks.prestart[0].path", "required",
                 id="hook-no-path"),
    pytest.param("hostnme", "x", "hostnme", "did you mean 'hostname'", id="top-typo"),
])
def test_invalid_configs_name_the_field(path: str, value: object, field: str,
                                        words: str) -> None:
    with pytest.raises(ConfigError) as e:
        spec.validate(mutate(path, value))
    assert e.value.field == field
    assert words in str(e.value)
    assert str(e.value).startswith(f"config.json: {field}: ")


@pytest.mark.parametrize("path,value", [
    pytest.param("process.apparmorProfile", "docker-default", id="apparmor"),
    pytest.param("process.selinuxLabel", "system_u:r", id="selinux"),
    pytest.param("linux.intelRdt", {"closID": "x"}, id="intel-rdt"),
    pytest.param("linux.resources.memory.kernel", 1 << 20, id="kmem"),
    pytest.param("windows", {"layerFolders": []}, id="windows"),
])
def test_unsupported_fields_are_errors(path: str, value: object) -> None:
    with pytest.raises(Unsupported) as e:
        spec.validate(mutate(path, value))
    assert "not supported" in str(e.value)


def test_empty_unsupported_fields_are_fine() -> None:
    spec.validate(mutate("process.apparmorProfile", ""))


def test_load_missing_rootfs(tmp_path: object) -> None:
    d = str(tmp_path)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(good(), f)
    with pytest.raises(ConfigError, match=r"root.path: rootfs .* does not exist"):
        spec.load(d)


def test_load_rootfs_escaping_bundle(tmp_path: object) -> None:
    d = str(tmp_path)
    os.makedirs(os.path.join(d, "b"))
    c = good()
    c["root"] = {"path": "../../etc"}
    with open(os.path.join(d, "b", "config.json"), "w") as f:
        json.dump(c, f)
    with pytest.raises(ConfigError, match="leads outside the bundle"):
        spec.load(os.path.join(d, "b"))


@pytest.mark.parametrize("text,words", [
    pytest.param("{", "invalid JSON", id="truncated"),
    pytest.param('{"ociVersion": "1.0.2"} trailing', "extra data", id="trailing"),
    pytest.param("[]", "must be an object", id="not-object"),
])
def test_load_bad_json(tmp_path: object, text: str, words: str) -> None:
    d = str(tmp_path)
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write(text)
    with pytest.raises(ConfigError, match=words):
        spec.load(d)
