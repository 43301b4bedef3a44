"""One CRI scenario, driven through CRIClient against any runtime that speaks CRI v1
(containerd 1.6's CRI plugin, corral-runtimed), and the helpers it is made of.

::

    test_cri_containerd.py ─┐            images(cri, image=, root=)   pull, status, list,
                            ├─► here ─►                               fs info -> image ID
    test_cri_compat.py ─────┘            pod_lifecycle(cri, peer=,    sandbox, containers,
                                             node=, image=)           log, exec, stats,
                                                                      streaming URLs, stop,
                                                                      remove
                                         remove_image(cri, image=,    twice (idempotent)
                                             ref=)

    fixtures: registry (one docker-registry per module) and busybox (its image pushed there;
    also the sandbox image) come from this folder's conftest.py; re-exported here for the
    test modules that still import them from here

What a runtime may do its own way is a field of ``Peer`` (its name, its pod subnet, where
its cgroups are); every other assertion holds for both runtimes.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import pytest

from runtime.service.cri import api_pb2 as pb
from runtime.service.cri.client import CRIClient, NotFound
from tests.integration.runtime.service.conftest import busybox as busybox
from tests.integration.runtime.service.conftest import registry as registry
from tests.support import containerd

CRI_LOG_LINE = re.compile(r"^(\S+) (stdout|stderr) ([PF]) (.*)$")
RFC3339_NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")


class Node(Protocol):
    """What the scenario needs of a runtime under test (Containerd, Runtimed)."""

    tag: str
    log_dir: str
    cgroup_parent: str


@dataclass(frozen=True)
class Peer:
    """What a runtime under test does its own way."""

    name: str  # VersionResponse.runtime_name
    subnet: str | None = None  # every pod IP is in it, when known
    memory_cgroup: Callable[[str], str] | None = None  # container/sandbox ID -> v1 memory dir


def containerd_peer(ctd: containerd.Containerd, *, pod_subnet: str) -> Peer:
    """containerd, its pods in POD_SUBNET, its cgroups under the sandboxes' parent."""
    def memory_cgroup(ident: str) -> str:
        return os.path.join(containerd.CGROUP_ROOT, "memory", ctd.cgroup_parent.lstrip("/"),
                            ident)
    return Peer(name="containerd", subnet=pod_subnet, memory_cgroup=memory_cgroup)


def subnet(tag: str, *, first: int = 200) -> str:
    """A /24 of 10.FIRST.0.0/13 picked by the tag, so concurrent tests do not share one."""
    h = hashlib.sha256(tag.encode()).digest()
    return f"10.{first + h[0] % 8}.{h[1]}.0/24"


def sandbox_config(node: Node, name: str) -> pb.PodSandboxConfig:
    uid = str(uuid.uuid4())
    log_dir = os.path.join(node.log_dir, f"default_{name}_{uid}")
    os.makedirs(log_dir, exist_ok=True)  # kubelet makes it; the runtime does not
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace="default"),
        hostname=name, log_directory=log_dir, labels={"corral.test": node.tag},
        linux=pb.LinuxPodSandboxConfig(
            cgroup_parent=node.cgroup_parent,
            security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=pb.NamespaceOption(network=pb.POD, pid=pb.CONTAINER,
                                                     ipc=pb.POD))))


def container_config(image: str, name: str, command: list[str]) -> pb.ContainerConfig:
    return pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name=name), image=pb.ImageSpec(image=image),
        command=command, log_path=f"{name}.log", labels={"container": name},
        linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(
            namespace_options=pb.NamespaceOption(network=pb.POD, pid=pb.CONTAINER,
                                                 ipc=pb.POD))))


