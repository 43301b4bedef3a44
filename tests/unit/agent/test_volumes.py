"""agent/volumes.py without mounts: item projection, modes, downward API files, the atomic
writer, disk volumes, refresh, subPath safety."""

from __future__ import annotations

import asyncio
import os
import stat
from typing import Any

import pytest

from agent import volumes as v
from tests.unit.agent.test_env import FakeClient, b64

POD: dict[str, Any] = {
    "metadata": {"name": "web", "namespace": "shop", "uid": "uid-1",
                 "labels": {"b": "2", "a": "1"}, "annotations": {"k": "v"}},
    "spec": {"containers": [{"name": "app", "image": "x",
                             "resources": {"limits": {"memory": "64Mi", "cpu": "2"}}}]},
}
DATA = {"a.conf": b"A", "b.conf": b"B", "c": b"C"}


def read_text(path: str) -> str:
    with open(path) as f:
        return f.read()


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize(("source", "default", "want"), [
    pytest.param({}, 0o644, {"a.conf": (b"A", 0o644), "b.conf": (b"B", 0o644),
                             "c": (b"C", 0o644)}, id="all-keys-default-mode"),
    pytest.param({"defaultMode": 0o600}, 0o400, {k: (d, 0o600) for k, d in DATA.items()},
                 id="default-mode"),
    pytest.param({}, 0o400, {k: (d, 0o400) for k, d in DATA.items()}, id="secret-default"),
    pytest.param({"items": [{"key": "a.conf", "path": "etc/app.conf"},
                            {"key": "c", "path": "c.txt", "mode": 0o755}]}, 0o644,
                 {"etc/app.conf": (b"A", 0o644), "c.txt": (b"C", 0o755)}, id="items-mode"),
    pytest.param({"items": [{"key": "zz", "path": "z"}], "optional": True}, 0o644, {},
                 id="optional-missing-key"),
])
def test_projection(source: dict[str, Any], default: int,
                    want: dict[str, tuple[bytes, int]]) -> None:
    assert v.project(DATA, source, default_mode=default, where="w", what="configMap") == want


def test_a_missing_optional_object_projects_nothing() -> None:
    assert v.project(None, {"optional": True}, default_mode=0o644, where="w", what="x") == {}


@pytest.mark.parametrize(("source", "message"), [
    pytest.param({"items": [{"key": "zz", "path": "z"}]},
                 "W.items[0].key: configMap has no key 'zz'", id="missing-key"),
    pytest.param({"items": [{"key": "c", "path": "../c"}]},
                 "W.items[0].path: must not contain '..'", id="dotdot"),
    pytest.param({"items": [{"key": "c", "path": "/etc/c"}]},
                 "W.items[0].path: must be a relative path", id="absolute"),
    pytest.param({"items": [{"key": "c", "path": "..data"}]},
                 "W.items[0].path: must not start with '..'", id="hidden"),
])
def test_projection_errors_name_the_field(source: dict[str, Any], message: str) -> None:
    with pytest.raises(v.VolumeError) as err:
        v.project(DATA, source, default_mode=0o644, where="W", what="configMap")
    assert str(err.value).startswith(message)


