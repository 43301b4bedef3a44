"""`cluster up`: make the network, start the processes, write the context, wait for the
nodes. Every step records what it made in the State before it moves on; on any error
`down.teardown(state)` removes it all and the error is raised again."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
import urllib.error
import urllib.request
from typing import Any, TextIO

from clusterctl.cluster import context, image, system
from clusterctl.cluster.state import (
    AGENT_HTTP_PORT,
    AGENT_PORT,
    NodePlan,
    Plan,
    Proc,
    State,
    overlapping,
)
from clusterctl.cluster.system import ClusterError, in_netns, sh, spawn, wait_for

CNI_BIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
PAUSE = ("corral/pause", "1")
IMAGES = [("busybox", "1.36"), ("busybox", "latest"), PAUSE]
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _bin(name: str) -> str:
    """A corral launcher next to this interpreter (.venv/bin), else one on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), name)
    return here if os.path.exists(here) else (shutil.which(name) or name)


def check_host(p: Plan) -> None:
    """What must hold before anything is made; raises ClusterError saying what is wrong."""
    if os.geteuid() != 0:
        raise ClusterError("cluster up needs root (network namespaces, bridges, cgroups)")
    for tool in ("etcd", "docker-registry", "nsenter", "ip", "busybox"):
        if shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
            raise ClusterError(f"{tool} is not installed (make deps installs it)")
    if not any(os.path.exists(os.path.join(d, "bridge")) for d in CNI_BIN_DIRS):
        raise ClusterError("the CNI plugins are not installed (containernetworking-plugins)")
    if system.link_exists(p.bridge):
        raise ClusterError(f"bridge {p.bridge} already exists: is a cluster running? "
                           "(clusterctl cluster down)")
    clash = overlapping(p.subnet, system.host_addresses())
    if clash:
        raise ClusterError(f"--subnet {p.subnet}: already in use here: {', '.join(clash)}")
    for n in p.nodes:
        if system.netns_exists(n.netns):
            raise ClusterError(f"node {n.name}: network namespace {n.netns} already exists")


def free_ports(n: int) -> list[int]:
    """N distinct free ports on 127.0.0.1: every socket is held until all are bound, so
    two picks can never return the same port."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


def _http_ok(url: str, *, any_status: bool = False) -> bool:
    try:
        with _OPENER.open(url, timeout=2) as r:
            return bool(r.status == 200 or any_status)
    except urllib.error.HTTPError:
        return any_status
    except OSError:
        return False


# ---- the steps ------------------------------------------------------------------------


def make_network(p: Plan, st: State) -> None:
    """The bridge with the gateway address, and per node a netns with a veth into it, a
    default route to the bridge and a route to every other node's pods."""
    sh("ip", "link", "add", p.bridge, "type", "bridge")
    st.bridge = p.bridge
    st.save()
    sh("ip", "addr", "add", f"{p.gateway}/{p.prefix_len}", "dev", p.bridge)
    sh("ip", "link", "set", p.bridge, "up")
    for n in p.nodes:
        sh("ip", "netns", "add", n.netns)
        st.netns.append(n.netns)
        st.save()
        sh("ip", "link", "add", n.veth_host, "type", "veth", "peer", "name", n.veth_peer)
        st.veths.append(n.veth_host)
        st.save()
        sh("ip", "link", "set", n.veth_peer, "netns", n.netns)
        sh("ip", "link", "set", n.veth_host, "master", p.bridge, "up")
        ns = ("ip", "-n", n.netns)
        sh(*ns, "link", "set", n.veth_peer, "name", "eth0")
        sh(*ns, "addr", "add", f"{n.ip}/{p.prefix_len}", "dev", "eth0")
        sh(*ns, "link", "set", "eth0", "up")
        sh(*ns, "link", "set", "lo", "up")
        sh(*ns, "route", "add", "default", "via", p.gateway)
        for other in p.nodes:  # pods reach pods on other nodes through their node
            if other is not n:
                sh(*ns, "route", "add", other.pod_subnet, "via", other.ip)


