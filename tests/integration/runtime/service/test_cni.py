"""Pod networking with the real plugins (bridge, host-local, loopback, portmap from
/usr/lib/cni) and real network namespaces, as root.

Each test gets its own bridge (``cr<tag>``), pod subnet, host-local dataDir, cache dir and
netns dir; traffic goes only to pod IPs on that bridge and to 127.0.0.1. Teardown detaches
what is attached, removes the namespaces and the bridge, and checks that no veth, IPAM
entry, mount or iptables rule of ours is left.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from runtime.service.cni import (
    Attachment,
    NetnsError,
    Network,
    PluginError,
    Result,
    bridge_conflist,
    netns,
    parse_conflist,
    plugin_stdin,
    run_plugin,
)
from runtime.service.cni.exec import Invocation

PLUGIN_DIR = "/usr/lib/cni"
IPTABLES = shutil.which("iptables")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and links"),
    pytest.mark.skipif(not os.path.exists(f"{PLUGIN_DIR}/bridge"),
                       reason="containernetworking-plugins is not installed"),
]


def sh(*args: str, check: bool = True, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=timeout)


def ping(target: str, *, from_netns: str | None = None) -> bool:
    cmd = ["busybox", "ping", "-c1", "-W1", target]
    if from_netns:
        cmd = ["nsenter", f"--net={from_netns}", *cmd]
    return subprocess.run(cmd, capture_output=True, timeout=10).returncode == 0


def iptables_mentions(text: str) -> list[str]:
    if not IPTABLES:
        return []
    out = []
    for table in ("nat", "filter"):
        rules = sh("iptables-save", "-t", table, check=False).stdout
        out += [line for line in rules.splitlines() if text in line]
    return out


@dataclass
class Node:
    """One test's network: bridge, subnet, IPAM dir, cache, netns dir, what is attached."""

    tag: str
    tmp: Path
    bridge: str
    subnet: ipaddress.IPv4Network
    net: Network
    attached: list[Attachment] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)

    @property
    def ipam_dir(self) -> Path:
        return self.tmp / "ipam" / self.net.name

    def allocated(self) -> list[str]:
        """IPs host-local has on record (its dataDir holds one file per address)."""
        if not self.ipam_dir.exists():
            return []
        return sorted(n for n in os.listdir(self.ipam_dir) if _is_ip(n))

    def pod(self, name: str, **capability_args: object) -> tuple[Attachment, Result]:
        path = netns.create(f"{self.tag}-{name}", root=str(self.tmp / "netns"))
        self.namespaces.append(path)
        att = Attachment(container_id=f"{self.tag}-{name}", netns=path, ifname="eth0",
                         capability_args=capability_args)
        self.attached.append(att)
        return att, self.net.add(att)

    def cleanup(self) -> list[str]:
        problems = []
        for att in self.attached:
            try:
                self.net.delete(att)
            except PluginError as e:
                problems.append(f"DEL {att.container_id}: {e}")
        for path in self.namespaces:
            netns.remove(path)
        veths = sh("ip", "-o", "link", "show", "master", self.bridge, check=False).stdout
        if veths.strip():
            problems.append(f"veths left on {self.bridge}: {veths}")
        sh("ip", "link", "del", self.bridge, check=False)
        if self.allocated():
            problems.append(f"IPs left in host-local's store: {self.allocated()}")
        if iptables_mentions(self.tag):
            problems.append(f"iptables rules left: {iptables_mentions(self.tag)}")
        return problems


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _subnet(tag: str) -> ipaddress.IPv4Network:
    """A /24 in 10.100.0.0-10.227.255.0 from the tag that no route on the host overlaps."""
    h = hashlib.sha256(tag.encode()).digest()
    routes = sh("ip", "-4", "route", "show", "table", "all").stdout
    for i in range(0, 30, 2):
        net = ipaddress.IPv4Network(f"10.{100 + h[i] % 128}.{h[i + 1]}.0/24")
        if not any(_overlaps(net, line.split()[0]) for line in routes.splitlines()):
            return net
    pytest.skip("no free /24 for a test bridge")


def _overlaps(net: ipaddress.IPv4Network, dst: str) -> bool:
    if dst in ("default", "broadcast", "local", "unreachable"):
        return False
    try:
        return net.overlaps(ipaddress.ip_network(dst, strict=False))
    except ValueError:
        return False


