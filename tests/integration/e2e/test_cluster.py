"""`clusterctl cluster up` / `cluster down` for real: etcd, a controlplane, a registry and
two nodes, each in its own network namespace with its own corral-node (the runtime
service and the agent in one process); a Deployment spread over both; the example `make up`
applies (manifests/examples/web.yaml, unchanged) rolls out and serves its page; then `down`
leaves nothing. Logs, exec and the workload scenarios are test_workloads.py's.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
CLUSTERCTL = os.path.join(ROOT, ".venv", "bin", "clusterctl")
EXAMPLE = os.path.join(ROOT, "manifests", "examples", "web.yaml")  # what `make up` applies

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: sleeper}
spec:
  replicas: 2
  selector: {matchLabels: {app: sleeper}}
  template:
    metadata: {labels: {app: sleeper}}
    spec:
      terminationGracePeriodSeconds: 2
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector: {matchLabels: {app: sleeper}}
            topologyKey: kubernetes.io/hostname
      containers:
      - name: main
        image: busybox:1.36
        command: ["sleep", "3600"]
"""


def need_host() -> None:
    if os.geteuid() != 0:
        pytest.skip("cluster up needs root")
    for tool in ("etcd", "docker-registry", "nsenter", "busybox"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")


def subnet_for(tag: str) -> str:
    """A /24 of the tag's own (10.96-10.98), away from make up's 10.99.0.0/24."""
    h = hashlib.sha256(tag.encode()).digest()
    return f"10.{96 + h[0] % 3}.{h[1]}.0/24"


class Cluster:
    def __init__(self, tag: str, tmp: str) -> None:
        self.tag = tag
        self.dir = tempfile.mkdtemp(prefix=f"{tag}-", dir="/tmp")  # short socket paths
        self.tmp = tmp
        self.user_config = os.path.join(tmp, "user-config")
        self.env = {**os.environ, "CORRAL_CONFIG": self.user_config}
        self.kubeconfig = os.path.join(self.dir, "config")

    def ctl(self, *args: str, timeout: float = 180, check: bool = True,
            ) -> subprocess.CompletedProcess[str]:
        p = subprocess.run([CLUSTERCTL, *args], env=self.env, text=True, timeout=timeout,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL)
        if check and p.returncode != 0:
            raise AssertionError(f"clusterctl {' '.join(args)} exited {p.returncode}:\n"
                                 f"{p.stdout}{self.logs()}")
        return p

    def up(self, *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.ctl("cluster", "up", "--nodes", "2", "--name", self.tag, "--dir",
                        self.dir, "--subnet", subnet_for(self.tag), *extra, check=check)

    def down(self) -> subprocess.CompletedProcess[str]:
        return self.ctl("cluster", "down", "--dir", self.dir, check=False, timeout=120)

    def get(self, *args: str) -> Any:
        return json.loads(self.ctl("--config", self.kubeconfig, "get", *args, "-o",
                                   "json").stdout)

    def state(self) -> dict[str, Any]:
        with open(os.path.join(self.dir, "state.json")) as f:
            doc: dict[str, Any] = json.load(f)
        return doc

    def logs(self) -> str:
        out = []
        for dirpath, _, files in os.walk(self.dir):
            for name in files:
                if name.endswith(".log"):
                    with open(os.path.join(dirpath, name), errors="replace") as f:
                        tail = [ln for ln in f if "DEBUG" not in ln][-8:]
                    out.append(f"--- {name} ({dirpath})\n" + "".join(tail))
        return "\n".join(out)


@pytest.fixture
def cluster(tag: str, tmp_path: Any, leak_check: None) -> Iterator[Cluster]:
    need_host()
    c = Cluster(tag, str(tmp_path))
    try:
        yield c
    finally:
        c.down()
        shutil.rmtree(c.dir, ignore_errors=True)


def until(what: str, check: Any, cluster: Cluster, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last "
                                 f"{got!r}\n{cluster.logs()}")
        time.sleep(0.3)


def running_pods(c: Cluster) -> list[dict[str, Any]] | None:
    pods = c.get("pods", "-l", "app=sleeper")["items"]
    ok = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"
          and p["status"].get("podIP")]
    return ok if len(ok) == 2 else None


def netns_inode(name: str) -> int:
    return os.stat(f"/run/netns/{name}").st_ino


def alive(pid: int, start: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    fields = data[data.rindex(b")") + 2:].split()
    return int(fields[19]) == start and fields[0] != b"Z"


def leftovers(c: Cluster, state: dict[str, Any]) -> list[str]:
    """Everything of the cluster that still exists."""
    left = [f"netns {n}" for n in os.listdir("/run/netns") if c.tag in n] \
        if os.path.isdir("/run/netns") else []
    left += [f"link {link}" for link in [state["bridge"], *state["veths"]]
             if os.path.exists(f"/sys/class/net/{link}")]
    left += [f"process {p['role']} {p['pid']}" for p in state["processes"]
             if alive(p["pid"], p["start_time"])]
    with open("/proc/self/mountinfo") as f:
        left += [f"mount {line.split()[4]}" for line in f
                 if c.dir in line.split()[4] or c.tag in line.split()[4]]
    for top in os.listdir("/sys/fs/cgroup"):
        left += [f"cgroup {top}/{d}" for d in os.listdir(os.path.join("/sys/fs/cgroup", top))
                 if c.tag in d] if os.path.isdir(os.path.join("/sys/fs/cgroup", top)) else []
    if os.path.exists(c.dir):
        left.append(f"dir {c.dir}: {os.listdir(c.dir)}")
    return left


def test_cluster_up_runs_a_spread_deployment_and_down_leaves_nothing(
        cluster: Cluster) -> None:
    c = cluster
    with open(c.user_config, "w") as f:  # the user's own context survives up and down
        yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "mine",
                        "clusters": [{"name": "mine", "cluster": {"server": "127.0.0.1:1"}}],
                        "users": [{"name": "me", "user": {"token": "t"}}],
                        "contexts": [{"name": "mine", "context": {"cluster": "mine",
                                                                  "user": "me"}}]}, f)
    out = c.up().stdout
    assert f"Cluster {c.tag} is up (2 nodes Ready" in out, out
    with open(c.user_config) as f:
        merged = yaml.safe_load(f)
    assert merged["current-context"] == c.tag
    assert sorted(x["name"] for x in merged["contexts"]) == sorted(["mine", c.tag])

    # each node is a network namespace of its own, with its agent and runtime inside
    state = c.state()
    assert len(state["netns"]) == 2
    for proc in state["processes"]:
        if proc["role"] in ("node", "agent", "runtimed"):
            ns = f"{c.tag}-{proc['node']}"
            assert os.stat(f"/proc/{proc['pid']}/ns/net").st_ino == netns_inode(ns), proc

    # get nodes through the merged context (no --config): 2 Ready, with their own IPs
    nodes = json.loads(c.ctl("get", "nodes", "-o", "json").stdout)["items"]
    ready = {n["metadata"]["name"]: n for n in nodes if {x["type"]: x["status"] for x in
             n["status"]["conditions"]}.get("Ready") == "True"}
    assert sorted(ready) == ["node-1", "node-2"]
    prefix = subnet_for(c.tag).rsplit(".", 1)[0]
    ips = {name: next(a["address"] for a in n["status"]["addresses"]
                  if a["type"] == "InternalIP") for name, n in ready.items()}
    assert ips == {"node-1": f"{prefix}.11", "node-2": f"{prefix}.12"}, ips
    table = c.ctl("get", "nodes").stdout
    assert table.count(" Ready ") == 2, table

    # a Deployment of 2 busybox sleep replicas runs, one per node, with pod IPs
    manifest = os.path.join(c.tmp, "deployment.yaml")
    with open(manifest, "w") as f:
        f.write(DEPLOYMENT)
    c.ctl("--config", c.kubeconfig, "apply", "-f", manifest)
    pods = until("2 sleeper pods Running", lambda: running_pods(c), c, timeout=90)
    by_node = {p["spec"]["nodeName"]: p for p in pods}
    assert sorted(by_node) == ["node-1", "node-2"], [p["spec"].get("nodeName") for p in pods]
    for node, pod in by_node.items():
        i = node.split("-")[1]
        assert pod["status"]["podIP"].startswith(f"10.244.{i}."), (node, pod["status"])
        cs = pod["status"]["containerStatuses"][0]
        assert cs["ready"] is True and cs["restartCount"] == 0, cs

    # node-1 reaches its own pod over its pod bridge, node-2's pod through node-2
    for pod in pods:
        ping = subprocess.run(["nsenter", f"--net=/run/netns/{c.tag}-node-1", "/bin/busybox",
                               "ping", "-c", "1", "-W", "3", pod["status"]["podIP"]],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=10)
        assert ping.returncode == 0, (pod["spec"]["nodeName"], ping.stdout)

    # the example `make up` applies, as it applies it: its pods become Ready only once
    # busybox httpd serves the ConfigMap's page to the readiness probe's httpGet
    c.ctl("--config", c.kubeconfig, "apply", "-f", EXAMPLE)
    c.ctl("--config", c.kubeconfig, "rollout", "status", "deployment/web", "--timeout",
          "120s", timeout=150)
    web = [p for p in c.get("pods", "-l", "app=web")["items"]
           if {x["type"]: x["status"] for x in p["status"].get("conditions") or []}.get(
               "Ready") == "True"]
    assert len(web) == 3, [p["status"] for p in web]
    fetch = ("import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("
             f"'http://{web[0]['status']['podIP']}:8080/', timeout=5).read().decode())")
    page = subprocess.run(["nsenter", f"--net=/run/netns/{c.tag}-node-1", sys.executable,
                           "-c", fetch], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=15)
    assert page.returncode == 0 and "<h1>hello from corral</h1>" in page.stdout, page.stdout

    # down removes everything it made, and again is a no-op
    p = c.down()
    assert p.returncode == 0 and f"Cluster {c.tag} is down" in p.stdout, p.stdout
    assert leftovers(c, state) == []
    with open(c.user_config) as f:
        after = yaml.safe_load(f)
    assert after["current-context"] == "" and [x["name"] for x in after["contexts"]] == [
        "mine"]
    again = c.down()
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout


def test_cluster_up_that_fails_rolls_back_everything(cluster: Cluster) -> None:
    c = cluster
    p = c.up("--no-context", "--timeout", "0.01", check=False)
    assert p.returncode == 1, p.stdout
    assert "error: cluster up: timed out after 0.01s waiting for 2 Ready nodes" in p.stdout
    assert "removing what was made" in p.stdout
    assert not os.path.exists(c.user_config)
    state = {"bridge": f"crl{hashlib.sha256(c.tag.encode()).hexdigest()[:8]}br",
             "veths": [], "processes": []}
    assert leftovers(c, state) == []


def test_cluster_up_refuses_a_subnet_in_use(cluster: Cluster) -> None:
    c = cluster
    p = c.ctl("cluster", "up", "--nodes", "1", "--name", c.tag, "--dir", c.dir,
              "--subnet", "127.0.0.0/24", "--no-context", check=False)
    assert p.returncode == 1
    assert "error: cluster up: --subnet 127.0.0.0/24: already in use here: 127.0.0.1/8 on lo" \
        in p.stdout, p.stdout
    assert not os.path.exists(os.path.join(c.dir, "state.json"))
