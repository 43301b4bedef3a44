"""The pod's shared /dev/shm in each container's mounts (containerd's per-sandbox tmpfs),
and the ``drop_infra_container`` config key."""

from __future__ import annotations

import pytest

from runtime.service import bundle as B
from runtime.service import config
from runtime.service.cri.service import pod_mounts
from runtime.service.sandboxes import Sandbox, SandboxSpec, SandboxState

OWN = B.MountSpec(container_path="/data", host_path="/srv/data")


def sandbox(shm: str) -> Sandbox:
    return Sandbox(id="s1", tenant="k8s.io", spec=SandboxSpec(name="web", uid="u",
                                                              namespace="d"),
                   state=SandboxState.READY, created_at_ns=1, shm=shm)


@pytest.mark.parametrize(("shm", "mounts", "want"), [
    pytest.param("/pins/s1/shm", (OWN,),
                 (OWN, B.MountSpec(container_path="/dev/shm", host_path="/pins/s1/shm")),
                 id="pod-shm-added"),
    pytest.param("", (OWN,), (OWN,), id="old-record-no-pod-shm"),
    pytest.param("/pins/s1/shm", (B.MountSpec(container_path="/dev/shm/", kind="tmpfs"),),
                 (B.MountSpec(container_path="/dev/shm/", kind="tmpfs"),),
                 id="container-mounts-its-own"),
])
def test_pod_mounts(shm: str, mounts: tuple[B.MountSpec, ...],
                    want: tuple[B.MountSpec, ...]) -> None:
    assert pod_mounts(sandbox(shm), mounts) == want


def test_pod_shm_replaces_the_default_tmpfs(tmp_path: object) -> None:
    cfg = B.ContainerConfig(name="c", command=("sh",),
                            mounts=pod_mounts(sandbox("/pins/s1/shm"), ()))
    spec = B.build_spec(config=cfg, image={}, rootfs=str(tmp_path))
    shm = [m for m in spec["mounts"] if m["destination"] == "/dev/shm"]
    assert shm == [{"destination": "/dev/shm", "type": "bind", "source": "/pins/s1/shm",
                    "options": ["rbind", "rprivate", "rw"]}]


@pytest.mark.parametrize(("data", "want"), [
    pytest.param({}, True, id="default-drops-pause"),
    pytest.param({"drop_infra_container": False}, False, id="keep-pause"),
    pytest.param({"drop_infra_container": True}, True, id="explicit"),
])
def test_drop_infra_container(data: dict[str, object], want: bool) -> None:
    assert config.parse(data, source="/etc/r.toml").drop_infra_container is want


def test_drop_infra_container_must_be_a_bool() -> None:
    with pytest.raises(config.ConfigError,
                       match=r"^/etc/r.toml: drop_infra_container: must be true or false, "
                             r"got 'no'$"):
        config.parse({"drop_infra_container": "no"}, source="/etc/r.toml")
