"""Workloads end to end on one real 3-node cluster, shared by the module (CI time):

    cluster up (3 nodes; node lifecycle grace 20 s, eviction rate 10/s)
      │  Deployment web (3 replicas, readiness probe, spread over the nodes,
      │  tolerationSeconds 2 for unreachable/not-ready), in file order:
      ├─ spreads over the 3 nodes and runs
      ├─ a container's process killed (SIGKILL from the host): restarted, restartCount 1
      ├─ a deleted pod: replaced
      ├─ rolling update to busybox:e2e-2 (pushed as a second tag): Ready pods, watched
      │  throughout, never below replicas - maxUnavailable
      ├─ scale to 0 and back to 3
      ├─ a Job completes; a DaemonSet runs on every node
      ├─ logs, exec (output, exit code, stdin) and top, through the controlplane
      ├─ kill -9 of an agent (corral-node: the node's one process, its runtime service
      │  with it): after it comes back, no container was restarted
      └─ a node whose agent and runtime stop (corral-node: SIGTERM): NotReady, its pods
         recreated elsewhere (last: the node stays down)
    cluster down; nothing is left

Everything a user would type goes through the CLI: `cluster up` (with
--node-monitor-grace-period and --node-eviction-rate), apply, scale, delete, logs, exec, top,
`cluster down`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from api import client as api_client
from api import errors
from clusterctl.cluster import image as cimage
from clusterctl.cluster import system
from clusterctl.cluster import up as cup
from clusterctl.cluster.state import Plan, Proc, State
from clusterctl.cluster.state import plan as make_plan
from tests.integration.e2e.test_cluster import leftovers, need_host, subnet_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
CLUSTERCTL = os.path.join(ROOT, ".venv", "bin", "clusterctl")
PYTHON = os.path.join(ROOT, ".venv", "bin", "python")
NODES = ["node-1", "node-2", "node-3"]
GRACE = 20  # --node-monitor-grace-period: above the agents' 10 s lease renewals


WEB = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  strategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 1, maxSurge: 1}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 2
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule,
         nodeTaintsPolicy: Honor, labelSelector: {matchLabels: {app: web}}}
      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute,
         tolerationSeconds: 2}
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute,
         tolerationSeconds: 2}
      containers:
      - name: main
        image: IMAGE
        command: ["sh", "-c", "sleep 1; touch /tmp/ready; exec sleep 3600"]
        readinessProbe:
          exec: {command: ["test", "-f", "/tmp/ready"]}
          periodSeconds: 1
"""

JOB = """
apiVersion: batch/v1
kind: Job
metadata: {name: once}
spec:
  completions: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - {name: main, image: "busybox:1.36", command: ["sh", "-c", "echo done"]}
"""

DAEMONSET = """
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: everywhere}
spec:
  selector: {matchLabels: {app: everywhere}}
  template:
    metadata: {labels: {app: everywhere}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {name: main, image: "busybox:1.36", command: ["sleep", "3600"]}
"""


