"""Which namespaces a pod's containers join: the pod network through the pause process
(its pinned file may be unmounted while the pod lives), ipc and uts of the pause."""

from __future__ import annotations

import pytest

from runtime.service.sandboxes import Sandbox, SandboxSpec, SandboxState


def sandbox(*, netns: str, pid: int, host: bool = False, standalone: bool = False) -> Sandbox:
    spec = SandboxSpec(name="web", uid="u", namespace="d", host_network=host,
                       standalone=standalone)
    return Sandbox(id="s1", tenant="k8s.io", spec=spec, state=SandboxState.READY,
                   created_at_ns=1, netns=netns, pause_pid=pid)


@pytest.mark.parametrize(("sb", "want"), [
    pytest.param(sandbox(netns="/run/corral/netns/s1", pid=42),
                 {"network": "/proc/42/ns/net", "ipc": "/proc/42/ns/ipc",
                  "uts": "/proc/42/ns/uts"}, id="pod-network-through-the-pause"),
    pytest.param(sandbox(netns="/run/corral/netns/s1", pid=0),
                 {"network": "/run/corral/netns/s1"}, id="no-pause-yet-the-pinned-file"),
    pytest.param(sandbox(netns="", pid=42, host=True),
                 {"network": "/proc/1/ns/net", "ipc": "/proc/42/ns/ipc",
                  "uts": "/proc/42/ns/uts"}, id="host-network"),
    pytest.param(sandbox(netns="", pid=0, standalone=True), {}, id="standalone"),
])
def test_join_namespaces(sb: Sandbox, want: dict[str, str]) -> None:
    assert dict(sb.join_namespaces()) == want