@pytest.fixture
def node(request: pytest.FixtureRequest, tag: str, tmp_path: Path,
         leak_check: None) -> Iterator[Node]:
    """Options (indirect parametrization): {"ip_masq": False}, {"loopback": True} (the
    conflist chains the loopback plugin after the bridge, as conflists written for other
    runtimes do; the default has none: netns.create brings ``lo`` up)."""
    options = getattr(request, "param", {})
    bridge = "cr" + tag[-10:]
    subnet = _subnet(tag)
    conf = bridge_conflist(subnets=[str(subnet)], name=tag, bridge=bridge,
                           data_dir=str(tmp_path / "ipam"), port_map=IPTABLES is not None,
                           ip_masq=options.get("ip_masq", IPTABLES is not None))
    if options.get("loopback"):
        conf["plugins"].insert(1, {"type": "loopback"})
    net = Network(parse_conflist(json.dumps(conf), source=f"{tag}.conflist"),
                  plugin_dirs=[PLUGIN_DIR], cache_dir=str(tmp_path / "cache"))
    n = Node(tag=tag, tmp=tmp_path, bridge=bridge, subnet=subnet, net=net)
    try:
        yield n
    finally:
        problems = n.cleanup()
    assert not problems, "; ".join(problems)


@pytest.mark.parametrize("node", [pytest.param({}, id="default"),
                                  pytest.param({"loopback": True}, id="loopback-plugin")],
                         indirect=True)
def test_two_pods_get_distinct_ips_and_reach_each_other_and_the_host(node: Node) -> None:
    a, ra = node.pod("a")
    b, rb = node.pod("b")
    ip_a, ip_b = ra.primary_ip(), rb.primary_ip()
    assert ip_a is not None and ip_b is not None and ip_a != ip_b
    assert ip_a in node.subnet and ip_b in node.subnet
    gateway = ra.sandbox_ips(a.netns)[0].gateway
    assert gateway is not None and gateway in node.subnet
    assert [i.name for i in ra.interfaces if i.sandbox == a.netns] == ["eth0"]
    assert any(i.name == node.bridge for i in ra.interfaces)
    assert sorted(node.allocated()) == sorted([str(ip_a), str(ip_b)])
    # the interface is really there, with that address, and lo is up (by netns.create, and
    # again by the loopback plugin when the conflist has it)
    addrs = sh("nsenter", f"--net={a.netns}", "ip", "-o", "-4", "addr", "show").stdout
    by_dev = {line.split()[1]: line.split()[3] for line in addrs.splitlines()}
    assert by_dev == {"lo": "127.0.0.1/8", "eth0": f"{ip_a}/24"}
    assert ping(str(ip_b), from_netns=a.netns)
    assert ping(str(ip_a), from_netns=b.netns)
    assert ping(str(ip_a))  # the node reaches the pod through the bridge
    assert ping("127.0.0.1", from_netns=a.netns)


def test_del_frees_the_ip_and_is_idempotent_and_netns_removal_leaves_nothing(
        node: Node) -> None:
    a, ra = node.pod("a")
    ip_a = str(ra.primary_ip())
    assert node.allocated() == [ip_a]
    host_veths = sh("ip", "-o", "link", "show", "master", node.bridge).stdout
    assert host_veths.count("\n") == 1
    node.net.delete(a)
    assert node.allocated() == []
    assert node.net.cached(a.container_id) is None
    assert sh("ip", "-o", "link", "show", "master", node.bridge).stdout == ""
    assert sh("nsenter", f"--net={a.netns}", "ip", "link", "show", "eth0",
              check=False).returncode != 0
    node.net.delete(a)  # a second DEL succeeds
    netns.remove(a.netns)
    assert not os.path.exists(a.netns)
    assert not netns.is_mounted(a.netns)
    node.net.delete(a)  # and a DEL after the namespace is gone, too
    assert not ping(ip_a)


def test_del_after_a_crash_between_plugins_cleans_what_exists(node: Node) -> None:
    path = netns.create(f"{node.tag}-crash", root=str(node.tmp / "netns"))
    node.namespaces.append(path)
    att = Attachment(container_id=f"{node.tag}-crash", netns=path)
    bridge = node.net.conf.plugins[0]
    # the runtime ran bridge's ADD, then died before the rest and before caching anything
    out = run_plugin("bridge", inv=Invocation(command="ADD", container_id=att.container_id,
                                              netns=path, ifname="eth0",
                                              path=(PLUGIN_DIR,)),
                     stdin=plugin_stdin(node.net.conf, bridge), network=node.net.name)
    assert out is not None and len(node.allocated()) == 1
    assert node.net.cached(att.container_id) is None
    node.net.delete(att)
    assert node.allocated() == []
    assert sh("ip", "-o", "link", "show", "master", node.bridge).stdout == ""


# bridge 1.1.1 finds the ipMasq rules to remove from the addresses of the pod's interface:
# once someone has deleted that interface, its DEL leaves them. Not a case for ipMasq here.
@pytest.mark.parametrize("node", [pytest.param({"ip_masq": False}, id="no-masq")],
                         indirect=True)
