"""The daemon config file: parsing, errors naming file and field, flags over the file."""

from __future__ import annotations

import os

import pytest

from runtime.service.config import ConfigError, DaemonConfig, load, parse, with_flags

SRC = "/etc/corral/runtimed.toml"


def test_full_file(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "c.toml")
    with open(path, "w") as f:
        f.write('root = "/r"\nstate = "/s"\nsocket = "/s/x.sock"\nsandbox_image = "p:1"\n'
                'default_registry = "127.0.0.1:5000"\n[runtimes]\nmine = "/bin/true"\n'
                '[registries."127.0.0.1:5000"]\nusername = "u"\npassword = "p"\n'
                'plain_http = true\nmirrors = ["127.0.0.1:5001"]\n'
                '[cni]\nbin_dirs = ["/usr/lib/cni"]\nconf_dir = "/c"\n')
    cfg = load(path)
    assert (cfg.root, cfg.state, cfg.socket, cfg.sandbox_image) == ("/r", "/s", "/s/x.sock",
                                                                     "p:1")
    assert cfg.runtime_commands()["mine"] == ["/bin/true"]
    assert "corral-runc" in cfg.runtime_commands()
    assert cfg.credentials() == {"127.0.0.1:5000": ("u", "p")}
    assert cfg.mirrors("127.0.0.1:5000") == ("127.0.0.1:5001",)
    assert set(cfg.plain_http()) == {"127.0.0.1:5000", "127.0.0.1:5001"}
    assert (cfg.cni.bin_dirs, cfg.cni.conf_dir) == (("/usr/lib/cni",), "/c")


@pytest.mark.parametrize(("data", "field", "message"), [
    pytest.param({"root": "rel"}, "root", "must be an absolute path", id="relative-root"),
    pytest.param({"socket": 5}, "socket", "must be a string", id="socket-not-string"),
    pytest.param({"nope": 1}, "nope", "unknown field", id="unknown-top-level"),
    pytest.param({"runtimes": {"x": "/no/such"}}, "runtimes.x", "not an executable",
                 id="runtime-missing-path"),
    pytest.param({"runtimes": {"x": "no-such-binary-here"}}, "runtimes.x", "not found on PATH",
                 id="runtime-not-on-path"),
    pytest.param({"default_runtime": "kata"}, "default_runtime", "unknown runtime class",
                 id="unknown-default-runtime"),
    pytest.param({"registries": {"h": {"username": "u"}}}, "registries.h.password",
                 "go together", id="user-without-password"),
    pytest.param({"registries": {"h": {"plain_http": "yes"}}}, "registries.h.plain_http",
                 "true or false", id="plain-http-not-bool"),
    pytest.param({"registries": {"h": {"mirror": []}}}, "registries.h.mirror",
                 "unknown field", id="registry-unknown-field"),
    pytest.param({"cni": {"bin_dirs": "/x"}}, "cni.bin_dirs", "list of strings",
                 id="bin-dirs-not-list"),
    pytest.param({"cni": {"bin_dirs": ["x"]}}, "cni.bin_dirs[0]", "absolute path",
                 id="bin-dir-relative"),
    pytest.param({"socket": "/" + "s" * 120}, "socket", "longer than 107",
                 id="socket-too-long"),
])
def test_errors_name_file_and_field(data: dict[str, object], field: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(data, source=SRC)
    assert info.value.field == field
    assert str(info.value).startswith(f"{SRC}: {field}: ")
    assert message in str(info.value)


@pytest.mark.parametrize(("text", "field"), [
    pytest.param(None, "(file)", id="missing-file"),
    pytest.param("root = [", "(syntax)", id="bad-toml"),
])
def test_file_errors(tmp_path: object, text: str | None, field: str) -> None:
    path = os.path.join(str(tmp_path), "c.toml")
    if text is not None:
        with open(path, "w") as f:
            f.write(text)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(info.value).startswith(f"{path}: {field}: ")


def test_flags_override_the_file() -> None:
    cfg = parse({"root": "/file/root", "state": "/file/state"}, source=SRC)
    out = with_flags(cfg, root="/flag/root", state=None, socket="/flag/s.sock")
    assert (out.root, out.state, out.socket) == ("/flag/root", "/file/state", "/flag/s.sock")
    assert with_flags(DaemonConfig(), root="rel").root == os.path.abspath("rel")