class Cluster:
    """The module's cluster: its CLI, an API client, its processes."""

    def __init__(self) -> None:
        # not "corral-test-*": the leak checks of tests running meanwhile unmount whatever
        # "corral" mount appears during their run (this cluster's netns, rootfs); this
        # module checks its own leftovers at the end
        self.tag = f"e2e-{uuid.uuid4().hex[:10]}"
        self.dir = tempfile.mkdtemp(prefix=f"{self.tag}-", dir="/tmp")  # short socket paths
        self.kubeconfig = os.path.join(self.dir, "config")
        self.subnet = subnet_for(self.tag)
        self.children: list[Proc] = []  # processes this test started (reaped at the end)
        self._client: api_client.Client | None = None

    def plan(self) -> Plan:
        return make_plan(name=self.tag, nodes=len(NODES), subnet=self.subnet,
                         directory=self.dir, node_monitor_grace_period=f"{GRACE}s",
                         node_eviction_rate="10")

    def up(self) -> str:
        p = subprocess.run([CLUSTERCTL, "cluster", "up", "--name", self.tag, "--nodes",
                            str(len(NODES)), "--subnet", self.subnet, "--dir", self.dir,
                            "--no-context", "--timeout", "180",
                            "--node-monitor-grace-period", f"{GRACE}s",
                            "--node-eviction-rate", "10"],
                           cwd=ROOT, text=True, timeout=300, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        assert p.returncode == 0, f"cluster up exited {p.returncode}:\n{p.stdout}"
        return p.stdout

    def down(self) -> subprocess.CompletedProcess[str]:
        if self._client is not None:
            self._client.close()
            self._client = None
        return subprocess.run([CLUSTERCTL, "cluster", "down", "--dir", self.dir], text=True,
                              timeout=180, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL)

    def ctl(self, *args: str, stdin: str | None = None) -> str:
        p = subprocess.run([CLUSTERCTL, "--config", self.kubeconfig, *args], text=True,
                           input=stdin, timeout=120, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
        assert p.returncode == 0, f"clusterctl {' '.join(args)} exited {p.returncode}:\n" \
                                  f"{p.stdout}"
        return p.stdout

    def apply(self, manifest: str) -> None:
        self.ctl("apply", "-f", "-", stdin=manifest)

    @property
    def api(self) -> api_client.Client:
        if self._client is None:
            self._client = api_client.Client(api_client.load_config(self.kubeconfig))
        return self._client

    def pods(self, selector: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.api.list("pods", namespace="default",
                                                    label_selector=selector)["items"]
        return items

    def state(self) -> State:
        st = State.load(self.dir)
        assert st is not None
        return st

    def proc(self, role: str, node: str) -> Proc:
        live = [p for p in self.state().processes if p.role == role and p.node == node
                and system.alive(p)]
        assert len(live) == 1, (role, node, live)
        return live[0]

    def logs(self) -> str:
        out = []
        for dirpath, _, files in os.walk(self.dir):
            for name in files:
                if name.endswith(".log"):
                    with open(os.path.join(dirpath, name), errors="replace") as f:
                        tail = [ln for ln in f if " DEBUG " not in ln][-10:]
                    out.append(f"--- {name} ({dirpath})\n" + "".join(tail))
        return "\n".join(out)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    need_host()
    c = Cluster()
    try:
        out = c.up()
        assert f"Cluster {c.tag} is up (3 nodes Ready" in out, out
        yield c
    finally:
        state = State.load(c.dir)
        p = c.down()
        for proc in c.children:
            system.alive(proc)  # reaps it: `down` stopped it
        left = leftovers(c, {"bridge": state.bridge, "veths": state.veths,  # type: ignore[arg-type]
                             "processes": [vars(x) for x in state.processes]}) \
            if state is not None else []
        shutil.rmtree(c.dir, ignore_errors=True)
        assert p.returncode == 0, p.stdout
        assert left == [], left


def until(what: str, check: Callable[[], Any], c: Cluster, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    got: Any = None
    while True:
        try:
            got = check()
        except errors.APIError as err:
            if err.reason is not errors.Reason.NOT_FOUND:
                raise
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last "
                                 f"{got!r}\n{c.logs()}")
        time.sleep(0.5)


def is_ready(pod: dict[str, Any]) -> bool:
    conds = {x["type"]: x["status"] for x in (pod.get("status") or {}).get("conditions") or []}
    return conds.get("Ready") == "True" and not pod["metadata"].get("deletionTimestamp")


def ready_web(c: Cluster, n: int = 3) -> list[dict[str, Any]] | None:
    """Exactly N Ready web pods and no other (a rollout or a replacement has settled)."""
    pods = c.pods("app=web")
    ready = [p for p in pods if is_ready(p)]
    return ready if len(ready) == n == len(pods) else None


def main_status(pod: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = pod["status"]["containerStatuses"][0]
    return out


def host_pid(container_id: str, comm: str) -> int:
    """The host PID of the process COMM in the container (its cgroup names the ID)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                if container_id not in f.read():
                    continue
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == comm:
                    return int(pid)
        except OSError:
            continue
    raise AssertionError(f"no process {comm} in container {container_id}")


@pytest.fixture(scope="module")
def web(cluster: Cluster) -> Cluster:
    cluster.apply(WEB.replace("IMAGE", "busybox:1.36"))
    return cluster


def test_a_deployment_spreads_over_the_three_nodes_and_runs(web: Cluster) -> None:
    c = web
    pods = until("3 web pods Ready", lambda: ready_web(c), c, timeout=150)
    assert sorted(p["spec"]["nodeName"] for p in pods) == NODES
    for p in pods:
        cs = main_status(p)
        assert cs["ready"] is True and cs["started"] is True and cs["restartCount"] == 0, cs
        node = int(p["spec"]["nodeName"].split("-")[1])
        assert p["status"]["podIP"].startswith(f"10.244.{node}."), p["status"]
    table = c.ctl("get", "pods", "-l", "app=web")
    assert table.count(" Running ") == 3, table
    with open(f"/proc/{c.proc('controlplane', '').pid}/cmdline", "rb") as f:
        argv = f.read().decode().split("\0")
    assert argv[argv.index("--node-monitor-grace-period") + 1] == f"{GRACE}s", argv
    assert argv[argv.index("--node-eviction-rate") + 1] == "10", argv


def test_a_killed_container_process_is_restarted(web: Cluster) -> None:
    c = web
    pod = until("3 web pods Ready", lambda: ready_web(c), c)[0]
    name, cid = pod["metadata"]["name"], main_status(pod)["containerID"].partition("://")[2]
    # a line in the first instance's log, to be found with --previous after the restart
    c.ctl("exec", name, "-c", "main", "--", "sh", "-c", "echo first-instance >/proc/1/fd/1")
    until("the line in the log", lambda: "first-instance" in c.ctl("logs", name), c,
          timeout=30)
    os.kill(host_pid(cid, "sleep"), signal.SIGKILL)

    def restarted() -> dict[str, Any] | None:
        p = c.api.get("pods", name, namespace="default")
        cs = main_status(p)
        return cs if cs["restartCount"] == 1 and cs["ready"] and is_ready(p) else None

    cs = until(f"{name} restarted and Ready", restarted, c, timeout=60)
    assert cs["containerID"].partition("://")[2] != cid
    term = cs["lastState"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (137, "Error"), term
    # logs --previous -c: the killed instance's log; without --previous: the new one's
    assert "first-instance" in c.ctl("logs", name, "--previous", "-c", "main")
    assert "first-instance" not in c.ctl("logs", name, "-c", "main")


def test_a_deleted_pod_is_replaced(web: Cluster) -> None:
    c = web
    before = until("3 web pods Ready", lambda: ready_web(c), c)
    victim = before[0]["metadata"]["name"]
    c.ctl("delete", "pod", victim)
    after = until("3 web pods Ready again", lambda: (lambda ps: ps if ps and victim not in {
        p["metadata"]["name"] for p in ps} else None)(ready_web(c)), c)
    assert len({p["metadata"]["name"] for p in after} - {
        p["metadata"]["name"] for p in before}) == 1


def test_a_rolling_update_never_goes_below_the_allowed_unavailability(web: Cluster) -> None:
    c = web
    until("3 web pods Ready", lambda: ready_web(c), c)
    with open(os.path.join(c.dir, "controlplane", "admin.conf")) as f:
        server = yaml.safe_load(f)["clusters"][0]["cluster"]["server"]
    registry = f"{server.rpartition(':')[0]}:5000"
    cimage.push_busybox(f"http://{registry}", [("busybox", "e2e-2")])

    listed = c.api.list("pods", namespace="default", label_selector="app=web")
    ready = {p["metadata"]["uid"]: is_ready(p) for p in listed["items"]}
    lowest = [sum(ready.values())]
    stop = threading.Event()
    watch_client = api_client.Client(api_client.load_config(c.kubeconfig))

    def watch() -> None:
        for ev in watch_client.watch("pods", namespace="default", label_selector="app=web",
                                     resource_version=listed["metadata"]["resourceVersion"]):
            pod = ev["object"]
            ready[pod["metadata"]["uid"]] = ev["type"] != "DELETED" and is_ready(pod)
            lowest.append(sum(ready.values()))
            if stop.is_set():
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        c.apply(WEB.replace("IMAGE", "busybox:e2e-2"))
        c.ctl("rollout", "status", "deployment/web", "--timeout", "150s")
        pods = until("3 updated web pods Ready", lambda: (lambda ps: ps if ps and all(
            p["spec"]["containers"][0]["image"] == "busybox:e2e-2" for p in ps) else None)(
            ready_web(c)), c)
    finally:
        stop.set()
        watch_client.close()
        watcher.join(10)
    # (the spread is checked when each pod is scheduled; old pods leaving later may
    # leave it uneven, as in Kubernetes)
    assert len({p["spec"]["nodeName"] for p in pods}) >= 2, pods
    assert len(lowest) > 6, "the watch saw the rollout"
    assert min(lowest) >= 3 - 1, f"Ready pods fell to {min(lowest)} (allowed: 2)"


def test_scale_to_zero_and_back(web: Cluster) -> None:
    c = web
    c.ctl("scale", "deployment", "web", "--replicas=0")
    until("no web pod", lambda: not c.pods("app=web"), c, timeout=60)
    c.ctl("scale", "deployment", "web", "--replicas=3")
    pods = until("3 web pods Ready", lambda: ready_web(c), c, timeout=90)
    assert sorted(p["spec"]["nodeName"] for p in pods) == NODES


def test_a_job_completes(cluster: Cluster) -> None:
    c = cluster
    c.apply(JOB)

    def complete() -> dict[str, Any] | None:
        job = c.api.get("jobs", "once", namespace="default")
        conds = {x["type"]: x["status"] for x in (job.get("status") or {}).get(
            "conditions") or []}
        return job if conds.get("Complete") == "True" else None

    job = until("job once Complete", complete, c, timeout=90)
    assert job["status"]["succeeded"] == 2
    pods = c.pods(f"controller-uid={job['metadata']['uid']}")
    assert len(pods) == 2 and all(p["status"]["phase"] == "Succeeded" for p in pods), pods
    c.ctl("delete", "job", "once")


def test_a_daemonset_runs_on_every_node(cluster: Cluster) -> None:
    c = cluster
    c.apply(DAEMONSET)

    def everywhere() -> list[dict[str, Any]] | None:
        pods = [p for p in c.pods("app=everywhere") if (p.get("status") or {}).get(
            "phase") == "Running"]
        return pods if sorted(p["spec"].get("nodeName", "") for p in pods) == NODES else None

    until("a DaemonSet pod Running on each node", everywhere, c, timeout=90)
    c.ctl("delete", "daemonset", "everywhere")
    until("the DaemonSet's pods gone", lambda: not c.pods("app=everywhere"), c, timeout=60)




def test_logs_exec_and_top_go_through_the_controlplane(web: Cluster) -> None:
    c = web
    name = until("a Ready web pod", lambda: next(
        (p["metadata"]["name"] for p in c.pods("app=web") if is_ready(p)), None), c)
    # exec: the command runs in the pod (its hostname is the pod's name), and a line it
    # writes to the container's stdout (PID 1's) lands in the container's log
    out = c.ctl("exec", name, "--", "sh", "-c", "hostname; echo e2e-log-line >/proc/1/fd/1")
    assert out.strip() == name, out
    until("the line in clusterctl logs", lambda: "e2e-log-line" in c.ctl("logs", name), c,
          timeout=30)
    assert c.ctl("logs", name, "--tail", "1").strip() == "e2e-log-line"
    # the remote exit code is clusterctl's; stdin reaches the command and its end is EOF
    p = subprocess.run([CLUSTERCTL, "--config", c.kubeconfig, "exec", name, "--", "sh",
                        "-c", "exit 7"], text=True, timeout=60, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    assert p.returncode == 7, p.stdout
    assert c.ctl("exec", "-i", name, "--", "cat", stdin="piped\nthrough\n") == \
        "piped\nthrough\n"
    # top: every web pod with its usage, every node
    pods = c.ctl("top", "pods")
    for p in c.pods("app=web"):
        assert p["metadata"]["name"] in pods, pods
    nodes = c.ctl("top", "nodes")
    assert all(n in nodes for n in NODES), nodes


def test_kill9_of_an_agent_restarts_no_container(web: Cluster) -> None:
    c = web
    before = {p["metadata"]["uid"]: main_status(p) for p in until(
        "3 web pods Ready", lambda: ready_web(c), c)}
    # corral-node: the agent's process is the whole node (the runtime service with it)
    one = bool(c.state().pids("node"))
    agent = c.proc("node" if one else "agent", "node-1")
    renewed = c.api.get("leases", "node-1", namespace="corral-node-lease")["spec"][
        "renewTime"]
    os.kill(agent.pid, signal.SIGKILL)
    until("the agent gone", lambda: not system.alive(agent), c, timeout=10)
    time.sleep(2)
    p = c.plan()
    st = c.state()
    n1 = next(n for n in p.nodes if n.name == "node-1")
    cp_dir = os.path.join(c.dir, "controlplane")
    if one:
        cup.start_node(p, st, n=n1, controlplane_dir=cp_dir)
    else:
        cup.start_agent(p, st, n=n1, controlplane_dir=cp_dir)
    c.children.append(st.processes[-1])
    until("the agent back (its lease renewed)", lambda: c.api.get(
        "leases", "node-1", namespace="corral-node-lease")["spec"]["renewTime"] != renewed,
        c, timeout=30)
    time.sleep(6)  # several relists and status syncs of the new agent
    after = {p["metadata"]["uid"]: main_status(p) for p in until(
        "3 web pods still Ready", lambda: ready_web(c), c)}
    assert set(after) == set(before)
    for uid, old in before.items():
        new = after[uid]
        assert (new["containerID"], new["state"]["running"]["startedAt"],
                new["restartCount"]) == (old["containerID"],
                                         old["state"]["running"]["startedAt"],
                                         old["restartCount"]), (old, new)


def test_a_node_that_stops_goes_not_ready_and_its_pods_move(web: Cluster) -> None:
    """Last: node-3 stays down (its containers are removed by `cluster down`)."""
    c = web
    pods = until("3 web pods Ready", lambda: ready_web(c), c)
    lost = [p["metadata"]["name"] for p in pods if p["spec"]["nodeName"] == "node-3"]
    assert len(lost) == 1
    started = time.monotonic()
    for proc in [p for p in c.state().processes if p.node == "node-3"
                 and p.role in ("node", "agent", "runtimed") and system.alive(p)]:
        system.stop(proc, grace=5)  # corral-node; split: corral-agent, corral-runtimed

    def not_ready() -> str | None:
        node = c.api.get("nodes", "node-3")
        conds = {x["type"]: x["status"] for x in node["status"]["conditions"]}
        return conds["Ready"] if conds["Ready"] != "True" else None

    assert until("node-3 NotReady", not_ready, c, timeout=GRACE + 30) == "Unknown"
    # its lease (renewed every 10 s) went stale GRACE s after the last renewal: not
    # before, and well before the default 40 s
    took = time.monotonic() - started
    assert GRACE - 10 <= took <= GRACE + 8, took
    taints = {(t["key"], t["effect"]) for t in c.api.get("nodes", "node-3")["spec"].get(
        "taints") or []}
    assert ("node.kubernetes.io/unreachable", "NoSchedule") in taints, taints

    moved = until("3 web pods Ready on node-1 and node-2", lambda: (lambda ps: ps if len(
        ps) == 3 else None)([p for p in c.pods("app=web") if is_ready(p)
                             and p["spec"]["nodeName"] != "node-3"]), c, timeout=90)
    assert {p["spec"]["nodeName"] for p in moved} == {"node-1", "node-2"}
    assert not {p["metadata"]["name"] for p in moved} & set(lost)
    evicted = c.api.get("pods", lost[0], namespace="default")
    assert evicted["metadata"].get("deletionTimestamp"), "the lost pod was evicted"
