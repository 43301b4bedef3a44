"""What a local cluster is made of: the plan (pure, from the flags) and the record of
what was made (DIR/state.json, written after every step so that `down` undoes exactly
that, whether `up` finished or failed half-way).

    plan(name="corral-local", nodes=3, subnet="10.99.0.0/24", directory=DIR) -> Plan
        bridge "corral-nodes" 10.99.0.1/24 on the host; the controlplane and the registry
        listen on 10.99.0.1
        node-1: netns corral-local-node-1, veth crl<h>v1 <-> eth0 10.99.0.11/24,
                pods 10.244.1.0/24 on bridge crlpod1, cgroups /corral-local-node-1
        each node one corral-node process (split_node: corral-runtimed + corral-agent)
        the controlplane's node lifecycle options (--node-monitor-grace-period,
        --node-eviction-rate) pass through as given ("": its defaults, 40s and 0.1/s)
    State(plan): processes (role, pid, start time), links, netns, context entries
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any

DEFAULT_NAME = "corral-local"
DEFAULT_SUBNET = "10.99.0.0/24"
DEFAULT_BRIDGE = "corral-nodes"
POD_SUPERNET = "10.244.0.0/16"
API_PORT = 6443
REGISTRY_PORT = 5000
AGENT_PORT = 10250  # the node API (logs, exec, stats): mutual TLS
AGENT_HTTP_PORT = 10255  # /healthz and /metrics, plain HTTP (Prometheus scrapes it)
FIRST_NODE_HOST = 11  # node-1 is .11, node-2 .12, ...
MAX_NODES = 50
IFNAMSIZ = 15
_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")


class PlanError(ValueError):
    """A flag that cannot make a cluster: names the flag."""


@dataclass(frozen=True)
class NodePlan:
    name: str
    index: int
    ip: str  # the node's address on the bridge
    netns: str  # ip netns name (/run/netns/<netns>)
    veth_host: str  # host side, on the bridge; the node side is renamed eth0
    veth_peer: str  # the node side's name before it moves into the netns
    pod_subnet: str
    pod_bridge: str  # inside the node's netns
    cgroup_parent: str
    dir: str

    @property
    def socket(self) -> str:
        return os.path.join(self.dir, "run", "cri.sock")


@dataclass(frozen=True)
class Plan:
    name: str
    dir: str
    subnet: str
    gateway: str  # the bridge's address: the controlplane and the registry listen here
    prefix_len: int
    bridge: str
    nodes: tuple[NodePlan, ...]
    node_monitor_grace_period: str = ""  # a duration for corral-controlplane ("40s")
    node_eviction_rate: str = ""  # nodes per second ("0.1")
    split_node: bool = False  # corral-runtimed + corral-agent per node, not corral-node

    @property
    def controlplane_flags(self) -> list[str]:
        """The options passed through to corral-controlplane."""
        out = []
        if self.node_monitor_grace_period:
            out += ["--node-monitor-grace-period", self.node_monitor_grace_period]
        if self.node_eviction_rate:
            out += ["--node-eviction-rate", self.node_eviction_rate]
        return out

    @property
    def api_server(self) -> str:
        return f"{self.gateway}:{API_PORT}"

    @property
    def registry(self) -> str:
        return f"{self.gateway}:{REGISTRY_PORT}"


def _short(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:8]


_DURATION = re.compile(r"(\d+(\.\d+)?(h|ms|m|s))+|\d+(\.\d+)?")


def plan(*, name: str, nodes: int, subnet: str, directory: str,
         node_monitor_grace_period: str = "", node_eviction_rate: str = "",
         split_node: bool = False) -> Plan:
    """The names and addresses of a cluster; raises PlanError naming the flag."""
    if node_monitor_grace_period and not _DURATION.fullmatch(node_monitor_grace_period):
        raise PlanError(f"--node-monitor-grace-period {node_monitor_grace_period!r}: not a "
                        "duration (e.g. 40s, 1m30s, 500ms)")
    if node_eviction_rate:
        try:
            rate = float(node_eviction_rate)
        except ValueError:
            rate = 0.0
        if not rate > 0:
            raise PlanError(f"--node-eviction-rate {node_eviction_rate!r}: must be a number "
                            "> 0")
    if not _NAME.fullmatch(name) or len(name) > 40:
        raise PlanError(f"--name {name!r}: must be lower-case letters, digits and '-', "
                        "at most 40 characters")
    if not 1 <= nodes <= MAX_NODES:
        raise PlanError(f"--nodes: must be between 1 and {MAX_NODES}, got {nodes}")
    try:
        net = ipaddress.IPv4Network(subnet, strict=True)
    except ValueError as err:
        raise PlanError(f"--subnet {subnet!r}: {err}") from None
    if net.num_addresses < FIRST_NODE_HOST + nodes + 1:
        raise PlanError(f"--subnet {subnet}: too small for {nodes} nodes (.{FIRST_NODE_HOST} "
                        "onwards)")
    if net.overlaps(ipaddress.IPv4Network(POD_SUPERNET)):
        raise PlanError(f"--subnet {subnet}: overlaps the pod networks {POD_SUPERNET}")
    directory = os.path.abspath(directory)
    h = _short(name)
    bridge = DEFAULT_BRIDGE if name == DEFAULT_NAME else f"crl{h}br"
    hosts = list(net.hosts())
    made = []
    for i in range(1, nodes + 1):
        node = f"node-{i}"
        made.append(NodePlan(
            name=node, index=i, ip=str(net.network_address + FIRST_NODE_HOST + i - 1),
            netns=f"{name}-{node}", veth_host=f"crl{h}v{i}", veth_peer=f"crl{h}p{i}",
            pod_subnet=f"10.244.{i}.0/24", pod_bridge=f"crlpod{i}",
            cgroup_parent=f"/{name}-{node}", dir=os.path.join(directory, "nodes", node)))
    for n in made:
        for link in (n.veth_host, n.veth_peer, n.pod_bridge):
            assert len(link) <= IFNAMSIZ, link
    return Plan(name=name, dir=directory, subnet=str(net), gateway=str(hosts[0]),
                prefix_len=net.prefixlen, bridge=bridge, nodes=tuple(made),
                node_monitor_grace_period=node_monitor_grace_period,
                node_eviction_rate=node_eviction_rate, split_node=split_node)


def overlapping(subnet: str, addresses: list[tuple[str, str]]) -> list[str]:
    """Which of the host's (device, address/prefix) already sit in SUBNET."""
    net = ipaddress.IPv4Network(subnet)
    out = []
    for dev, cidr in addresses:
        try:
            other = ipaddress.IPv4Interface(cidr).network
        except ValueError:
            continue
        if other.overlaps(net):
            out.append(f"{cidr} on {dev}")
    return out


