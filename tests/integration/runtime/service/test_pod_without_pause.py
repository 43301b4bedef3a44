"""Pods without a pause container, on a real corral-runtimed: the pod's net, ipc and uts
namespaces are pinned files, its containers share them (localhost, hostname, the pod's
/dev/shm as containerd has it: one tmpfs per sandbox), no shim runs for the sandbox, the
sandbox survives a daemon ``kill -9``, and nothing stays mounted after RemovePodSandbox.
A pod sharing one PID namespace (pid POD, shareProcessNamespace) gets a pause as its init
and its containers see each other's processes; ``drop_infra_container = false`` in the
daemon's config keeps a pause for every pod."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator

import pytest

from runtime.service.cri import api_pb2 as pb
from runtime.service.cri.client import CRIClient
from tests.integration.runtime.service.test_runtimed import (  # noqa: F401 (fixtures)
    Runtimed,
    container_config,
    cri,
    leftovers,
    need_root,
    rtd,
)
from tests.support.registry import Registry


def keep_pause(node: Runtimed) -> None:
    """NODE's config with pause containers kept for every pod (the key alone does it)."""
    with open(node.config_path) as f:
        text = f.read()
    with open(node.config_path, "w") as f:
        f.write("drop_infra_container = false\n" + text)  # top level: before any [table]


@pytest.fixture
def kept(tag: str, leak_check: None, registry: Registry, busybox: str
         ) -> Iterator[Runtimed]:
    need_root()
    with Runtimed(tag=tag, sandbox_image=busybox, registries=[registry.host]) as r:
        keep_pause(r)
        r.write_cni_conflist()
        r.start()
        yield r