def start_etcd(p: Plan, st: State) -> str:
    client, peer = free_ports(2)
    url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    proc = spawn(["etcd", "--name", p.name, "--data-dir", os.path.join(p.dir, "etcd"),
                  "--listen-client-urls", url, "--advertise-client-urls", url,
                  "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                  "--initial-cluster", f"{p.name}={peer_url}", "--initial-cluster-state", "new",
                  "--log-level", "warn", "--logger", "zap"],
                 log=os.path.join(p.dir, "logs", "etcd.log"), role="etcd")
    st.processes.append(proc)
    st.save()

    def healthy() -> bool:
        try:
            with _OPENER.open(f"{url}/health", timeout=1) as r:
                return bool(json.loads(r.read()).get("health") == "true")
        except (OSError, ValueError):
            return False
    wait_for("etcd to be healthy", healthy, timeout=30, proc=proc)
    return url


def start_registry(p: Plan, st: State) -> None:
    d = os.path.join(p.dir, "registry")
    os.makedirs(d, exist_ok=True)
    config = os.path.join(d, "config.yml")
    with open(config, "w") as f:
        f.write(f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
                f"storage:\n  filesystem:\n    rootdirectory: {d}/data\n"
                f"http:\n  addr: {p.registry}\n  secret: {os.urandom(16).hex()}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    proc = spawn(["docker-registry", "serve", config], log=os.path.join(p.dir, "logs",
                 "registry.log"), role="registry", env=env)
    st.processes.append(proc)
    st.save()
    wait_for(f"the registry on {p.registry}", lambda: _http_ok(
        f"http://{p.registry}/v2/", any_status=True), timeout=20, proc=proc)
    image.push_busybox(f"http://{p.registry}", IMAGES)


def start_controlplane(p: Plan, st: State, *, etcd_url: str) -> str:
    data = os.path.join(p.dir, "controlplane")
    http = f"127.0.0.1:{free_port()}"
    proc = spawn([_bin("corral-controlplane"), "--etcd-endpoints", etcd_url,
                  "--listen", p.api_server, "--http-listen", http, "--data-dir", data,
                  "--leader-elect", "true", "--workers", "1", *p.controlplane_flags],
                 log=os.path.join(p.dir, "logs", "controlplane.log"), role="controlplane")
    st.processes.append(proc)
    st.save()
    admin = os.path.join(data, "admin.conf")
    wait_for("the controlplane to be ready", lambda: _http_ok(f"http://{http}/readyz")
             and os.path.exists(admin), timeout=60, proc=proc)
    return admin


def runtimed_config(p: Plan, n: NodePlan) -> str:
    bins = ", ".join(f'"{d}"' for d in CNI_BIN_DIRS if os.path.isdir(d))
    run = os.path.join(n.dir, "run")
    return (f'root = "{n.dir}/root"\nstate = "{run}/state"\nsocket = "{n.socket}"\n'
            f'sandbox_image = "{p.registry}/{PAUSE[0]}:{PAUSE[1]}"\n'
            f'default_registry = "{p.registry}"\n\n'
            f'[registries."{p.registry}"]\nplain_http = true\n\n'
            f'[cni]\nbin_dirs = [{bins}]\nconf_dir = "{n.dir}/cni"\n'
            f'cache_dir = "{run}/cni-cache"\nnetns_dir = "{run}/netns"\n')


def pod_network(p: Plan, n: NodePlan) -> dict[str, Any]:
    """The node's pod network: a bridge of its own, host-local addresses from its subnet
    (no loopback plugin: the node's runtime brings each pod's ``lo`` up itself)."""
    return {"cniVersion": "1.0.0", "name": f"{p.name}-pods", "plugins": [
        {"type": "bridge", "bridge": n.pod_bridge, "isGateway": True, "ipMasq": True,
         "ipam": {"type": "host-local", "dataDir": os.path.join(n.dir, "run", "ipam"),
                  "ranges": [[{"subnet": n.pod_subnet}]],
                  "routes": [{"dst": "0.0.0.0/0"}]}},
        {"type": "portmap", "capabilities": {"portMappings": True}}]}


def write_node_files(p: Plan, n: NodePlan) -> str:
    """The node's dirs, its runtime config and CNI network; the config's path."""
    for d in ("cni", "run", "root", "agent"):
        os.makedirs(os.path.join(n.dir, d), exist_ok=True)
    config = os.path.join(n.dir, "runtimed.toml")
    with open(config, "w") as f:
        f.write(runtimed_config(p, n))
    with open(os.path.join(n.dir, "cni", "10-pods.conflist"), "w") as f:
        json.dump(pod_network(p, n), f, indent=1)
    return config


