"""Which namespaces a pod's containers join: without a pause, the pinned files (netns, ipc,
uts); with one, the pod network through the pause process (its pinned file may be unmounted
while the pod lives), ipc and uts (and pid, when shared) of the pause."""

from __future__ import annotations

import pytest

from runtime.service.sandboxes import Sandbox, SandboxSpec, SandboxState

PINS = (("ipc", "/pins/s1/ipc"), ("uts", "/pins/s1/uts"))


def sandbox(*, netns: str, pid: int, host: bool = False, standalone: bool = False,
            pins: tuple[tuple[str, str], ...] = (), share_pid: bool = False) -> Sandbox:
    spec = SandboxSpec(name="web", uid="u", namespace="d", host_network=host,
                       standalone=standalone, share_pid=share_pid)
    return Sandbox(id="s1", tenant="k8s.io", spec=spec, state=SandboxState.READY,
                   created_at_ns=1, netns=netns, pause_pid=pid, namespaces=pins)


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
    pytest.param(sandbox(netns="/run/corral/netns/s1", pid=0, pins=PINS),
                 {"network": "/run/corral/netns/s1", "ipc": "/pins/s1/ipc",
                  "uts": "/pins/s1/uts"}, id="no-pause-the-pinned-files"),
    pytest.param(sandbox(netns="", pid=0, host=True, pins=PINS),
                 {"network": "/proc/1/ns/net", "ipc": "/pins/s1/ipc", "uts": "/pins/s1/uts"},
                 id="no-pause-host-network"),
    pytest.param(sandbox(netns="/run/corral/netns/s1", pid=42, share_pid=True),
                 {"network": "/proc/42/ns/net", "ipc": "/proc/42/ns/ipc",
                  "uts": "/proc/42/ns/uts", "pid": "/proc/42/ns/pid"},
                 id="shared-pid-through-the-pause"),
])
def test_join_namespaces(sb: Sandbox, want: dict[str, str]) -> None:
    assert dict(sb.join_namespaces()) == want
