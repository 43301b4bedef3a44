"""The pod worker's volumes and env, over a fake CRI and the agent's real hooks
(main.PodVolumes over agent/volumes.py in a temp dir, main.env_hook): a subPath never
leads out of its volume, configMap/secret/downwardAPI mounts are read-only whatever the
pod says, fieldRef env sees the sandbox's IP at the first start, and the volumes are
refreshed while the pod runs."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from typing import Any

import pytest

from agent import main as M
from agent import status as S
from agent import volumes as V
from agent import worker as W
from runtime.service.cri import api_pb2 as pb
from tests.unit.agent.test_env import FakeClient, b64
from tests.unit.agent.test_worker_probes import FakeAPI, FakeCRI

NODE_IP = "192.0.2.10"
SANDBOX_IP = "10.1.0.7"  # what FakeCRI's sandbox has


class ConfigCRI(FakeCRI):
    """FakeCRI that keeps each container's config."""

    def __init__(self) -> None:
        super().__init__()
        self.configs: dict[str, pb.ContainerConfig] = {}

    async def create_container(self, sandbox_id: str, config: pb.ContainerConfig, *,
                               sandbox_config: pb.PodSandboxConfig) -> str:
        self.configs[config.metadata.name] = config
        return await super().create_container(sandbox_id, config,
                                              sandbox_config=sandbox_config)


def make_pod(container: Mapping[str, Any], *volumes: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {"restartPolicy": "Always", "terminationGracePeriodSeconds": 3,
                     "containers": [{"name": "app", "image": "busybox",
                                     "command": ["sleep", "1d"], **container}],
                     "volumes": list(volumes)},
            "status": {}}


class Rig:
    def __init__(self, tmp: str, pod: dict[str, Any], *,
                 objects: dict[tuple[str, str, str], dict[str, Any]] | None = None,
                 volume_refresh: float = 60.0) -> None:
        self.cri = ConfigCRI()
        self.api = FakeAPI()
        self.client = FakeClient(objects or {})
        self.pod_dir = os.path.join(tmp, "volumes")
        self.volumes = M.PodVolumes(self.client, self.pod_dir)  # type: ignore[arg-type]
        env = W.WorkerEnv(api=self.api, cri=self.cri,  # type: ignore[arg-type]
                          refresh=self.cri.refresh, writer=S.StatusWriter(self.api),
                          log_root=os.path.join(tmp, "logs"), node_name="n1",
                          host_ip=NODE_IP, volumes=self.volumes,
                          env=M.env_hook(self.client),  # type: ignore[arg-type]
                          volume_refresh=volume_refresh)
        self.worker = W.PodWorker(env, pod)

    async def sync(self) -> None:
        await self.worker.sync()

    def mounts(self) -> dict[str, pb.Mount]:
        return {m.container_path: m for m in self.cri.configs["app"].mounts}

    def waiting(self) -> tuple[str, str]:
        return self.worker.waiting["app"]

    async def close(self) -> None:
        await self.worker.probes.close()
        V.teardown("u1", pod_dir=self.pod_dir)


def run(coro: Any) -> None:
    asyncio.run(coro)


# ---- gap: subPath and read-only ----------------------------------------------------------

@pytest.mark.parametrize("sub,message", [
    pytest.param("../../../../etc", "must not contain '..'", id="dotdot"),
    pytest.param("a/../../etc", "must not contain '..'", id="dotdot-inside"),
    pytest.param("/etc", "must be a relative path", id="absolute"),
    pytest.param("out", "leads out of volume 'data'", id="symlink-out"),
])
def test_a_sub_path_out_of_its_volume_is_a_config_error(tmp_path: Any, sub: str,
                                                        message: str) -> None:
    async def go() -> None:
        pod = make_pod({"volumeMounts": [{"name": "data", "mountPath": "/data",
                                          "subPath": sub}]},
                       {"name": "data", "emptyDir": {}})
        rig = Rig(str(tmp_path), pod)
        # a symlink the container could have left in its volume, pointing out of it
        made = await rig.volumes.prepare(pod)
        os.symlink("/etc", os.path.join(made["data"].host_path, "out"))
        for _ in range(3):
            await rig.sync()
        reason, text = rig.waiting()
        assert reason == "CreateContainerConfigError"
        assert "Pod web: containers[app].volumeMounts[0].subPath: " in text
        assert message in text
        assert "app" not in rig.cri.configs, "no container made with the escape"
        await rig.close()
    run(go())