def start_runtimed(p: Plan, st: State, *, n: NodePlan) -> None:
    config = write_node_files(p, n)
    st.cgroups.append(n.cgroup_parent)
    proc = spawn(in_netns(n.netns, [_bin("corral-runtimed"), "--config", config]),
                 log=os.path.join(n.dir, "runtimed.log"), role="runtimed", node=n.name)
    st.processes.append(proc)
    st.save()


def _serving(path: str) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(path)
            return True
        except OSError:
            return False


def pull_sandbox_image(p: Plan, n: NodePlan, *, proc: Proc) -> None:
    """Once the node's runtime serves its socket: the pause image, which corral's runtime
    does not pull on demand."""
    wait_for(f"node {n.name}: the runtime service to serve {n.socket}",
             lambda: _serving(n.socket), timeout=60, proc=proc)
    sh(_bin("corral-ctr"), "--socket", n.socket, "-n", "k8s.io", "pull",
       f"{p.registry}/{PAUSE[0]}:{PAUSE[1]}")


def node_credentials(n: NodePlan, *, controlplane_dir: str) -> str:
    kubeconfig = os.path.join(n.dir, "node.conf")
    sh(_bin("corral-controlplane"), "issue-node-cert", "--data-dir", controlplane_dir,
       "--node", n.name, "--out", kubeconfig)
    return kubeconfig


def agent_flags(n: NodePlan, *, kubeconfig: str) -> list[str]:
    return ["--config", kubeconfig, "--node-name", n.name,
            "--root", os.path.join(n.dir, "agent"),
            "--listen", f"{n.ip}:{AGENT_PORT}", "--http-listen", f"{n.ip}:{AGENT_HTTP_PORT}",
            "--node-ip", n.ip, "--cgroup-parent", n.cgroup_parent]


def start_agent(p: Plan, st: State, *, n: NodePlan, controlplane_dir: str) -> None:
    runtimed = next(x for x in st.pids("runtimed") if x.node == n.name)
    pull_sandbox_image(p, n, proc=runtimed)
    kubeconfig = node_credentials(n, controlplane_dir=controlplane_dir)
    proc = spawn(in_netns(n.netns, [
        _bin("corral-agent"), *agent_flags(n, kubeconfig=kubeconfig),
        "--runtime-socket", n.socket]),
        log=os.path.join(n.dir, "agent.log"), role="agent", node=n.name)
    st.processes.append(proc)
    st.save()


def start_node(p: Plan, st: State, *, n: NodePlan, controlplane_dir: str) -> None:
    """corral-node in the node's netns: the runtime service and the agent in one process
    (the runtime's config as corral-runtimed has it; --runtime-socket the node's socket).
    It does not wait for the node: up() pulls the sandbox image into each node once all
    are started (a restarted node has it already)."""
    config = write_node_files(p, n)
    if n.cgroup_parent not in st.cgroups:
        st.cgroups.append(n.cgroup_parent)
    kubeconfig = node_credentials(n, controlplane_dir=controlplane_dir)
    proc = spawn(in_netns(n.netns, [
        _bin("corral-node"), *agent_flags(n, kubeconfig=kubeconfig),
        "--runtime-config", config, "--runtime-socket", n.socket]),
        log=os.path.join(n.dir, "node.log"), role="node", node=n.name)
    st.processes.append(proc)
    st.save()


