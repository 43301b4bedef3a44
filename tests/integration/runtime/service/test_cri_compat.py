"""The compatibility test: one CRI scenario through CRIClient, against corral-runtimed and
against containerd 1.6's CRI plugin, with the same assertions.

The scenario is cri_scenario.py's, the one test_cri_containerd.py runs against containerd
alone. What the two runtimes do their own way is their ``Peer``: the runtime's name, its
pod subnet, and (containerd's) where a container's cgroup is.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from runtime.service.cri.client import CRIClient
from tests.integration.runtime.service import cri_scenario, test_runtimed
from tests.integration.runtime.service.cri_scenario import (
    busybox,
    conditions,
    registry,
    until,
)
from tests.integration.runtime.service.test_runtimed import Runtimed, need_root
from tests.support.containerd import Containerd
from tests.support.registry import Registry

__all__ = ["busybox", "registry", "subnet_of"]  # the fixtures; subnet_of for test_streaming
PEERS = ("corral-runtimed", "containerd")


@pytest.fixture(params=PEERS)
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
    """containerd's pod subnet here (test_streaming.py uses it too)."""
    return cri_scenario.subnet(tag, first=216)


def network(kind: str, rt: Any) -> cri_scenario.Peer:
    """Write RT's CNI conflist; returns what is its own."""
    if kind == "containerd":
        rt.write_cni_conflist(subnet=subnet_of(rt.tag))
        return cri_scenario.containerd_peer(rt, pod_subnet=subnet_of(rt.tag))
    rt.write_cni_conflist()
    return cri_scenario.Peer(name="corral", subnet=test_runtimed.subnet(rt.tag))


@pytest.mark.asyncio
async def test_same_scenario(peer: tuple[str, Any], busybox: str) -> None:
    kind, rt = peer
    own = network(kind, rt)
    async with CRIClient(rt.socket, timeout=60) as cri:
        v = await cri.version()
        assert (v.runtime_name, v.runtime_api_version) == (own.name, "v1")

        async def network_ready() -> bool:
            return conditions(await cri.status()) == {"RuntimeReady": True,
                                                      "NetworkReady": True}
        await until("NetworkReady", network_ready)

        ref = await cri_scenario.images(cri, image=busybox, root=rt.root)
        await cri_scenario.pod_lifecycle(cri, peer=own, node=rt, image=busybox)
        await cri_scenario.remove_image(cri, image=busybox, ref=ref)