def test_a_missing_sub_path_is_made_inside_the_volume(tmp_path: Any) -> None:
    async def go() -> None:
        pod = make_pod({"volumeMounts": [{"name": "data", "mountPath": "/logs",
                                          "subPath": "a/b"}]},
                       {"name": "data", "emptyDir": {}})
        rig = Rig(str(tmp_path), pod)
        for _ in range(2):
            await rig.sync()
        host = rig.mounts()["/logs"].host_path
        root = os.path.realpath(os.path.join(rig.pod_dir, "u1", "volumes", "emptyDir",
                                             "data"))
        assert host == os.path.join(root, "a", "b") and os.path.isdir(host)
        assert rig.mounts()["/logs"].readonly is False
        await rig.close()
    run(go())


@pytest.mark.skipif(os.geteuid() != 0, reason="a secret volume is a tmpfs: needs root")
def test_config_map_secret_and_downward_mounts_are_read_only(tmp_path: Any) -> None:
    async def go() -> None:
        objects = {("configmaps", "default", "cfg"): {"data": {"k": "v"}},
                   ("secrets", "default", "s"): {"data": {"pw": b64("x")}}}
        pod = make_pod({"volumeMounts": [
            {"name": "cfg", "mountPath": "/cfg", "readOnly": False},
            {"name": "sec", "mountPath": "/sec"},
            {"name": "info", "mountPath": "/info"},
            {"name": "data", "mountPath": "/data"},
            {"name": "ro", "mountPath": "/ro", "readOnly": True}]},
            {"name": "cfg", "configMap": {"name": "cfg"}},
            {"name": "sec", "secret": {"secretName": "s"}},
            {"name": "info", "downwardAPI": {"items": [
                {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}},
            {"name": "data", "emptyDir": {}},
            {"name": "ro", "emptyDir": {}})
        rig = Rig(str(tmp_path), pod, objects=objects)
        try:
            for _ in range(2):
                await rig.sync()
            got = {path: m.readonly for path, m in rig.mounts().items()}
            assert got == {"/cfg": True, "/sec": True, "/info": True, "/data": False,
                           "/ro": True}
        finally:
            await rig.close()
    run(go())


# ---- gap: status.podIP at the first start ------------------------------------------------

def test_field_ref_env_and_downward_volume_see_the_sandbox_ip_at_the_first_start(
        tmp_path: Any) -> None:
    async def go() -> None:
        env = [{"name": n, "valueFrom": {"fieldRef": {"fieldPath": f}}} for n, f in [
            ("POD_IP", "status.podIP"), ("POD_IPS", "status.podIPs"),
            ("HOST_IP", "status.hostIP")]]
        pod = make_pod({"env": env, "volumeMounts": [{"name": "info", "mountPath": "/i"}]},
                       {"name": "info", "downwardAPI": {"items": [
                           {"path": "ip", "fieldRef": {"fieldPath": "status.podIP"}},
                           {"path": "host", "fieldRef": {"fieldPath": "status.hostIP"}}]}})
        rig = Rig(str(tmp_path), pod)
        await rig.sync()  # one sync: sandbox and container; the API status has no IP yet
        assert pod["status"] == {}
        got = {e.key: e.value for e in rig.cri.configs["app"].envs}
        assert got == {"POD_IP": SANDBOX_IP, "POD_IPS": SANDBOX_IP, "HOST_IP": NODE_IP}
        host = rig.mounts()["/i"].host_path
        with open(os.path.join(host, "ip")) as f:
            assert f.read() == SANDBOX_IP
        with open(os.path.join(host, "host")) as f:
            assert f.read() == NODE_IP
        await rig.close()
    run(go())


def test_the_node_and_sandbox_ips_win_over_the_api_status_at_start_and_refresh(
        tmp_path: Any) -> None:
    async def go() -> None:
        env = [{"name": n, "valueFrom": {"fieldRef": {"fieldPath": f}}} for n, f in [
            ("POD_IP", "status.podIP"), ("HOST_IPS", "status.hostIPs")]]
        pod = make_pod({"env": env, "volumeMounts": [{"name": "info", "mountPath": "/i"}]},
                       {"name": "info", "downwardAPI": {"items": [
                           {"path": "ip", "fieldRef": {"fieldPath": "status.podIP"}},
                           {"path": "host", "fieldRef": {"fieldPath": "status.hostIP"}}]}})
        pod["status"] = {"podIP": "10.9.9.9", "hostIP": "198.51.100.1",
                         "hostIPs": [{"ip": "198.51.100.1"}]}  # stale: an older node IP
        rig = Rig(str(tmp_path), pod, volume_refresh=0.05)
        try:
            await rig.sync()
            got = {e.key: e.value for e in rig.cri.configs["app"].envs}
            assert got == {"POD_IP": SANDBOX_IP, "HOST_IPS": NODE_IP}
            host = rig.mounts()["/i"].host_path
            for _ in range(2):  # at the start, then rewritten by a refresh
                with open(os.path.join(host, "ip")) as f:
                    assert f.read() == SANDBOX_IP
                with open(os.path.join(host, "host")) as f:
                    assert f.read() == NODE_IP
                os.unlink(os.path.join(host, "..data", "host"))  # a refresh puts it back
                await asyncio.sleep(0.06)
                await rig.sync()
            assert rig.worker.state is W.PodState.RUNNING
        finally:
            await rig.close()
    run(go())


@pytest.mark.parametrize("status,pod_ip,host_ip,want", [
    pytest.param({}, "10.0.0.2", "h", {"podIP": "10.0.0.2", "podIPs": [{"ip": "10.0.0.2"}],
                                       "hostIP": "h", "hostIPs": [{"ip": "h"}]}, id="empty"),
    # the node's own IP wins over the API's, as env and volumes had it when they were
    # given the node's IP apart from the pod (kubelet: its node IP)
    pytest.param({"podIP": "old", "hostIP": "api"}, "10.0.0.2", "h",
                 {"podIP": "10.0.0.2", "podIPs": [{"ip": "10.0.0.2"}], "hostIP": "h",
                  "hostIPs": [{"ip": "h"}]}, id="sandbox-and-node-win"),
    pytest.param({"podIP": "1.2.3.4"}, "", "h", {"podIP": "1.2.3.4", "hostIP": "h",
                                                 "hostIPs": [{"ip": "h"}]}, id="no-sandbox-ip"),
    pytest.param({"podIP": "1.2.3.4", "hostIP": "api"}, "", "",
                 {"podIP": "1.2.3.4", "hostIP": "api"}, id="no-node-ip-api-kept"),
])
def test_with_sandbox_ips(status: dict[str, Any], pod_ip: str, host_ip: str,
                          want: dict[str, Any]) -> None:
    pod = {"metadata": {"name": "p"}, "status": status}
    before = dict(status)
    assert W.with_sandbox_ips(pod, pod_ip=pod_ip, host_ip=host_ip)["status"] == want
    assert pod["status"] == before  # the cached object is not touched


# ---- gap: volumes refreshed while the pod runs -------------------------------------------

def test_a_changed_config_map_is_rewritten_after_the_refresh_period(tmp_path: Any) -> None:
    async def go() -> None:
        objects = {("configmaps", "default", "s"): {"data": {"pw": "one"}}}
        pod = make_pod({"volumeMounts": [{"name": "sec", "mountPath": "/sec"}]},
                       {"name": "sec", "configMap": {"name": "s"}})
        rig = Rig(str(tmp_path), pod, objects=objects, volume_refresh=0.3)
        try:
            await rig.sync()
            assert rig.worker.state is W.PodState.RUNNING
            path = os.path.join(rig.mounts()["/sec"].host_path, "pw")
            objects[("configmaps", "default", "s")] = {"data": {"pw": "two"}}
            await rig.sync()  # too soon: the content is the old one
            with open(path) as f:
                assert f.read() == "one"
            # the worker asks to be woken when the refresh is due
            assert 0 < rig.worker._next_at - time.time() <= 0.3
            await asyncio.sleep(0.35)
            await rig.sync()
            with open(path) as f:
                assert f.read() == "two"
        finally:
            await rig.close()
    run(go())
