"""Our CRI client against containerd 1.6's CRI plugin: proof that api.proto is CRI's wire.

One docker-registry for the module holds a busybox image (also the sandbox image); each
test starts its own containerd (tests/support/containerd.py) with a private root, socket,
cgroup parent and CNI bridge, all named after the test's tag, and the leak check sees that
nothing of it is left.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import pytest_asyncio

from runtime.service.cri import api_pb2 as pb
from runtime.service.cri.client import (
    CallFailed,
    CRIClient,
    CRIError,
    NotFound,
    Unavailable,
    Unimplemented,
)
from tests.support import containerd
from tests.support.containerd import Containerd
from tests.support.registry import Registry

pytestmark = pytest.mark.asyncio
CRI_LOG_LINE = re.compile(r"^(\S+) (stdout|stderr) ([PF]) (.*)$")
RFC3339_NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    with Registry() as reg:
        yield reg


@pytest.fixture(scope="module")
def busybox(registry: Registry) -> str:
    return containerd.push_busybox(registry)


@pytest.fixture
def ctd(tag: str, leak_check: None, registry: Registry, busybox: str) -> Iterator[Containerd]:
    reason = containerd.missing()
    if reason:
        pytest.skip(reason)
    with Containerd(tag=tag, sandbox_image=busybox, registries=[registry.host]) as c:
        yield c


@pytest_asyncio.fixture
async def cri(ctd: Containerd) -> AsyncIterator[CRIClient]:
    async with CRIClient(ctd.socket, timeout=60) as client:
        yield client


def subnet(tag: str) -> str:
    """A /24 of 10.200.0.0/13 picked by the tag, so concurrent tests do not share one."""
    h = hashlib.sha256(tag.encode()).digest()
    return f"10.{200 + h[0] % 8}.{h[1]}.0/24"


def sandbox_config(ctd: Containerd, name: str) -> pb.PodSandboxConfig:
    uid = str(uuid.uuid4())
    log_dir = os.path.join(ctd.log_dir, f"default_{name}_{uid}")
    os.makedirs(log_dir, exist_ok=True)  # kubelet makes it; the runtime does not
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace="default"),
        hostname=name, log_directory=log_dir, labels={"corral.test": ctd.tag},
        linux=pb.LinuxPodSandboxConfig(
            cgroup_parent=ctd.cgroup_parent,
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


async def test_version_and_status(cri: CRIClient, ctd: Containerd) -> None:
    v = await cri.version()
    assert (v.version, v.runtime_name, v.runtime_api_version) == ("0.1.0", "containerd", "v1")
    assert v.runtime_version.startswith("1.6.")
    before = await cri.status()
    assert conditions(before) == {"RuntimeReady": True, "NetworkReady": False}
    reason = {c.type: c.reason for c in before.status.conditions}["NetworkReady"]
    assert reason == "NetworkPluginNotReady"  # no CNI config yet
    ctd.write_cni_conflist(subnet=subnet(ctd.tag))

    async def network_ready() -> bool:
        return conditions(await cri.status())["NetworkReady"]
    await until("NetworkReady after the conflist is written", network_ready)
    verbose = await cri.status(verbose=True)
    assert json.loads(verbose.info["config"])["sandboxImage"] == ctd.sandbox_image


async def test_images(cri: CRIClient, ctd: Containerd, busybox: str) -> None:
    spec = pb.ImageSpec(image=busybox)
    assert not (await cri.image_status(spec)).HasField("image")
    ref = await cri.pull_image(spec)
    config_digest = containerd.busybox_image().config.digest
    assert ref == config_digest  # containerd's image ID is the config digest
    image = (await cri.image_status(spec)).image
    assert image.id == ref
    assert busybox in image.repo_tags
    assert image.size > 0
    manifest_digest = containerd.busybox_image().manifest.digest
    repo = busybox.rsplit(":", 1)[0]
    assert f"{repo}@{manifest_digest}" in image.repo_digests
    assert ref in [i.id for i in await cri.list_images()]
    filtered = await cri.list_images(pb.ImageFilter(image=spec))
    assert [i.id for i in filtered] == [ref]
    fs = (await cri.image_fs_info()).image_filesystems
    assert fs[0].fs_id.mountpoint.startswith(ctd.root)
    await cri.remove_image(spec)
    assert not (await cri.image_status(spec)).HasField("image")
    assert ref not in [i.id for i in await cri.list_images()]
    await cri.remove_image(spec)  # idempotent, as CRI requires


@pytest.mark.parametrize(("call", "error", "name"), [
    pytest.param(lambda c, img: c.pull_image(pb.ImageSpec(image=img + "-missing")),
                 NotFound, "PullImage", id="pull-unknown-tag"),
    pytest.param(lambda c, img: c.pull_image(pb.ImageSpec(image="127.0.0.1:1/none:1")),
                 CallFailed, "PullImage", id="pull-registry-down"),
    pytest.param(lambda c, img: c.container_status("0" * 64), NotFound, "ContainerStatus",
                 id="status-unknown-container"),
    pytest.param(lambda c, img: c.start_container("nope"), NotFound, "StartContainer",
                 id="start-unknown-container"),
    pytest.param(lambda c, img: c.pod_sandbox_status("nope"), NotFound, "PodSandboxStatus",
                 id="status-unknown-sandbox"),
    pytest.param(lambda c, img: anext(aiter(c.container_events())), Unimplemented,
                 "GetContainerEvents", id="events-unimplemented-in-1.6"),
])
async def test_errors(cri: CRIClient, busybox: str, call: Callable[[CRIClient, str],
                      Awaitable[object]], error: type[CRIError], name: str) -> None:
    with pytest.raises(error) as info:
        await call(cri, busybox)
    assert info.value.call == name
    assert str(info.value).startswith(f"CRI {name}")
    assert info.value.details


async def test_unreachable_socket(tmp_path: object) -> None:
    async with CRIClient(os.path.join(str(tmp_path), "none.sock"), timeout=5) as client:
        with pytest.raises(Unavailable, match=r"^CRI Version: UNAVAILABLE: "):
            await client.version()


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


async def test_pod_lifecycle(cri: CRIClient, ctd: Containerd, busybox: str) -> None:
    ctd.write_cni_conflist(subnet=subnet(ctd.tag))
    await cri.pull_image(pb.ImageSpec(image=busybox))
    sandbox = sandbox_config(ctd, "web")
    pod = await cri.run_pod_sandbox(sandbox)
    st = (await cri.pod_sandbox_status(pod)).status
    assert st.state == pb.SANDBOX_READY
    assert st.metadata.name == "web" and st.labels["corral.test"] == ctd.tag
    net = subnet(ctd.tag).rsplit(".", 1)[0]
    assert st.network.ip.startswith(net + "."), st.network.ip
    assert [p.id for p in await cri.list_pod_sandbox(pb.PodSandboxFilter(
        label_selector={"corral.test": ctd.tag}))] == [pod]

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
    await until("hello in the container's log", said_hello)

    out = await cri.exec_sync(cid, ["echo", "hi"], timeout=10)
    assert (out.stdout, out.stderr, out.exit_code) == (b"hi\n", b"", 0)
    out = await cri.exec_sync(cid, ["sh", "-c", "echo oops >&2; exit 7"], timeout=10)
    assert (out.stdout, out.stderr, out.exit_code) == (b"", b"oops\n", 7)
    listed = await cri.list_containers(pb.ContainerFilter(pod_sandbox_id=pod))
    assert [(c.id, c.state) for c in listed] == [(cid, pb.CONTAINER_RUNNING)]

    await cri.update_container_resources(cid, pb.LinuxContainerResources(
        memory_limit_in_bytes=64 << 20))
    limit = os.path.join(containerd.CGROUP_ROOT, "memory", ctd.cgroup_parent.lstrip("/"), cid,
                         "memory.limit_in_bytes")
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
        busybox, "graceful", ["sh", "-c", "trap 'echo bye; exit 3' TERM; sleep 30 & wait"])
    gid = await cri.create_container(pod, graceful, sandbox_config=sandbox)
    await cri.start_container(gid)
    await asyncio.sleep(0.3)  # let sh install its trap
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
    await cri.stop_pod_sandbox(pod)  # idempotent
    await cri.remove_pod_sandbox(pod)
    with pytest.raises(NotFound):
        await cri.pod_sandbox_status(pod)
    assert await cri.list_pod_sandbox() == []
    assert not os.path.exists(os.path.join(containerd.CGROUP_ROOT, "memory",
                                           ctd.cgroup_parent.lstrip("/"), pod))