def test_check_passes_after_add_and_fails_once_the_veth_is_gone(node: Node) -> None:
    a, _ = node.pod("a")
    node.net.check(a)
    sh("nsenter", f"--net={a.netns}", "ip", "link", "del", "eth0")
    with pytest.raises(PluginError) as e:
        node.net.check(a)
    assert e.value.plugin == "bridge" and e.value.container == a.container_id
    assert e.value.network == node.net.name


def test_version_probe_of_the_real_plugins(node: Node) -> None:
    versions = node.net.versions()
    assert set(versions) >= {"bridge"}
    assert all("1.0.0" in v.supported_versions for v in versions.values())


def test_a_plugin_error_from_the_real_bridge_is_surfaced(node: Node, tag: str) -> None:
    bad = parse_conflist(json.dumps({
        "cniVersion": "1.0.0", "name": f"{tag}-bad",
        "plugins": [{"type": "bridge", "bridge": node.bridge,
                     "ipam": {"type": "host-local", "dataDir": str(node.tmp / "ipam"),
                              "ranges": [[{"subnet": "not-a-subnet"}]]}}]}))
    net = Network(bad, plugin_dirs=[PLUGIN_DIR], cache_dir=str(node.tmp / "cache"))
    path = netns.create(f"{tag}-bad", root=str(node.tmp / "netns"))
    node.namespaces.append(path)
    with pytest.raises(PluginError) as e:
        net.add(Attachment(container_id=f"{tag}-bad", netns=path))
    assert e.value.plugin == "bridge" and e.value.command == "ADD"
    assert e.value.msg and f"network {tag}-bad, container {tag}-bad" in str(e.value)
    assert sh("nsenter", f"--net={path}", "ip", "link", "show", "eth0",
              check=False).returncode != 0  # undone


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080)); s.listen(5)
while True:
    c, _ = s.accept(); c.sendall(b"hello from the pod"); c.close()
"""


@contextlib.contextmanager
def pod_server(path: str, tag: str) -> Iterator[None]:
    proc = subprocess.Popen(["nsenter", f"--net={path}", sys.executable, "-c", SERVER, tag])
    try:
        yield
    finally:
        proc.kill()
        proc.wait()


def _fetch(host: str, port: int, deadline: float) -> bytes:
    while True:
        try:
            with socket.create_connection((host, port), timeout=1) as c:
                return c.recv(100)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.skipif(IPTABLES is None, reason="iptables is not installed (portmap needs it)")
def test_portmap_forwards_a_host_port_to_the_pod(node: Node) -> None:
    host_port = _free_port()
    a, ra = node.pod("web", portMappings=[{"hostPort": host_port, "containerPort": 8080,
                                           "protocol": "tcp"}])
    pod_ip = str(ra.primary_ip())
    assert any(node.tag in rule for rule in iptables_mentions(node.tag))
    with pod_server(a.netns, node.tag):
        assert _fetch(pod_ip, 8080, time.monotonic() + 10) == b"hello from the pod"
        gateway = str(ra.sandbox_ips(a.netns)[0].gateway)
        assert _fetch(gateway, host_port, time.monotonic() + 5) == b"hello from the pod"
        assert _fetch("127.0.0.1", host_port, time.monotonic() + 5) == b"hello from the pod"
    node.net.delete(a)
    assert iptables_mentions(node.tag) == []


def test_netns_create_and_remove(tag: str, tmp_path: Path, leak_check: None) -> None:
    root = str(tmp_path / "netns")
    path = netns.create(f"{tag}-ns", root=root)
    try:
        assert netns.is_mounted(path)
        assert netns.list_names(root=root) == [f"{tag}-ns"]
        ours = os.stat("/proc/thread-self/ns/net").st_ino
        assert os.stat(path).st_ino != ours  # a namespace of its own
        assert os.readlink("/proc/thread-self/ns/net") == f"net:[{ours}]"  # we stayed put
        links = sh("nsenter", f"--net={path}", "ip", "-o", "link").stdout
        assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"]
        assert "state UNKNOWN" in links and ",UP," in links  # lo is up, with 127.0.0.1
        assert ping("127.0.0.1", from_netns=path)
        with pytest.raises(NetnsError, match="already exists"):
            netns.create(f"{tag}-ns", root=root)
        with pytest.raises(NetnsError, match="name must be"):
            netns.create("../escape", root=root)
    finally:
        netns.remove(path)
    assert not os.path.exists(path) and not netns.is_mounted(path)
    netns.remove(path)  # idempotent
    assert netns.list_names(root=root) == []


def test_netns_create_can_leave_lo_down(tag: str, tmp_path: Path, leak_check: None) -> None:
    path = netns.create(f"{tag}-down", root=str(tmp_path / "netns"), lo_up=False)
    try:
        links = sh("nsenter", f"--net={path}", "ip", "-o", "link").stdout
        assert "state DOWN" in links and ",UP" not in links  # as `ip netns add` leaves it
        assert not ping("127.0.0.1", from_netns=path)
    finally:
        netns.remove(path)