@dataclass
class Proc:
    role: str  # etcd, registry, controlplane, node (corral-node); split: runtimed, agent
    node: str  # "" for cluster-wide processes
    pid: int
    start_time: int  # /proc/PID/stat field 22: tells a reused PID from ours
    log: str


@dataclass
class State:
    """What exists now. Saved to DIR/state.json after every change."""

    name: str
    dir: str
    bridge: str = ""  # set once made
    gateway: str = ""
    prefix_len: int = 24
    netns: list[str] = field(default_factory=list)
    veths: list[str] = field(default_factory=list)
    cgroups: list[str] = field(default_factory=list)  # cgroup parents (relative paths)
    processes: list[Proc] = field(default_factory=list)
    context_file: str = ""  # the user's config we merged entries into ("" : none)
    context: str = ""
    ready: bool = False

    @property
    def path(self) -> str:
        return os.path.join(self.dir, "state.json")

    def save(self) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(asdict(self), f, indent=1)
        os.replace(tmp, self.path)

    @classmethod
    def load(cls, directory: str) -> State | None:
        path = os.path.join(directory, "state.json")
        try:
            with open(path) as f:
                doc: dict[str, Any] = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: not a cluster state: {err}") from None
        procs = [Proc(**p) for p in doc.pop("processes", [])]
        try:
            return cls(processes=procs, **doc)
        except TypeError as err:
            raise ValueError(f"{path}: not a cluster state: {err}") from None

    def pids(self, role: str) -> list[Proc]:
        return [p for p in self.processes if p.role == role]
