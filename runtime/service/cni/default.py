"""The node's default network: a bridge conflist written into the CNI conf dir.

    bridge (corral0, gateway, ipMasq, hairpin) + host-local IPAM over the pod subnet
      ─► portmap (capability ``portMappings``: hostPort -> pod port)

No ``loopback`` plugin: the runtime brings ``lo`` up when it makes the pod's namespace
(netns.create), which costs an ioctl where the plugin costs an exec per pod.
"""

from __future__ import annotations

import ipaddress
import json
import os
import tempfile
from collections.abc import Sequence
from typing import Any

from runtime.service.cni.errors import ConfigError

DEFAULT_NAME = "corral"
DEFAULT_BRIDGE = "corral0"
DEFAULT_FILE = "10-corral.conflist"


def bridge_conflist(*, subnets: Sequence[str], name: str = DEFAULT_NAME,
                    bridge: str = DEFAULT_BRIDGE, data_dir: str | None = None,
                    ip_masq: bool = True, port_map: bool = True, mtu: int | None = None,
                    cni_version: str = "1.0.0") -> dict[str, Any]:
    """The conflist as a dict. SUBNETS: the node's pod subnets (one per address family)."""
    where = f"network {name}"
    if not subnets:
        raise ConfigError(where, "subnets", "at least one pod subnet is required")
    ranges = []
    routes = []
    for i, text in enumerate(subnets):
        try:
            net = ipaddress.ip_network(text)
        except ValueError as e:
            raise ConfigError(where, f"subnets[{i}]", f"not a network in CIDR form: {e}") from None
        if net.num_addresses < 4:
            raise ConfigError(where, f"subnets[{i}]", f"{net} is too small for pods")
        ranges.append([{"subnet": str(net)}])
        routes.append({"dst": "0.0.0.0/0" if net.version == 4 else "::/0"})
    if not bridge or len(bridge) > 15 or "/" in bridge or any(c.isspace() for c in bridge):
        raise ConfigError(where, "bridge", f"not a valid interface name: {bridge!r}")
    ipam: dict[str, Any] = {"type": "host-local", "ranges": ranges, "routes": routes}
    if data_dir:
        ipam["dataDir"] = data_dir
    bridge_conf: dict[str, Any] = {"type": "bridge", "bridge": bridge, "isGateway": True,
                                   "ipMasq": ip_masq, "hairpinMode": True, "ipam": ipam}
    if mtu:
        bridge_conf["mtu"] = mtu
    plugins: list[dict[str, Any]] = [bridge_conf]
    if port_map:
        plugins.append({"type": "portmap", "capabilities": {"portMappings": True},
                        "snat": True})
    return {"cniVersion": cni_version, "name": name, "plugins": plugins}


def write_default(conf_dir: str, *, subnets: Sequence[str], filename: str = DEFAULT_FILE,
                  overwrite: bool = False, **options: Any) -> str:
    """Write the default conflist into CONF_DIR (atomically) unless a file of that name is
    already there and OVERWRITE is false; returns its path."""
    path = os.path.join(conf_dir, filename)
    if os.path.exists(path) and not overwrite:
        return path
    conf = bridge_conflist(subnets=subnets, **options)
    os.makedirs(conf_dir, mode=0o755, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=conf_dir, prefix=".tmp-", suffix=".partial")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(conf, f, indent=2)
            f.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path