async def until(what: str, check: Callable[[], Awaitable[bool]], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


def conditions(status: pb.StatusResponse) -> dict[str, bool]:
    return {c.type: c.status for c in status.status.conditions}


def read_log(path: str) -> list[tuple[str, str, str]]:
    """(stream, tag, text) per CRI log line; every timestamp must be RFC 3339 (nanos)."""
    out = []
    with open(path) as f:
        for line in f.read().splitlines():
            m = CRI_LOG_LINE.match(line)
            assert m, f"{path}: not a CRI log line: {line!r}"
            assert RFC3339_NANO.match(m.group(1)), f"{path}: bad timestamp: {line!r}"
            out.append((m.group(2), m.group(3), m.group(4)))
    return out


async def images(cri: CRIClient, *, image: str, root: str) -> str:
    """Pull IMAGE (not there yet) and check what ImageStatus, ListImages and ImageFsInfo
    say of it (the image filesystem is under the runtime's ROOT); returns its ID."""
    spec = pb.ImageSpec(image=image)
    assert not (await cri.image_status(spec)).HasField("image")
    ref = await cri.pull_image(spec)
    assert ref == containerd.busybox_image().config.digest  # the image ID is the config's
    status = (await cri.image_status(spec)).image
    assert status.id == ref
    assert image in status.repo_tags
    assert status.size > 0
    repo = image.rsplit(":", 1)[0]
    assert f"{repo}@{containerd.busybox_image().manifest.digest}" in status.repo_digests
    assert ref in [i.id for i in await cri.list_images()]
    assert [i.id for i in await cri.list_images(pb.ImageFilter(image=spec))] == [ref]
    assert (await cri.image_fs_info()).image_filesystems[0].fs_id.mountpoint.startswith(root)
    return ref


async def remove_image(cri: CRIClient, *, image: str, ref: str) -> None:
    spec = pb.ImageSpec(image=image)
    await cri.remove_image(spec)
    assert not (await cri.image_status(spec)).HasField("image")
    assert ref not in [i.id for i in await cri.list_images()]
    await cri.remove_image(spec)  # idempotent, as CRI requires


async def pod_lifecycle(cri: CRIClient, *, peer: Peer, node: Node, image: str) -> None:
    """A pod of two containers from run to remove (IMAGE pulled, the network ready)."""
    sandbox = sandbox_config(node, "web")
    pod = await cri.run_pod_sandbox(sandbox)
    st = (await cri.pod_sandbox_status(pod)).status
    assert st.state == pb.SANDBOX_READY
    assert st.metadata.name == "web" and st.labels["corral.test"] == node.tag
    assert st.network.ip, "no pod IP"
    if peer.subnet:
        assert st.network.ip.startswith(peer.subnet.rsplit(".", 1)[0] + "."), st.network.ip
    assert [p.id for p in await cri.list_pod_sandbox(pb.PodSandboxFilter(
        label_selector={"corral.test": node.tag}))] == [pod]

    main = container_config(image, "main", ["sh", "-c", "echo hello; sleep 30"])
    cid = await cri.create_container(pod, main, sandbox_config=sandbox)
    assert (await cri.container_status(cid)).status.state == pb.CONTAINER_CREATED
    await cri.start_container(cid)
    status = (await cri.container_status(cid)).status
    assert status.state == pb.CONTAINER_RUNNING and status.started_at > 0
    assert status.log_path == os.path.join(sandbox.log_directory, "main.log")

    async def said_hello() -> bool:
        return os.path.exists(status.log_path) and \
            ("stdout", "F", "hello") in read_log(status.log_path)
    await until("hello in the container's log", said_hello)

    out = await cri.exec_sync(cid, ["echo", "hi"], timeout=10)
    assert (out.stdout, out.stderr, out.exit_code) == (b"hi\n", b"", 0)
    out = await cri.exec_sync(cid, ["sh", "-c", "echo oops >&2; hostname; exit 7"],
                              timeout=10)
    assert (out.stdout, out.stderr, out.exit_code) == (b"web\n", b"oops\n", 7)
    listed = await cri.list_containers(pb.ContainerFilter(pod_sandbox_id=pod))
    assert [(c.id, c.state) for c in listed] == [(cid, pb.CONTAINER_RUNNING)]

    await cri.update_container_resources(cid, pb.LinuxContainerResources(
        memory_limit_in_bytes=64 << 20))
    if peer.memory_cgroup:
        limit = os.path.join(peer.memory_cgroup(cid), "memory.limit_in_bytes")
        if os.path.exists(limit):  # cgroup v1 (this machine); v2 names it memory.max
            with open(limit) as f:
                assert int(f.read()) == 64 << 20
    await cri.reopen_container_log(cid)
    stats = await cri.container_stats(cid)
    assert stats.attributes.id == cid and stats.memory.working_set_bytes.value > 0
    assert cid in [s.attributes.id for s in await cri.list_container_stats()]
    for url in (await cri.exec(cid, ["sh"]), await cri.attach(cid),
                await cri.port_forward(pod, [80])):
        assert url.startswith("http://127.0.0.1:"), url

    # sh is PID 1 of its PID namespace and has no SIGTERM handler: only SIGKILL ends it.
    started = time.monotonic()
    await cri.stop_container(cid, timeout=1)
    assert time.monotonic() - started >= 1
    status = (await cri.container_status(cid)).status
    assert (status.state, status.exit_code) == (pb.CONTAINER_EXITED, 137)
    assert status.finished_at >= status.started_at

    graceful = container_config(
        image, "graceful",
        ["sh", "-c", "trap 'echo bye; exit 3' TERM; echo trapped; sleep 30 & wait"])
    gid = await cri.create_container(pod, graceful, sandbox_config=sandbox)
    await cri.start_container(gid)
    log_path = (await cri.container_status(gid)).status.log_path
    deadline = time.monotonic() + 20
    while not (os.path.exists(log_path)  # sh's trap is in place
               and ("stdout", "F", "trapped") in read_log(log_path)):
        assert time.monotonic() < deadline, "the graceful container never set its trap"
        await asyncio.sleep(0.02)
    await cri.stop_container(gid, timeout=20)
    status = (await cri.container_status(gid)).status
    assert (status.state, status.exit_code) == (pb.CONTAINER_EXITED, 3), \
        (status.state, status.exit_code, status.reason, read_log(status.log_path))
    assert ("stdout", "F", "bye") in read_log(status.log_path)

    for c in (cid, gid):
        await cri.remove_container(c)
        with pytest.raises(NotFound):
            await cri.container_status(c)
    await cri.stop_pod_sandbox(pod)
    assert (await cri.pod_sandbox_status(pod)).status.state == pb.SANDBOX_NOTREADY
    await cri.stop_pod_sandbox(pod)  # idempotent
    await cri.remove_pod_sandbox(pod)
    with pytest.raises(NotFound):
        await cri.pod_sandbox_status(pod)
    assert await cri.list_pod_sandbox() == []
    if peer.memory_cgroup:
        assert not os.path.exists(peer.memory_cgroup(pod))
