"""What the bridge plugin cannot undo without the pod's namespace: its ipMasq rules.

    bridge ADD (ipMasq)   nat POSTROUTING: -s <pod ip> -j CNI-<hash>   /* name: "N" id: "ID" */
                          chain CNI-<hash>: ACCEPT to the subnet, MASQUERADE the rest
    bridge DEL, no netns  releases the IP (IPAM) but learns the pod's addresses from the veth
                          inside the namespace, so with the namespace gone the rules stay
    drop(network, id)     deletes the POSTROUTING rules tagged with that network and ID
                          (newest first, by line number) and flushes + deletes their chains

Only ``iptables`` is run (from PATH, as the plugins run it); without it there is nothing to do.
"""

from __future__ import annotations

import shutil
import subprocess

from runtime.service.cni.config import NetworkConfigList


def uses_masquerade(conf: NetworkConfigList) -> bool:
    return any(p.type == "bridge" and bool(p.raw.get("ipMasq")) for p in conf.plugins)


def _iptables(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["iptables", "-w", "5", "-t", "nat", *args], capture_output=True,
                          text=True, check=False, timeout=30)


def drop(network: str, container_id: str) -> list[str]:
    """Remove the masquerade rules and chains the bridge made for CONTAINER_ID on NETWORK;
    returns the chains removed."""
    if shutil.which("iptables") is None:
        return []
    tag = f'/* name: "{network}" id: "{container_id}" */'
    listed = _iptables("-L", "POSTROUTING", "-n", "--line-numbers")
    rules = []
    for line in listed.stdout.splitlines():
        fields = line.split()
        if line.rstrip().endswith(tag) and fields and fields[0].isdigit():
            rules.append((int(fields[0]), fields[1]))
    chains = []
    for num, target in sorted(rules, reverse=True):
        _iptables("-D", "POSTROUTING", str(num))
        if target.startswith("CNI-") and target not in chains:
            chains.append(target)
    for chain in chains:
        _iptables("-F", chain)
        _iptables("-X", chain)
    return chains