def write_context(p: Plan, st: State, *, admin_conf: str, config_path: str | None) -> str:
    """DIR/config (this cluster only); merged into CONFIG_PATH unless it is None."""
    import yaml

    from clusterctl.commands.config import save
    with open(admin_conf) as f:
        ours = context.entries(yaml.safe_load(f), p.name)
    own = os.path.join(p.dir, "config")
    fd = os.open(own, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(ours, f, sort_keys=False)
    if config_path is not None:
        existing = None
        if os.path.exists(config_path):
            with open(config_path) as f:
                existing = yaml.safe_load(f)
        else:
            os.makedirs(os.path.dirname(config_path) or ".", mode=0o700, exist_ok=True)
        st.context_file, st.context = config_path, p.name
        st.save()
        save(config_path, context.merge(existing if isinstance(existing, dict) else None,
                                        ours))
    return own


def ready_nodes(client: Any) -> list[str]:
    names = []
    for node in client.list("nodes")["items"]:
        conds = {c.get("type"): c.get("status")
                 for c in (node.get("status") or {}).get("conditions") or []}
        if conds.get("Ready") == "True":
            names.append(node["metadata"]["name"])
    return sorted(names)


def wait_ready(p: Plan, st: State, *, config: str, timeout: float, since: float) -> None:
    """Every node Ready within TIMEOUT seconds of SINCE (time.monotonic() when the nodes
    were started): a node seen Ready only after that is too late."""
    from api import client as api_client
    c = api_client.Client(api_client.load_config(config))
    try:
        deadline = since + timeout
        want = sorted(n.name for n in p.nodes)
        ready: list[str] = []
        while True:
            try:
                ready = ready_nodes(c)
            except Exception:  # the API may not answer yet: asked again
                pass
            if ready == want and time.monotonic() <= deadline:
                return
            for proc in st.processes:
                if not system.alive(proc):
                    raise ClusterError(f"{proc.role} {proc.node} exited; {proc.log}:\n"
                                       f"{system.log_tail(proc.log)}")
            if time.monotonic() > deadline:
                raise ClusterError(f"timed out after {timeout:g}s waiting for {len(want)} "
                                   f"Ready nodes; ready: {ready or 'none'}")
            time.sleep(0.2)
    finally:
        c.close()


def up(p: Plan, *, config_path: str | None, timeout: float, out: TextIO) -> State:
    """Bring the cluster of plan P up; on error, tear down what was made and re-raise."""
    check_host(p)
    existing = State.load(p.dir)
    if existing is not None:
        raise ClusterError(f"{p.dir}: a cluster ({existing.name}) is recorded here; "
                           f"run `clusterctl cluster down --dir {p.dir}` first")
    os.makedirs(p.dir, exist_ok=True)
    st = State(name=p.name, dir=p.dir, gateway=p.gateway, prefix_len=p.prefix_len)
    st.save()
    started = time.monotonic()
    try:
        out.write(f"Creating network {p.bridge} {p.gateway}/{p.prefix_len} and "
                  f"{len(p.nodes)} node namespaces\n")
        make_network(p, st)
        out.write("Starting etcd, the registry (busybox image) and the controlplane\n")
        etcd_url = start_etcd(p, st)
        start_registry(p, st)
        admin = start_controlplane(p, st, etcd_url=etcd_url)
        cp_dir = os.path.dirname(admin)
        nodes_started = time.monotonic()  # --timeout counts from here
        if p.split_node:
            out.write(f"Starting {len(p.nodes)} nodes (corral-runtimed + corral-agent)\n")
            for n in p.nodes:
                start_runtimed(p, st, n=n)
            for n in p.nodes:
                start_agent(p, st, n=n, controlplane_dir=cp_dir)
        else:
            out.write(f"Starting {len(p.nodes)} nodes (corral-node)\n")
            for n in p.nodes:
                start_node(p, st, n=n, controlplane_dir=cp_dir)
            for n in p.nodes:  # all started, each pulls once it serves
                proc = next(x for x in st.pids("node") if x.node == n.name)
                pull_sandbox_image(p, n, proc=proc)
        own = write_context(p, st, admin_conf=admin, config_path=config_path)
        wait_ready(p, st, config=own, timeout=timeout, since=nodes_started)
        st.ready = True
        st.save()
    except BaseException:
        from clusterctl.cluster.down import teardown
        out.write("cluster up failed: removing what was made\n")
        teardown(st, out=out)
        raise
    out.write(summary(p, st, config_path=config_path, own=own,
                      seconds=time.monotonic() - started))
    return st


def summary(p: Plan, st: State, *, config_path: str | None, own: str, seconds: float) -> str:
    lines = [f"Cluster {p.name} is up ({len(p.nodes)} nodes Ready in {seconds:.1f}s)",
             f"  controlplane  {p.api_server}", f"  registry      {p.registry} "
             "(busybox:1.36)"]
    for n in p.nodes:
        pids = " ".join(f"{x.role}={x.pid}" for x in st.processes if x.node == n.name)
        lines.append(f"  {n.name:<12}  {n.ip:<12} netns {n.netns}  pods {n.pod_subnet}  {pids}")
    if config_path is not None:
        lines.append(f'Context "{p.name}" is now current in {config_path}')
    lines.append(f"  clusterctl --config {own} get nodes")
    lines.append(f"Stop it with: clusterctl cluster down --dir {p.dir}")
    return "\n".join(lines) + "\n"
