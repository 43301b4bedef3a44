"""bundle.build_spec: image config x container config -> config.json fields."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runtime.service import bundle as B


@pytest.fixture
def rootfs(tmp_path: Path) -> str:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n"
                                         "app:x:1000:1001::/home/app:/bin/sh\n")
    (tmp_path / "etc/group").write_text("root:x:0:\napp:x:1001:\nwheel:x:10:app\n"
                                        "staff:x:50:\n")
    return str(tmp_path)


def build(rootfs: str, image: dict[str, Any] | None = None, **cfg: Any) -> dict[str, Any]:
    return B.build_spec(config=B.ContainerConfig(name="web", **cfg), image=image or {},
                        rootfs=rootfs)


IMG = {"Entrypoint": ["/ep"], "Cmd": ["c1", "c2"]}


@pytest.mark.parametrize("image,cfg,args", [
    pytest.param(IMG, {}, ["/ep", "c1", "c2"], id="image-entrypoint-and-cmd"),
    pytest.param(IMG, {"args": ("a",)}, ["/ep", "a"], id="args-replace-cmd"),
    pytest.param(IMG, {"command": ("/x",)}, ["/x"], id="command-replaces-both"),
    pytest.param(IMG, {"command": ("/x",), "args": ("a",)}, ["/x", "a"], id="command-and-args"),
    pytest.param({"Cmd": ["/c"]}, {}, ["/c"], id="cmd-only"),
    pytest.param({}, {"args": ("/a", "b")}, ["/a", "b"], id="args-only"),
])
def test_process_args(rootfs: str, image: dict[str, Any], cfg: dict[str, Any],
                      args: list[str]) -> None:
    assert build(rootfs, image, **cfg)["process"]["args"] == args


@pytest.mark.parametrize("image_env,env,expected", [
    pytest.param([], (), [B.DEFAULT_PATH], id="default-path"),
    pytest.param(["A=1", "PATH=/p"], (), ["PATH=/p", "A=1"], id="image-overrides-path"),
    pytest.param(["A=1", "B=2"], (("A", "9"), ("C", "3")), [B.DEFAULT_PATH, "A=9", "B=2", "C=3"],
                 id="container-wins"),
])
def test_env_merge(rootfs: str, image_env: list[str], env: tuple[tuple[str, str], ...],
                   expected: list[str]) -> None:
    spec = build(rootfs, {"Cmd": ["/c"], "Env": image_env}, env=env)
    assert spec["process"]["env"] == expected


@pytest.mark.parametrize("image_user,sec,user", [
    pytest.param("", {}, {"uid": 0, "gid": 0}, id="default-root"),
    pytest.param("1000", {}, {"uid": 1000, "gid": 1001, "additionalGids": [10]}, id="uid"),
    pytest.param("1000:50", {}, {"uid": 1000, "gid": 50, "additionalGids": [10]},
                 id="uid-gid"),
    pytest.param("app", {}, {"uid": 1000, "gid": 1001, "additionalGids": [10]}, id="name"),
    pytest.param("app:staff", {}, {"uid": 1000, "gid": 50, "additionalGids": [10]},
                 id="name-group"),
    pytest.param("4242", {}, {"uid": 4242, "gid": 0}, id="uid-not-in-passwd"),
    pytest.param("app", {"run_as_user": 7, "run_as_group": 8, "supplemental_groups": (9,)},
                 {"uid": 7, "gid": 8, "additionalGids": [9]}, id="security-context-wins"),
    pytest.param("", {"run_as_username": "app"},
                 {"uid": 1000, "gid": 1001, "additionalGids": [10]}, id="run-as-username"),
])
def test_user(rootfs: str, image_user: str, sec: dict[str, Any], user: dict[str, Any]) -> None:
    spec = build(rootfs, {"Cmd": ["/c"], "User": image_user},
                 security=B.SecurityContext(**sec))
    assert spec["process"]["user"] == user


def test_workdir_hostname_cgroups_rootfs(rootfs: str) -> None:
    spec = build(rootfs, {"Cmd": ["/c"], "WorkingDir": "/img"}, hostname="h",
                 cgroups_path="/k/web", security=B.SecurityContext(readonly_rootfs=True))
    assert spec["process"]["cwd"] == "/img"
    assert spec["hostname"] == "h"
    assert spec["linux"]["cgroupsPath"] == "/k/web"
    assert spec["root"] == {"path": rootfs, "readonly": True}
    assert build(rootfs, {"Cmd": ["/c"], "WorkingDir": "/img"},
                 working_dir="/w")["process"]["cwd"] == "/w"


def test_mounts(rootfs: str) -> None:
    spec = build(rootfs, {"Cmd": ["/c"]}, mounts=(
        B.MountSpec("/data", "/srv/data", readonly=True),
        B.MountSpec("/rw", "/srv/rw"),
        B.MountSpec("/dev/shm", kind="tmpfs", size_bytes=1 << 20),
    ))
    by = {m["destination"]: m for m in spec["mounts"]}
    assert by["/data"] == {"destination": "/data", "type": "bind", "source": "/srv/data",
                           "options": ["rbind", "rprivate", "ro"]}
    assert "rw" in by["/rw"]["options"]
    assert by["/dev/shm"]["type"] == "tmpfs" and "size=1048576" in by["/dev/shm"]["options"]
    assert [m["destination"] for m in spec["mounts"]].count("/dev/shm") == 1  # replaced
    assert "/proc" in by and by["/sys"]["options"][-1] == "ro"


def test_resources(rootfs: str) -> None:
    r = B.Resources(cpu_shares=512, cpu_quota=50_000, memory_limit_bytes=1 << 27, pids_limit=9)
    res = build(rootfs, {"Cmd": ["/c"]}, resources=r)["linux"]["resources"]
    assert res["cpu"] == {"shares": 512, "quota": 50_000, "period": 100_000}
    assert res["memory"] == {"limit": 1 << 27}
    assert res["pids"] == {"limit": 9}
    assert res["devices"] == [{"allow": False, "access": "rwm"}]


@pytest.mark.parametrize("sec,check", [
    pytest.param({}, lambda s: set(s["process"]["capabilities"]["bounding"])
                 == set(B.DEFAULT_CAPS) and "seccomp" not in s["linux"], id="defaults"),
    pytest.param({"add_capabilities": ("NET_ADMIN",), "drop_capabilities": ("CAP_KILL",)},
                 lambda s: "CAP_NET_ADMIN" in s["process"]["capabilities"]["effective"]
                 and "CAP_KILL" not in s["process"]["capabilities"]["effective"], id="add-drop"),
    pytest.param({"drop_capabilities": ("ALL",), "add_capabilities": ("CHOWN",)},
                 lambda s: s["process"]["capabilities"]["permitted"] == ["CAP_CHOWN"],
                 id="drop-all-add-one"),
    pytest.param({"privileged": True},
                 lambda s: "CAP_SYS_ADMIN" in s["process"]["capabilities"]["bounding"]
                 and "maskedPaths" not in s["linux"]
                 and s["linux"]["resources"]["devices"][0]["allow"], id="privileged"),
    pytest.param({"seccomp": "runtime/default"},
                 lambda s: s["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO",
                 id="seccomp-default"),
    pytest.param({"no_new_privs": True}, lambda s: s["process"]["noNewPrivileges"] is True,
                 id="no-new-privs"),
])
def test_security(rootfs: str, sec: dict[str, Any], check: Any) -> None:
    assert check(build(rootfs, {"Cmd": ["/c"]}, security=B.SecurityContext(**sec)))


def test_join_sandbox_namespaces(rootfs: str) -> None:
    spec = build(rootfs, {"Cmd": ["/c"]}, namespaces=B.sandbox_namespaces(42))
    assert spec["linux"]["namespaces"] == [
        {"type": "pid"}, {"type": "network", "path": "/proc/42/ns/net"},
        {"type": "ipc", "path": "/proc/42/ns/ipc"}, {"type": "uts", "path": "/proc/42/ns/uts"},
        {"type": "mount"}]


@pytest.mark.parametrize("image,cfg,message", [
    pytest.param({}, {}, "Container web: command: no command given", id="no-command"),
    pytest.param(IMG, {"env": (("A=B", "1"),)}, "Container web: env\\[0\\].key", id="bad-env"),
    pytest.param({"Cmd": ["/c"], "Env": ["NOEQ"]}, {}, "Container web: image Env\\[0\\]",
                 id="bad-image-env"),
    pytest.param({"Cmd": ["/c"], "User": "ghost"}, {}, "Container web: image User: no user",
                 id="unknown-user"),
    pytest.param({"Cmd": ["/c"], "User": "app:ghosts"}, {}, "image User: no group",
                 id="unknown-group"),
    pytest.param(IMG, {"working_dir": "rel"}, "Container web: working_dir: must be absolute",
                 id="relative-workdir"),
    pytest.param(IMG, {"mounts": (B.MountSpec("data", "/x"),)},
                 "Container web: mounts\\[0\\].container_path", id="relative-mount"),
    pytest.param(IMG, {"mounts": (B.MountSpec("/d", "x"),)}, "mounts\\[0\\].host_path",
                 id="relative-host-path"),
    pytest.param(IMG, {"mounts": (B.MountSpec("/d", "/x", kind="nfs"),)}, "mounts\\[0\\].kind",
                 id="bad-mount-kind"),
    pytest.param(IMG, {"resources": B.Resources(memory_limit_bytes=-1)},
                 "Container web: resources.memory_limit_bytes: must be >= 0, got -1",
                 id="negative-memory"),
    pytest.param(IMG, {"resources": B.Resources(cpu_period=10)}, "resources.cpu_period",
                 id="bad-period"),
    pytest.param(IMG, {"security": B.SecurityContext(add_capabilities=("NOPE",))},
                 "security.add_capabilities\\[0\\]: unknown capability", id="bad-cap"),
    pytest.param(IMG, {"security": B.SecurityContext(seccomp="localhost/x")},
                 "security.seccomp", id="bad-seccomp"),
    pytest.param(IMG, {"namespaces": (("cgroupz", "/proc/1/ns/x"),)}, "namespaces\\[0\\]",
                 id="bad-namespace"),
    pytest.param(IMG, {"hostname": "h", "namespaces": B.sandbox_namespaces(1)},
                 "Container web: hostname: cannot be set", id="hostname-with-joined-uts"),
])
def test_validation_names_container_and_field(rootfs: str, image: dict[str, Any],
                                              cfg: dict[str, Any], message: str) -> None:
    with pytest.raises(B.BundleError, match=message.replace("must be absolute",
                                                            "must be an absolute")):
        build(rootfs, image, **cfg)


def test_write_bundle(tmp_path: Path, rootfs: str) -> None:
    import json

    spec = build(rootfs, IMG)
    d = B.write_bundle(str(tmp_path / "b"), spec)
    with open(f"{d}/config.json") as f:
        assert json.load(f) == spec
