"""100 replicas of busybox `sleep` on one node: corral against Docker Swarm, same machine.

    ours:  etcd + corral-controlplane + one node (tests/support/node.py: corral-node, or
           --split-node corral-runtimed + corral-agent), image present; a Deployment of
           --replicas is created -> every pod Running
    peer:  a dockerd the bench starts (own data root, exec root and socket; Debian's
           docker.io), a one-node swarm on 127.0.0.1, the same busybox rootfs imported;
           `docker service create --replicas N` -> N tasks running (`docker service ls`)
    rounds alternate ours/peer; the figure is the median of each side's times

How each side learns that all are running costs it next to nothing, so that the waiting
does not take CPU from the work it waits for (a 0.1 s poll of every pod, or of
`docker service ls`, an exec each, took a few CPU-seconds a round):
    ours:  a watch of the Deployment's pods from the list's resourceVersion, as
           `kubectl wait` and `kubectl rollout status` watch; done when all are Running
    peer:  GET /services?status=true on dockerd's socket every 0.1 s (the count
           `docker service ls` prints as REPLICAS), no CLI exec

Usage: bench/replicas_vs_swarm.py [--replicas N] [--rounds R] [--split-node]
The last line is JSON: {"bench", "ours", "peer", "ratio", "unit"} (seconds; the issue's
target is ratio <= 0.1).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from clusterctl.cluster.up import free_port
from tests.support import containerd
from tests.support.controlplane import ControlPlane
from tests.support.node import cluster, corral_node, wait_ready


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP/1.1 to dockerd's unix socket."""

    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.path)
        self.sock = s


DOCKERD = "/usr/sbin/dockerd"
DOCKER = "/usr/bin/docker"  # Debian's client, the same version as the daemon


def deployment(replicas: int, image: str) -> dict[str, object]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "sleepers", "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "sleepers"}},
                     "template": {"metadata": {"labels": {"app": "sleepers"}},
                                  "spec": {"terminationGracePeriodSeconds": 1,
                                           "containers": [{
                                               "name": "sleep", "image": image,
                                               "imagePullPolicy": "IfNotPresent",
                                               "command": ["sleep", "3600"]}]}}}}


def ours_round(cp: ControlPlane, replicas: int, image: str) -> float:
    c = cp.client()
    since = c.list("pods", namespace="default")["metadata"]["resourceVersion"]
    started = time.monotonic()
    c.create("deployments", deployment(replicas, image), namespace="default")
    running: set[str] = set()
    for ev in c.watch("pods", namespace="default", label_selector="app=sleepers",
                      resource_version=since, timeout=600):
        pod = ev["object"]
        name = pod["metadata"]["name"]
        if ev["type"] != "DELETED" and (pod.get("status") or {}).get("phase") == "Running":
            running.add(name)
        else:
            running.discard(name)
        if len(running) >= replicas:
            break
    took = time.monotonic() - started
    if len(running) < replicas:
        raise SystemExit(f"ours: {len(running)}/{replicas} Running after 600 s")
    c.delete("deployments", "sleepers", namespace="default")
    deadline = time.monotonic() + 180
    while c.list("pods", namespace="default")["items"] and time.monotonic() < deadline:
        time.sleep(0.5)
    return took


