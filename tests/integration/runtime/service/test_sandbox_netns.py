"""StopPodSandbox's network teardown when the sandbox's namespace file is no longer mounted:
the real plugins (bridge, host-local, loopback, portmap) get DEL without CNI_NETNS, the IP
goes back to host-local and the stale file is removed; a second teardown is a no-op."""

from __future__ import annotations

import ctypes
import json
import os

from runtime.service.cni import netns
from runtime.service.sandboxes import CNINetwork
from tests.integration.runtime.service.test_cni import (  # noqa: F401 (fixtures)
    PLUGIN_DIR,
    Node,
    node,
    pytestmark,
    sh,
)

MNT_DETACH = 2


def test_teardown_of_an_unmounted_netns_releases_the_ip(node: Node) -> None:  # noqa: F811
    att, result = node.pod("stale")
    ip = str(result.primary_ip())
    assert node.allocated() == [ip]
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    assert libc.umount2(att.netns.encode(), MNT_DETACH) == 0, os.strerror(ctypes.get_errno())
    assert os.path.exists(att.netns) and not netns.is_netns(att.netns)
    conf_dir = node.tmp / "net.d"
    conf_dir.mkdir()
    (conf_dir / "10-test.conflist").write_text(json.dumps(node.net.conf.to_json()))
    plugin = CNINetwork(conf_dir=str(conf_dir), bin_dirs=[PLUGIN_DIR],
                        cache_dir=str(node.tmp / "cache"), netns_dir=str(node.tmp / "netns"))
    plugin.teardown(att.container_id, att.netns)
    assert node.allocated() == []
    assert node.net.cached(att.container_id) is None
    assert not os.path.exists(att.netns)
    # the host end of the veth went with the namespace: nothing is left on the bridge
    assert sh("ip", "-o", "link", "show", "master", node.bridge, check=False).stdout == ""
    plugin.teardown(att.container_id, att.netns)  # StopPodSandbox retried: still fine