@pytest.mark.parametrize(("item", "want"), [
    pytest.param({"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}, b"web",
                 id="name"),
    pytest.param({"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}, b"shop",
                 id="namespace"),
    pytest.param({"path": "uid", "fieldRef": {"fieldPath": "metadata.uid"}}, b"uid-1",
                 id="uid"),
    pytest.param({"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                 b'a="1"\nb="2"', id="labels-sorted-quoted"),
    pytest.param({"path": "ann", "fieldRef": {"fieldPath": "metadata.annotations"}},
                 b'k="v"', id="annotations"),
    pytest.param({"path": "mem", "resourceFieldRef": {
        "containerName": "app", "resource": "limits.memory", "divisor": "1Mi"}}, b"64",
        id="memory-limit"),
    pytest.param({"path": "cpu", "resourceFieldRef": {
        "containerName": "app", "resource": "limits.cpu", "divisor": "1m"}}, b"2000",
        id="cpu-millis"),
])
def test_downward_api_rendering(item: dict[str, Any], want: bytes) -> None:
    got = v.render_downward(POD, {"items": [item]}, where="w")
    assert got == {item["path"]: (want, 0o644)}


def test_downward_api_errors_name_the_item() -> None:
    with pytest.raises(v.VolumeError, match=r"^W.items\[0\].resourceFieldRef: containerName"):
        v.render_downward(POD, {"items": [{"path": "x", "resourceFieldRef": {
            "resource": "limits.cpu"}}]}, where="W")
    with pytest.raises(v.VolumeError, match=r"^W.items\[0\].fieldRef: unsupported"):
        v.render_downward(POD, {"items": [{"path": "x", "fieldRef": {
            "fieldPath": "status.phase"}}]}, where="W")


def test_atomic_writer_swaps_data_and_keeps_user_paths(tmp_path: Any) -> None:
    target = str(tmp_path)
    assert v.write_atomic(target, {"a": (b"1", 0o644), "dir/b": (b"2", 0o400)})
    first = os.readlink(os.path.join(target, "..data"))
    assert first.startswith("..") and first != "..data"
    assert os.readlink(os.path.join(target, "a")) == "..data/a"
    assert read_bytes(os.path.join(target, "dir", "b")) == b"2"
    assert mode(os.path.join(target, "dir", "b")) == 0o400
    assert not v.write_atomic(target, {"a": (b"1", 0o644), "dir/b": (b"2", 0o400)})
    assert os.readlink(os.path.join(target, "..data")) == first  # nothing changed
    assert v.write_atomic(target, {"a": (b"3", 0o644), "c": (b"4", 0o644)})
    second = os.readlink(os.path.join(target, "..data"))
    assert second != first
    # the replaced directory stays until the next write (a reader may have resolved it)
    assert sorted(os.listdir(target)) == sorted(["..data", first, second, "a", "c"])
    assert read_bytes(os.path.join(target, "a")) == b"3"
    assert v.write_atomic(target, {"a": (b"3", 0o600), "c": (b"4", 0o644)})  # mode only
    third = os.readlink(os.path.join(target, "..data"))
    assert sorted(os.listdir(target)) == sorted(["..data", second, third, "a", "c"])


def _prepare(pod: dict[str, Any], client: FakeClient, pod_dir: str) -> dict[str, v.Volume]:
    return asyncio.run(v.prepare(pod, pod_dir=pod_dir, client=client))


def _pod(*vols: dict[str, Any]) -> dict[str, Any]:
    return {**POD, "spec": {**POD["spec"], "volumes": list(vols)}}


OBJECTS = {("configmaps", "shop", "app"): {"data": {"app.conf": "x=1"},
                                           "binaryData": {"logo": b64("PNG")}},
           ("secrets", "shop", "db"): {"data": {"pw": b64("s3cret")}}}


def test_disk_volumes_refresh_and_teardown(tmp_path: Any) -> None:
    objects = dict(OBJECTS)
    client = FakeClient(objects)
    pod = _pod({"name": "scratch", "emptyDir": {}},
               {"name": "config", "configMap": {"name": "app"}},
               {"name": "info", "downwardAPI": {"items": [
                   {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}})
    pods = str(tmp_path / "pods")
    vols = _prepare(pod, client, pods)
    base = os.path.join(pods, "uid-1", "volumes")
    assert vols["scratch"] == v.Volume("scratch", "emptyDir",
                                       os.path.join(base, "emptyDir", "scratch"), False)
    assert mode(vols["scratch"].host_path) == 0o777
    assert vols["config"].read_only and vols["info"].read_only
    conf = os.path.join(vols["config"].host_path, "app.conf")
    assert read_text(conf) == "x=1" and mode(conf) == 0o644
    assert read_bytes(os.path.join(vols["config"].host_path, "logo")) == b"PNG"
    assert _prepare(pod, client, pods) == vols  # idempotent

    assert asyncio.run(v.refresh(pod, pod_dir=pods, client=client)) == []
    objects[("configmaps", "shop", "app")] = {"data": {"app.conf": "x=2"}}
    pod["metadata"] = {**pod["metadata"], "labels": {"a": "9"}}
    assert asyncio.run(v.refresh(pod, pod_dir=pods, client=client)) == ["config", "info"]
    assert read_text(conf) == "x=2"
    assert not os.path.lexists(os.path.join(vols["config"].host_path, "logo"))
    assert read_text(os.path.join(vols["info"].host_path, "labels")) == 'a="9"'

    del objects[("configmaps", "shop", "app")]
    with pytest.raises(v.VolumeError, match=r'^Pod web: volumes\[config\]: configMap "app" '
                                            "not found"):
        asyncio.run(v.refresh(pod, pod_dir=pods, client=client))
    assert read_text(conf) == "x=2"  # kept

    v.teardown("uid-1", pod_dir=pods)
    assert os.listdir(pods) == []


@pytest.mark.parametrize(("vol", "message"), [
    pytest.param({"name": "config", "configMap": {"name": "nope"}},
                 "Pod web: volumes[config]: configMap \"nope\" not found", id="no-configmap"),
    pytest.param({"name": "config", "configMap": {"name": "app", "items": [
        {"key": "x", "path": "y"}]}},
        "Pod web: volumes[config].configMap.items[0].key: configMap has no key 'x'",
        id="no-key"),
    pytest.param({"name": "h", "hostPath": {"path": "rel/path"}},
                 "Pod web: volumes[h].hostPath.path: must be an absolute path", id="relative"),
    pytest.param({"name": "e", "emptyDir": {"sizeLimit": "lots"}},
                 "Pod web: volumes[e].emptyDir.sizeLimit: not a quantity", id="bad-size"),
])
def test_prepare_errors_name_pod_volume_and_field(tmp_path: Any, vol: dict[str, Any],
                                                  message: str) -> None:
    with pytest.raises(v.VolumeError) as err:
        _prepare(_pod(vol), FakeClient(OBJECTS), str(tmp_path))
    assert str(err.value).startswith(message)


def test_optional_missing_configmap_is_an_empty_volume(tmp_path: Any) -> None:
    vols = _prepare(_pod({"name": "c", "configMap": {"name": "nope", "optional": True}}),
                    FakeClient(OBJECTS), str(tmp_path))
    assert [n for n in os.listdir(vols["c"].host_path) if not n.startswith("..")] == []


@pytest.mark.parametrize(("mount", "message"), [
    pytest.param({"name": "data", "mountPath": "/d", "subPath": "../../etc"},
                 "Pod web: containers[app].volumeMounts[0].subPath: must not contain '..'",
                 id="dotdot"),
    pytest.param({"name": "data", "mountPath": "/d", "subPath": "/etc"},
                 "Pod web: containers[app].volumeMounts[0].subPath: must be a relative",
                 id="absolute"),
    pytest.param({"name": "data", "mountPath": "/d", "subPath": "out"},
                 "Pod web: containers[app].volumeMounts[0].subPath: 'out' leads out",
                 id="symlink-out"),
    pytest.param({"name": "conf", "mountPath": "/d", "subPath": "new"},
                 "Pod web: containers[app].volumeMounts[0].subPath: 'new' does not exist",
                 id="read-only-missing"),
    pytest.param({"name": "nope", "mountPath": "/d"},
                 "Pod web: containers[app].volumeMounts[0].name: no volume", id="no-volume"),
])
def test_sub_path_may_not_escape(tmp_path: Any, mount: dict[str, Any], message: str) -> None:
    data, conf = tmp_path / "data", tmp_path / "conf"
    data.mkdir()
    conf.mkdir()
    os.symlink("/etc", data / "out")
    vols = {"data": v.Volume("data", "emptyDir", str(data), False),
            "conf": v.Volume("conf", "configMap", str(conf), True)}
    with pytest.raises(v.VolumeError) as err:
        v.container_mounts({"name": "app", "volumeMounts": [mount]}, vols, pod="web")
    assert str(err.value).startswith(message)


def test_container_mounts(tmp_path: Any) -> None:
    data, conf = tmp_path / "data", tmp_path / "conf"
    data.mkdir()
    conf.mkdir()
    (conf / "app.conf").write_text("x")
    vols = {"data": v.Volume("data", "emptyDir", str(data), False),
            "conf": v.Volume("conf", "configMap", str(conf), True)}
    got = v.container_mounts({"name": "app", "volumeMounts": [
        {"name": "data", "mountPath": "/var/data/"},
        {"name": "data", "mountPath": "/logs", "subPath": "a/b", "readOnly": True},
        {"name": "conf", "mountPath": "/etc/app.conf", "subPath": "app.conf"},
    ]}, vols)
    assert got == [v.Mount("data", "/var/data", str(data), False),
                   v.Mount("data", "/logs", str(data / "a" / "b"), True),
                   v.Mount("conf", "/etc/app.conf", str(conf / "app.conf"), True)]
    assert (data / "a" / "b").is_dir()  # a missing subPath of a writable volume is made
    with pytest.raises(v.VolumeError, match=r"volumeMounts\[1\].mountPath: /x is mounted twice"):
        v.container_mounts({"name": "app", "volumeMounts": [
            {"name": "data", "mountPath": "/x"}, {"name": "conf", "mountPath": "/x/"}]}, vols)
