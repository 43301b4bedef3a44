"""Pod and QoS cgroups on real cgroups with a real corral-runtimed: agent.qos makes the
pod's cgroup (with the pod's summed limits) under its QoS tier, the sandbox names it as
linux.cgroup_parent, the runtime puts every container below it, and removing the pod
leaves no cgroup behind. The CRI calls are the worker's, made here directly."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from agent import cri as C
from agent import qos as Q
from runtime.service.cri import api_pb2 as pb
from runtime.service.cri.client import CRIClient
from tests.integration.runtime.service.conftest import busybox as busybox  # fixtures, one
from tests.integration.runtime.service.conftest import registry as registry  # per module
from tests.integration.runtime.service.test_runtimed import (  # noqa: F401 (fixtures)
    Runtimed,
    cri,
    rtd,
    subnet,
)
from tests.support import containerd
from tests.support.containerd import Containerd
from tests.support.registry import Registry

MI = 1024 * 1024
UNLIMITED_V1 = 1 << 62  # memory.limit_in_bytes reads 9223372036854771712 when unset


def pod_of(name: str, *resources: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default", "uid": str(uuid.uuid4())},
            "spec": {"containers": [{"name": f"c{i}", "image": "", "command": ["sleep", "60"],
                                     "resources": r} for i, r in enumerate(resources)]}}


LIMITED = {"limits": {"memory": "32Mi", "cpu": "100m"}}


def read_limits(fs: Q.Cgroupfs, path: str) -> tuple[int, int, int]:
    """(memory limit or 0, cpu quota or 0, cpu period) of cgroup PATH, v1 or v2."""
    def read(controller: str, name: str) -> str:
        held = fs.holding(controller)
        assert held is not None
        with open(os.path.join(held.mount + path, name)) as f:
            return f.read().strip()
    if fs.mode == "v2":
        mem = read("memory", "memory.max")
        quota, period = read("cpu", "cpu.max").split()
        return (0 if mem == "max" else int(mem), 0 if quota == "max" else int(quota),
                int(period))
    mem_v1 = int(read("memory", "memory.limit_in_bytes"))
    quota_v1 = int(read("cpu", "cpu.cfs_quota_us"))
    return (0 if mem_v1 >= UNLIMITED_V1 else mem_v1, max(quota_v1, 0),
            int(read("cpu", "cpu.cfs_period_us")))


def cgroups_of(pid: int) -> dict[str, str]:
    """/proc/PID/cgroup as {controller or "" (v2): path}."""
    out = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            for c in ctrls.split(",") if ctrls else [""]:
                out[c] = path
    return out


def pod_dirs(fs: Q.Cgroupfs, uid: str) -> list[str]:
    """Every directory named pod<UID>, in any hierarchy."""
    return [d for h in fs.hierarchies for d, _, _ in os.walk(h.mount)
            if os.path.basename(d) == f"pod{uid}"]


async def run_pod(cri: CRIClient, node: Runtimed | Containerd, busybox: str,  # noqa: F811
                  pod: dict[str, Any], path: str) -> tuple[str, list[str]]:
    """The pod's sandbox in cgroup PATH and its containers started: (sandbox, ids)."""
    sandbox = C.sandbox_config(pod, log_root=node.log_dir, cgroup_parent=path)
    sid = await cri.run_pod_sandbox(sandbox)
    ids = []
    for c in pod["spec"]["containers"]:
        os.makedirs(os.path.join(sandbox.log_directory, c["name"]), exist_ok=True)
        cid = await cri.create_container(
            sid, C.container_config(pod, {**c, "image": busybox}, attempt=0),
            sandbox_config=sandbox)
        await cri.start_container(cid)
        ids.append(cid)
    return sid, ids


async def pid_of(cri: CRIClient, cid: str) -> int:  # noqa: F811
    st = await cri.container_status(cid, verbose=True)
    return int(json.loads(st.info["info"])["pid"])


@pytest.mark.asyncio
@pytest.mark.parametrize(("resources", "tier", "want"), [
    pytest.param((LIMITED, LIMITED), "", (64 * MI, 20_000, 100_000), id="guaranteed"),
    pytest.param(({"limits": {"memory": "32Mi", "cpu": "100m"}},
                  {"requests": {"cpu": "100m", "memory": "16Mi"}}),
                 "burstable", (0, 0, 100_000), id="burstable-one-limit-missing"),
    pytest.param(({}, {}), "besteffort", (0, 0, 100_000), id="besteffort"),
])
async def test_pod_cgroup_holds_the_pods_limits_and_its_containers(
        cri: CRIClient, rtd: Runtimed, busybox: str,  # noqa: F811
        resources: tuple[dict[str, Any], ...], tier: str, want: tuple[int, int, int]) -> None:
    await cri.pull_image(pb.ImageSpec(image=busybox))
    fs = Q.host_cgroupfs()
    pod = pod_of(f"qos-{tier or 'guaranteed'}", *resources)
    uid = pod["metadata"]["uid"]
    path = Q.ensure_pod_cgroup(pod, rtd.cgroup_parent)
    assert path == "/".join(p for p in (rtd.cgroup_parent, tier, f"pod{uid}") if p)
    assert read_limits(fs, path) == want
    if tier == "besteffort":
        held = fs.holding("cpu")
        assert held is not None
        name = "cpu.weight" if fs.mode == "v2" else "cpu.shares"
        with open(os.path.join(held.mount + os.path.dirname(path), name)) as f:
            assert f.read().strip() == ("1" if fs.mode == "v2" else "2")

    sid, ids = await run_pod(cri, rtd, busybox, pod, path)
    for cid in ids:  # each container's cgroup is the pod's child, in every hierarchy
        groups = cgroups_of(await pid_of(cri, cid))
        for controller in ("memory", "cpu") if fs.mode != "v2" else ("",):
            assert groups[controller] == f"{path}/{cid}", (controller, groups)
    # a pod whose containers still run: its cgroup stays, and the call says so
    assert Q.remove_pod_cgroup(uid, rtd.cgroup_parent) is False
    assert pod_dirs(fs, uid)

    await cri.stop_pod_sandbox(sid)
    await cri.remove_pod_sandbox(sid)
    assert Q.sweep_pod_cgroups(rtd.cgroup_parent, keep=()) == []
    assert pod_dirs(fs, uid) == []
    assert Q.pod_cgroups(rtd.cgroup_parent) == {}