def mounts_under(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return sorted(p for p in points if p.startswith(path + "/"))


def record(node: Runtimed, pod: str) -> dict[str, object]:
    """The sandbox's record (root/sandboxes/<tenant>/<id>.json): where its pins are."""
    for tenant in node.tenants():
        path = os.path.join(node.root, "sandboxes", tenant, pod + ".json")
        if os.path.exists(path):
            with open(path) as f:
                rec: dict[str, object] = json.load(f)
                return rec
    raise AssertionError(f"no record of sandbox {pod}")


def own_pids(cfg: pb.PodSandboxConfig) -> pb.PodSandboxConfig:
    """CFG with a PID namespace per container, as kubelet asks for a pod that does not
    set shareProcessNamespace (left unset, pid is POD: shared, with a pause as its init)."""
    cfg.linux.security_context.namespace_options.pid = pb.CONTAINER
    return cfg


async def sh(client: CRIClient, cid: str, script: str) -> str:
    r = await client.exec_sync(cid, ["sh", "-c", script], timeout=15)
    assert r.exit_code == 0, (script, r.stdout, r.stderr)
    return r.stdout.decode()


NS = "hostname; for k in net ipc uts; do readlink /proc/self/ns/$k; done"


async def two_containers_share(cri: CRIClient, busybox: str, pod: str,  # noqa: F811
                               sandbox: pb.PodSandboxConfig) -> str:
    """Two containers of POD see one localhost, hostname, ipc and /dev/shm; what they
    see (hostname, namespace links)."""
    server = await cri.create_container(pod, container_config(
        busybox, "server", ["sh", "-c", "echo pong | nc -l -p 8080 127.0.0.1; sleep 60"]),
        sandbox_config=sandbox)
    client = await cri.create_container(pod, container_config(busybox, "client",
                                                              ["sleep", "60"]),
                                        sandbox_config=sandbox)
    for c in (server, client):
        await cri.start_container(c)
    # localhost is the pod's: the client reaches the server's 127.0.0.1 listener
    got = ""
    for _ in range(100):
        r = await cri.exec_sync(client, ["nc", "127.0.0.1", "8080"], timeout=10)
        got = r.stdout.decode()
        if got:
            break
        await asyncio.sleep(0.05)
    assert got == "pong\n"
    # one hostname, one ipc, net and uts namespace for both (and none of them the host's)
    seen = [await sh(cri, c, NS) for c in (server, client)]
    assert seen[0] == seen[1] and seen[0].startswith(sandbox.hostname + "\n"), seen
    host = [os.readlink(f"/proc/self/ns/{k}") for k in ("net", "ipc", "uts")]
    assert not set(seen[0].split()[1:]) & set(host)
    # /dev/shm is the pod's: a file written by one container is read by the other
    await sh(cri, server, "echo shared > /dev/shm/token")
    assert await sh(cri, client, "cat /dev/shm/token") == "shared\n"
    return seen[0]


@pytest.mark.asyncio
async def test_two_containers_share_the_pods_namespaces(
        cri: CRIClient, rtd: Runtimed, busybox: str) -> None:  # noqa: F811
    await cri.pull_image(pb.ImageSpec(image=busybox))
    sandbox = own_pids(rtd.sandbox_config("pinned"))
    pod = await cri.run_pod_sandbox(sandbox)
    st = await cri.pod_sandbox_status(pod, verbose=True)
    assert st.status.state == pb.SANDBOX_READY and st.status.network.ip
    assert json.loads(st.info["info"])["pid"] == 0  # no pause container
    assert leftovers(rtd)["tasks"] == []  # no shim for the sandbox
    pins = os.path.dirname(str(record(rtd, pod)["shm"]))
    assert sorted(os.listdir(pins)) == ["ipc", "shm", "uts"]
    seen = await two_containers_share(cri, busybox, pod, sandbox)
    # a daemon killed and restarted finds the sandbox READY from its pins alone
    rtd.kill9()
    rtd.start()
    async with CRIClient(rtd.socket, timeout=60) as again:
        assert [(s.id, s.state) for s in await again.list_pod_sandbox()] == \
            [(pod, pb.SANDBOX_READY)]
        third = await again.create_container(pod, container_config(busybox, "third",
                                                                   ["sleep", "60"]),
                                             sandbox_config=sandbox)
        await again.start_container(third)
        assert await sh(again, third, NS) == seen
        assert await sh(again, third, "cat /dev/shm/token") == "shared\n"
        await again.stop_pod_sandbox(pod)
        st = await again.pod_sandbox_status(pod)
        assert st.status.state == pb.SANDBOX_NOTREADY
        await again.remove_pod_sandbox(pod)
        assert await again.list_pod_sandbox() == []
    assert leftovers(rtd) == {"tasks": [], "rootfs": []}
    assert mounts_under(rtd.dir) == []
    assert not os.path.exists(pins)


@pytest.mark.asyncio
async def test_an_unpinned_namespace_makes_the_pod_notready(
        cri: CRIClient, rtd: Runtimed) -> None:  # noqa: F811
    sandbox = own_pids(rtd.sandbox_config("lost"))
    pod = await cri.run_pod_sandbox(sandbox)
    uts = dict(record(rtd, pod)["namespaces"])["uts"]  # type: ignore[call-overload]
    assert os.system(f"umount {uts}") == 0
    assert (await cri.pod_sandbox_status(pod)).status.state == pb.SANDBOX_NOTREADY
    await cri.stop_pod_sandbox(pod)
    await cri.remove_pod_sandbox(pod)
    assert mounts_under(rtd.dir) == []


@pytest.mark.asyncio
async def test_kept_pause_containers_share_as_before(kept: Runtimed, busybox: str) -> None:
    async with CRIClient(kept.socket, timeout=60) as client:
        await client.pull_image(pb.ImageSpec(image=busybox))
        sandbox = own_pids(kept.sandbox_config("paused"))
        pod = await client.run_pod_sandbox(sandbox)
        st = await client.pod_sandbox_status(pod, verbose=True)
        assert st.status.state == pb.SANDBOX_READY
        assert json.loads(st.info["info"])["pid"] > 0  # the pause container's
        assert record(kept, pod)["namespaces"] == []  # nothing pinned but the pod's shm
        await two_containers_share(client, busybox, pod, sandbox)
        await client.stop_pod_sandbox(pod)
        await client.remove_pod_sandbox(pod)
    assert leftovers(kept) == {"tasks": [], "rootfs": []}
    assert mounts_under(kept.dir) == []


@pytest.mark.parametrize("pid,pause", [
    pytest.param(pb.POD, True, id="pid-POD-pause"),
    pytest.param(pb.CONTAINER, False, id="pid-CONTAINER-no-pause"),
])
@pytest.mark.asyncio
async def test_a_shared_pid_namespace_has_a_pause(
        cri: CRIClient, rtd: Runtimed, busybox: str, pid: pb.NamespaceMode,  # noqa: F811
        pause: bool) -> None:
    await cri.pull_image(pb.ImageSpec(image=busybox))
    sandbox = rtd.sandbox_config("pids")
    sandbox.linux.security_context.namespace_options.pid = pid
    pod = await cri.run_pod_sandbox(sandbox)
    st = await cri.pod_sandbox_status(pod, verbose=True)
    assert st.status.state == pb.SANDBOX_READY
    assert st.status.linux.namespaces.options.pid == pid
    assert (json.loads(st.info["info"])["pid"] > 0) is pause  # the pause container's
    assert (pod in leftovers(rtd)["tasks"]) is pause  # its shim, only with a pause
    ids = []
    for name, seconds in (("one", "3601"), ("two", "3602")):
        cid = await cri.create_container(pod, container_config(
            busybox, name, ["sleep", seconds]), sandbox_config=sandbox)
        await cri.start_container(cid)
        ids.append(cid)
    ps = [await sh(cri, c, "ps -o pid,args") for c in ids]
    # with one PID namespace each sees the other's command; without, only its own
    assert ("sleep 3602" in ps[0]) is pause and ("sleep 3601" in ps[1]) is pause, ps
    assert "sleep 3601" in ps[0] and "sleep 3602" in ps[1], ps
    if not pause:  # its own sleep is its init
        assert [line.split()[0] for line in ps[0].splitlines() if "sleep 3601" in line] == \
            ["1"], ps
    await cri.stop_pod_sandbox(pod)
    await cri.remove_pod_sandbox(pod)
    assert leftovers(rtd) == {"tasks": [], "rootfs": []}
    assert mounts_under(rtd.dir) == []
