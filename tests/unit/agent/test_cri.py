"""Pod spec -> CRI configs (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from agent import cri as C
from runtime.service.cri import api_pb2 as pb

POD: dict[str, Any] = {
    "metadata": {"name": "web", "namespace": "shop", "uid": "u-1", "labels": {"app": "w"}},
    "spec": {"hostname": "", "securityContext": {"runAsUser": 1000},
             "containers": [{"name": "main", "image": "busybox",
                             "ports": [{"containerPort": 80, "hostPort": 8080}]}]}}


def test_sandbox_config_carries_labels_logs_cgroup_and_ports() -> None:
    sb = C.sandbox_config(POD, log_root="/var/log/pods", cgroup_parent="/corral", attempt=1)
    assert (sb.metadata.name, sb.metadata.namespace, sb.metadata.uid, sb.metadata.attempt) \
        == ("web", "shop", "u-1", 1)
    assert sb.hostname == "web"
    assert sb.log_directory == "/var/log/pods/shop_web_u-1"
    assert dict(sb.labels) == {"app": "w", C.POD_UID: "u-1", C.POD_NAME: "web",
                               C.POD_NAMESPACE: "shop"}
    assert sb.linux.cgroup_parent == "/corral"
    assert [(p.container_port, p.host_port) for p in sb.port_mappings] == [(80, 8080)]


@pytest.mark.parametrize(("spec", "want"), [
    pytest.param({}, (pb.POD, pb.CONTAINER, pb.POD), id="kubelet-default-no-shared-pid"),
    pytest.param({"shareProcessNamespace": True}, (pb.POD, pb.POD, pb.POD), id="shared-pid"),
    pytest.param({"hostNetwork": True, "hostPID": True, "hostIPC": True},
                 (pb.NODE, pb.NODE, pb.NODE), id="host-namespaces"),
])
def test_sandbox_namespace_options(spec: dict[str, Any], want: tuple[int, int, int]) -> None:
    pod = {**POD, "spec": {**POD["spec"], **spec}}
    ns = C.sandbox_config(pod, log_root="/l").linux.security_context.namespace_options
    assert (ns.network, ns.pid, ns.ipc) == want


@pytest.mark.parametrize(("resources", "shares", "quota", "period", "memory"), [
    pytest.param({}, 2, 0, 0, 0, id="best-effort"),
    pytest.param({"requests": {"cpu": "250m"}}, 256, 0, 0, 0, id="request"),
    pytest.param({"limits": {"cpu": "500m", "memory": "64Mi"}}, 512, 50000, 100000,
                 64 * 1024 * 1024, id="limit-implies-request"),
    pytest.param({"requests": {"cpu": "1m"}, "limits": {"cpu": "1m"}}, 2, 1000, 100000, 0,
                 id="minimums"),
])
def test_linux_resources(resources: dict[str, Any], shares: int, quota: int, period: int,
                         memory: int) -> None:
    r = C.linux_resources({"resources": resources})
    assert (r.cpu_shares, r.cpu_quota, r.cpu_period, r.memory_limit_in_bytes) == \
        (shares, quota, period, memory)


def test_container_config() -> None:
    c = {"name": "main", "image": "busybox", "command": ["sh"], "args": ["-c", "x"],
         "workingDir": "/w", "securityContext": {"readOnlyRootFilesystem": True,
                                                 "allowPrivilegeEscalation": False,
                                                 "capabilities": {"drop": ["ALL"]}}}
    cfg = C.container_config(POD, c, attempt=3, env=[("A", "1")],
                             mounts=[C.Mount("/d", "/h", True)], init=True)
    assert (cfg.metadata.name, cfg.metadata.attempt) == ("main", 3)
    assert (list(cfg.command), list(cfg.args), cfg.working_dir) == (["sh"], ["-c", "x"], "/w")
    assert [(e.key, e.value) for e in cfg.envs] == [("A", "1")]
    assert [(m.container_path, m.host_path, m.readonly) for m in cfg.mounts] == \
        [("/d", "/h", True)]
    assert cfg.labels[C.CONTAINER_NAME] == "main" and cfg.labels[C.INIT_LABEL] == "true"
    assert cfg.log_path == "main/3.log"
    sc = cfg.linux.security_context
    assert sc.run_as_user.value == 1000 and sc.readonly_rootfs and sc.no_new_privs
    assert list(sc.capabilities.drop_capabilities) == ["ALL"]


@pytest.mark.parametrize(("container", "match"), [
    pytest.param({"name": "c", "image": "x", "workingDir": "rel"},
                 "container c: workingDir: must be an absolute path, got 'rel'", id="workdir"),
])
def test_container_config_errors(container: dict[str, Any], match: str) -> None:
    with pytest.raises(C.ConfigError, match=match):
        C.container_config(POD, container, attempt=0)


@pytest.mark.parametrize(("env", "want"), [
    pytest.param([], [], id="none"),
    pytest.param([{"name": "A", "value": "1"}, {"name": "B"}], [("A", "1"), ("B", "")],
                 id="values"),
])
def test_plain_env(env: list[dict[str, Any]], want: list[tuple[str, str]]) -> None:
    assert C.plain_env({"name": "c", "env": env}) == want


def test_plain_env_refuses_value_from_naming_the_variable() -> None:
    with pytest.raises(C.ConfigError, match="container c: env B: valueFrom"):
        C.plain_env({"name": "c", "env": [{"name": "B", "valueFrom": {}}]})


def test_latest_and_previous_attempts() -> None:
    rt = C.PodRuntime("u", sandboxes=[C.SandboxInfo("old", 0, False),
                                      C.SandboxInfo("sb", 1, True, "10.0.0.9")])
    rt.containers = [C.ContainerInfo(id=f"c{a}", name="m", attempt=a, state="exited",
                                     sandbox_id="sb") for a in (0, 1, 2)]
    rt.containers.append(C.ContainerInfo(id="x", name="m", attempt=9, state="exited",
                                         sandbox_id="old"))
    assert rt.sandbox() is not None and rt.sandbox().id == "sb"  # type: ignore[union-attr]
    assert rt.latest("m").id == "c2"  # type: ignore[union-attr]
    assert rt.latest("other") is None