@pytest.mark.asyncio
async def test_the_pod_cgroup_accounts_for_all_its_containers(
        cri: CRIClient, rtd: Runtimed, busybox: str) -> None:  # noqa: F811
    """A Burstable pod whose containers all declare a memory limit (12Mi each, requests
    below) gets the sum, 24Mi, on its cgroup; what its containers use is charged there
    together: the kernel holds the pod to 24Mi whatever each container does."""
    await cri.pull_image(pb.ImageSpec(image=busybox))
    fs = Q.host_cgroupfs()
    half = {"requests": {"memory": "4Mi"}, "limits": {"memory": "12Mi"}}
    pod = pod_of("qos-sum", half, half)
    uid = pod["metadata"]["uid"]
    path = Q.ensure_pod_cgroup(pod, rtd.cgroup_parent)
    assert path.endswith(f"/burstable/pod{uid}")
    assert read_limits(fs, path)[0] == 24 * MI
    sid, ids = await run_pod(cri, rtd, busybox, pod, path)
    # each container fills 10Mi of the pod's tmpfs /dev/shm, charged to its own cgroup
    for cid in ids:
        r = await cri.exec_sync(cid, ["sh", "-c", f"head -c {10 * MI} /dev/zero > "
                                       f"/dev/shm/{cid[:8]}"], timeout=20)
        assert r.exit_code == 0, r.stderr
    held = fs.holding("memory")
    assert held is not None
    usage = "memory.current" if fs.mode == "v2" else "memory.usage_in_bytes"
    with open(os.path.join(held.mount + path, usage)) as f:
        assert 20 * MI <= int(f.read()) <= 24 * MI
    await cri.stop_pod_sandbox(sid)
    await cri.remove_pod_sandbox(sid)
    assert Q.remove_pod_cgroup(uid, rtd.cgroup_parent) is True
    assert pod_dirs(fs, uid) == []


@pytest.fixture
def ctd(tag: str, leak_check: None, registry: Registry, busybox: str,
        ) -> Iterator[Containerd]:
    reason = containerd.missing()
    if reason:
        pytest.skip(reason)
    with Containerd(tag=tag, sandbox_image=busybox, registries=[registry.host]) as c:
        c.write_cni_conflist(subnet=subnet(tag))  # read when a pod starts
        yield c


@pytest_asyncio.fixture
async def ctd_cri(ctd: Containerd) -> AsyncIterator[CRIClient]:
    async with CRIClient(ctd.socket, timeout=60) as client:
        yield client


@pytest.mark.asyncio
async def test_containerd_puts_the_sandbox_and_containers_below_the_pod_cgroup(
        ctd_cri: CRIClient, ctd: Containerd, busybox: str) -> None:
    """The same pod cgroup given to containerd's CRI plugin (cgroupfs driver): its pause
    container and the pod's containers are made below it, so the pod's limits hold there
    as well."""
    await ctd_cri.pull_image(pb.ImageSpec(image=busybox))
    fs = Q.host_cgroupfs()
    pod = pod_of("qos-ctd", LIMITED, LIMITED)
    uid = pod["metadata"]["uid"]
    path = Q.ensure_pod_cgroup(pod, ctd.cgroup_parent)
    assert read_limits(fs, path) == (64 * MI, 20_000, 100_000)
    sid, ids = await run_pod(ctd_cri, ctd, busybox, pod, path)
    held = fs.holding("memory")
    assert held is not None
    assert {sid, *ids} <= set(os.listdir(held.mount + path))  # pause and both containers
    for cid in ids:
        assert cgroups_of(await pid_of(ctd_cri, cid))["memory" if fs.mode != "v2" else ""] == \
            f"{path}/{cid}"
    await ctd_cri.stop_pod_sandbox(sid)
    await ctd_cri.remove_pod_sandbox(sid)
    assert Q.remove_pod_cgroup(uid, ctd.cgroup_parent) is True
    assert pod_dirs(fs, uid) == []
