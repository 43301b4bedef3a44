"""The compatibility test: one CRI scenario through CRIClient, against corral-runtimed and
against containerd 1.6's CRI plugin, with the same assertions.

The scenario is copied (not shared) from test_cri_containerd.py's test_pod_lifecycle and
test_images, whose helpers (sandbox_config, container_config, read_log, until) it imports;
that file is left as it is. Where the two runtimes differ on purpose the peer says so
(``PEERS``): the runtime name, and the streaming calls (Exec/Attach/PortForward URLs),
which corral-runtimed does not serve yet (UNIMPLEMENTED).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from runtime.service.cri import api_pb2 as pb
from runtime.service.cri.client import CRIClient, NotFound, Unimplemented
from tests.integration.runtime.service.test_cri_containerd import (
    container_config,
    read_log,
    sandbox_config,
    until,
)
from tests.integration.runtime.service.test_runtimed import Runtimed, need_root
from tests.support import containerd
from tests.support.containerd import Containerd
from tests.support.registry import Registry

PEERS = {"corral-runtimed": {"name": "corral", "streaming": False},
         "containerd": {"name": "containerd", "streaming": True}}


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    with Registry() as reg:
        yield reg


@pytest.fixture(scope="module")
def busybox(registry: Registry) -> str:
    return containerd.push_busybox(registry)


@pytest.fixture(params=list(PEERS))
def peer(request: pytest.FixtureRequest, tag: str, leak_check: None, registry: Registry,
         busybox: str) -> Iterator[tuple[str, Any]]:
    need_root()
    if request.param == "containerd":
        with Containerd(tag=tag, sandbox_image=busybox, registries=[registry.host]) as c:
            yield request.param, c
    else:
        with Runtimed(tag=tag, sandbox_image=busybox, registries=[registry.host]) as r:
            r.start()
            yield request.param, r


def subnet_of(tag: str) -> str:
    import hashlib
    h = hashlib.sha256(tag.encode()).digest()
    return f"10.{216 + h[0] % 8}.{h[1]}.0/24"


def write_conflist(kind: str, rt: Any) -> None:
    if kind == "containerd":
        rt.write_cni_conflist(subnet=subnet_of(rt.tag))
    else:
        rt.write_cni_conflist()


@pytest.mark.asyncio
async def test_same_scenario(peer: tuple[str, Any], busybox: str) -> None:
    kind, rt = peer
    expect = PEERS[kind]
    write_conflist(kind, rt)
    async with CRIClient(rt.socket, timeout=60) as cri:
        v = await cri.version()
        assert (v.runtime_name, v.runtime_api_version) == (expect["name"], "v1")

        async def network_ready() -> bool:
            conds = {c.type: c.status for c in (await cri.status()).status.conditions}
            return conds == {"RuntimeReady": True, "NetworkReady": True}
        await until("NetworkReady", network_ready)

        # images
        spec = pb.ImageSpec(image=busybox)
        assert not (await cri.image_status(spec)).HasField("image")
        ref = await cri.pull_image(spec)
        assert ref == containerd.busybox_image().config.digest
        image = (await cri.image_status(spec)).image
        assert image.id == ref and busybox in image.repo_tags and image.size > 0
        repo = busybox.rsplit(":", 1)[0]
        assert f"{repo}@{containerd.busybox_image().manifest.digest}" in image.repo_digests
        assert [i.id for i in await cri.list_images(pb.ImageFilter(image=spec))] == [ref]
        assert (await cri.image_fs_info()).image_filesystems[0].fs_id.mountpoint

        # a pod and its containers
        sandbox = sandbox_config(rt, "web")
        pod = await cri.run_pod_sandbox(sandbox)
        st = (await cri.pod_sandbox_status(pod)).status
        assert st.state == pb.SANDBOX_READY and st.metadata.name == "web"
        assert st.network.ip, "no pod IP"
        main = container_config(busybox, "main", ["sh", "-c", "echo hello; sleep 30"])
        cid = await cri.create_container(pod, main, sandbox_config=sandbox)
        assert (await cri.container_status(cid)).status.state == pb.CONTAINER_CREATED
        await cri.start_container(cid)
        status = (await cri.container_status(cid)).status
        assert status.state == pb.CONTAINER_RUNNING and status.started_at > 0
        assert status.log_path == os.path.join(sandbox.log_directory, "main.log")

        async def said_hello() -> bool:
            return os.path.exists(status.log_path) and \
                ("stdout", "F", "hello") in read_log(status.log_path)
        await until("hello in the log", said_hello)
        out = await cri.exec_sync(cid, ["sh", "-c", "echo oops >&2; hostname; exit 7"],
                                  timeout=10)
        assert (out.stdout, out.stderr, out.exit_code) == (b"web\n", b"oops\n", 7)
        listed = await cri.list_containers(pb.ContainerFilter(pod_sandbox_id=pod))
        assert [(c.id, c.state) for c in listed] == [(cid, pb.CONTAINER_RUNNING)]
        await cri.update_container_resources(cid, pb.LinuxContainerResources(
            memory_limit_in_bytes=64 << 20))
        await cri.reopen_container_log(cid)
        stats = await cri.container_stats(cid)
        assert stats.attributes.id == cid and stats.memory.working_set_bytes.value > 0
        assert cid in [s.attributes.id for s in await cri.list_container_stats()]
        if expect["streaming"]:
            assert (await cri.exec(cid, ["sh"])).startswith("http://127.0.0.1:")
        else:
            with pytest.raises(Unimplemented):
                await cri.exec(cid, ["sh"])

        started = time.monotonic()
        await cri.stop_container(cid, timeout=1)
        assert time.monotonic() - started >= 1
        status = (await cri.container_status(cid)).status
        assert (status.state, status.exit_code) == (pb.CONTAINER_EXITED, 137)
        assert status.finished_at >= status.started_at

        graceful = container_config(
            busybox, "graceful", ["sh", "-c", "trap 'echo bye; exit 3' TERM; sleep 30 & wait"])
        gid = await cri.create_container(pod, graceful, sandbox_config=sandbox)
        await cri.start_container(gid)
        await asyncio.sleep(0.3)
        await cri.stop_container(gid, timeout=20)
        status = (await cri.container_status(gid)).status
        assert (status.state, status.exit_code) == (pb.CONTAINER_EXITED, 3)
        assert ("stdout", "F", "bye") in read_log(status.log_path)

        for c in (cid, gid):
            await cri.remove_container(c)
            with pytest.raises(NotFound):
                await cri.container_status(c)
        await cri.stop_pod_sandbox(pod)
        assert (await cri.pod_sandbox_status(pod)).status.state == pb.SANDBOX_NOTREADY
        await cri.stop_pod_sandbox(pod)
        await cri.remove_pod_sandbox(pod)
        with pytest.raises(NotFound):
            await cri.pod_sandbox_status(pod)
        assert await cri.list_pod_sandbox() == []
        await cri.remove_image(spec)
        assert not (await cri.image_status(spec)).HasField("image")
        await cri.remove_image(spec)
