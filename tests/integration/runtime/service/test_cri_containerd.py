"""Our CRI client against containerd 1.6's CRI plugin: proof that api.proto is CRI's wire.

One docker-registry for the module holds a busybox image (also the sandbox image); each
test starts its own containerd (tests/support/containerd.py) with a private root, socket,
cgroup parent and CNI bridge, all named after the test's tag, and the leak check sees that
nothing of it is left. The image and pod scenarios are cri_scenario.py's, which
test_cri_compat.py runs against corral-runtimed too.
"""

from __future__ import annotations

import json
import os
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
from tests.integration.runtime.service import cri_scenario
from tests.integration.runtime.service.cri_scenario import (
    busybox,
    conditions,
    container_config,
    registry,
    sandbox_config,
    subnet,
    until,
)
from tests.support import containerd
from tests.support.containerd import Containerd
from tests.support.registry import Registry

# registry and busybox are this module's fixtures; container_config, sandbox_config, subnet
# and until are imported from here by test_streaming.py, test_agent_containerd.py and
# bench/pod_startup.py.
__all__ = ["busybox", "container_config", "registry", "sandbox_config", "subnet", "until"]
pytestmark = pytest.mark.asyncio


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
    ref = await cri_scenario.images(cri, image=busybox, root=ctd.root)
    await cri_scenario.remove_image(cri, image=busybox, ref=ref)


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


async def test_pod_lifecycle(cri: CRIClient, ctd: Containerd, busybox: str) -> None:
    ctd.write_cni_conflist(subnet=subnet(ctd.tag))
    await cri.pull_image(pb.ImageSpec(image=busybox))
    peer = cri_scenario.containerd_peer(ctd, pod_subnet=subnet(ctd.tag))
    await cri_scenario.pod_lifecycle(cri, peer=peer, node=ctd, image=busybox)