class Swarm:
    """A private dockerd with a one-node swarm, stopped by PID; everything under one dir."""

    def __init__(self, *, state_base: str = "") -> None:
        self.dir = tempfile.mkdtemp(prefix="corral-bench-dockerd-", dir="/tmp")
        # --exec-root (its containerd's state with it): on STATE_BASE, as ours
        self.exec_dir = tempfile.mkdtemp(prefix="corral-bench-dockerd-exec-", dir=state_base) \
            if state_base else os.path.join(self.dir, "exec")
        self.sock = os.path.join(self.dir, "docker.sock")
        self.proc: subprocess.Popen[bytes] | None = None

    def docker(self, *args: str, stdin: bytes | None = None) -> str:
        out = subprocess.run([DOCKER, "-H", f"unix://{self.sock}", *args], input=stdin,
                             capture_output=True, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args[:3])}: {out.stderr.decode().strip()}")
        return out.stdout.decode()

    def start(self) -> Swarm:
        log = open(os.path.join(self.dir, "dockerd.log"), "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [DOCKERD, "--data-root", os.path.join(self.dir, "data"),
             "--exec-root", self.exec_dir,
             "--pidfile", os.path.join(self.dir, "docker.pid"), "-H", f"unix://{self.sock}",
             "--bridge", "none", "--iptables=false", "--ip-masq=false"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(RuntimeError):
                self.docker("info", "--format", "{{.ID}}")
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"dockerd did not start; see {self.dir}/dockerd.log")
            time.sleep(0.3)
        port = free_port()
        self.docker("swarm", "init", "--advertise-addr", "127.0.0.1",
                    "--listen-addr", f"127.0.0.1:{port}")
        return self

    def import_busybox(self) -> str:
        ref = "corral-bench/busybox:1"
        buf = io.BytesIO(containerd._layer_tar())  # the same rootfs ours runs
        self.docker("import", "-", ref, stdin=buf.getvalue())
        return ref

    def running_tasks(self, name: str) -> int:
        """The service's running tasks, from dockerd's API on its socket (API 1.41:
        ServiceStatus, what `docker service ls` shows as REPLICAS)."""
        conn = UnixHTTPConnection(self.sock)
        try:
            query = urllib.parse.urlencode({"status": "true",
                                            "filters": json.dumps({"name": [name]})})
            conn.request("GET", f"/v1.41/services?{query}")
            reply = conn.getresponse()
            body = reply.read()
        finally:
            conn.close()
        if reply.status != 200:
            raise RuntimeError(f"GET /services: {reply.status} {body[:200]!r}")
        services = [s for s in json.loads(body) if s["Spec"]["Name"] == name]
        return int(services[0]["ServiceStatus"]["RunningTasks"]) if services else 0

    def round(self, replicas: int, image: str) -> float:
        name = f"sleepers{uuid.uuid4().hex[:4]}"
        started = time.monotonic()
        self.docker("service", "create", "--detach", "--no-resolve-image", "--name", name,
                    "--replicas", str(replicas), "--stop-grace-period", "1s",
                    image, "sleep", "3600")
        while True:
            shown = self.running_tasks(name)
            if shown >= replicas:
                took = time.monotonic() - started
                break
            if time.monotonic() - started > 600:
                raise SystemExit(f"swarm: {shown}/{replicas} running after 600 s")
            time.sleep(0.1)
        self.docker("service", "rm", name)
        deadline = time.monotonic() + 180
        while self.docker("ps", "-q").strip() and time.monotonic() < deadline:
            time.sleep(0.5)
        return took

    def cleanup(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.docker("swarm", "leave", "--force")
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f]
        for m in sorted((m for m in mounts if m.startswith((self.dir, self.exec_dir))),
                        reverse=True):
            subprocess.run(["umount", "-l", m], check=False)
        for link in ("docker_gwbridge",):  # made by swarm in the host netns
            subprocess.run(["ip", "link", "del", link], check=False,
                           stderr=subprocess.DEVNULL)
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(self.exec_dir, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicas", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--state-base", default="/dev/shm" if os.path.isdir("/dev/shm") else "",
                    help="a tmpfs for both sides' runtime state (ours --state, dockerd's "
                    "--exec-root), as /run is on a systemd host (default /dev/shm; '' puts "
                    "it under /tmp with the rest)")
    ap.add_argument("--split-node", action="store_true", help="our node as corral-runtimed "
                    "+ corral-agent (default: one corral-node process)")
    args = ap.parse_args()
    if not (os.path.exists(DOCKERD) and os.path.exists(DOCKER)):
        raise SystemExit("dockerd is missing: `scripts/install-deps.sh --bench` installs "
                         "Debian's docker.io")
    ours: list[float] = []
    peer: list[float] = []
    with cluster() as cl:
        swarm = Swarm(state_base=args.state_base)
        try:
            swarm.start()
            swarm_image = swarm.import_busybox()
            with corral_node(cl, tag=f"corral-bench-{uuid.uuid4().hex[:5]}",
                             name="swarm-peer-0", split=args.split_node,
                             state_base=args.state_base):
                wait_ready(cl.cp, ["swarm-peer-0"])
                for i in range(args.rounds):
                    ours.append(ours_round(cl.cp, args.replicas, cl.image))
                    peer.append(swarm.round(args.replicas, swarm_image))
                    print(f"round {i + 1}: corral {ours[-1]:.2f} s, swarm {peer[-1]:.2f} s",
                          flush=True)
        finally:
            swarm.cleanup()
    o, p = statistics.median(ours), statistics.median(peer)
    print(f"{args.replicas} replicas on one node, all running: corral {o:.2f} s, "
          f"Docker Swarm {p:.2f} s (medians of {args.rounds})")
    print(json.dumps({"bench": "replicas_vs_swarm", "ours": round(o, 2), "peer": round(p, 2),
                      "ratio": round(o / p, 3), "unit": "s"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
