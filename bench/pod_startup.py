"""Pod startup latency: bound -> Running, image present, 300 pods over 3 nodes.

    etcd + corral-controlplane (scheduler, controllers) + a registry holding busybox
    3 nodes on this machine (tests/support/node.py), each a corral-node (--split-node:
    corral-runtimed + corral-agent), or with --runtime containerd containerd 1.6's CRI
    plugin and a corral-agent; the image pulled on each beforehand
    pods created at --rate per second (Kubernetes' density test creates its latency pods
    at a bounded rate too), each `sleep` with no requests, scheduled by the scheduler
    a watch from before the first create sees each pod bound (spec.nodeName set) and
    Running (phase Running, every container running); latency = the difference, as the
    watch observed it: Kubernetes' pod startup SLI, measured the same way

Kubernetes' SLO is p99 <= 5 s; the issue's target is p99 <= 1 s. The peer run (same bench,
same agent, containerd instead of corral-runtimed) shows how much of the figure is the
runtime's.

Usage: bench/pod_startup.py [--pods N] [--nodes M] [--rate R] [--runtime corral|containerd|both]
                            [--split-node]
The last line is JSON: {"bench", "ours", "peer", "ratio", "unit"} (p99 seconds; peer is the
containerd run's p99 when --runtime both, else null).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._support import percentile
from tests.integration.agent.test_agent import Agent
from tests.integration.runtime.service.test_cri_containerd import subnet
from tests.support import containerd
from tests.support.controlplane import ControlPlane
from tests.support.node import Cluster, cluster, corral_node, pull, wait_ready


def pod(name: str, image: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"bench": "start"}},
            "spec": {"terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": image,
                                     "imagePullPolicy": "IfNotPresent",
                                     "command": ["sleep", "3600"]}]}}


@contextlib.contextmanager
def containerd_node(cl: Cluster, *, tag: str, name: str) -> Iterator[Agent]:
    """The peer: containerd 1.6's CRI plugin, driven by our agent."""
    with containerd.Containerd(tag=tag, sandbox_image=cl.image,
                               registries=[cl.registry.host]) as ctd:
        ctd.write_cni_conflist(subnet=subnet(tag))
        pull(ctd.socket, cl.image)
        agent = Agent(cl.cp, ctd, name).start()
        try:
            yield agent
        finally:
            agent.stop()


class Observer:
    """A pod watch recording, per pod, when it was first seen bound and first Running."""

    def __init__(self, cp: ControlPlane, rv: str) -> None:
        self.client = cp.client()
        self.bound: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.rv = rv
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.stop = threading.Event()

    def _run(self) -> None:
        for ev in self.client.watch("pods", namespace="default", resource_version=self.rv,
                                    label_selector="bench=start", timeout=3600):
            now = time.monotonic()
            obj = ev["object"]
            name = obj["metadata"]["name"]
            if obj.get("spec", {}).get("nodeName") and name not in self.bound:
                self.bound[name] = now
            st = obj.get("status") or {}
            statuses = st.get("containerStatuses") or []
            if (st.get("phase") == "Running" and statuses and name not in self.running
                    and all("running" in (s.get("state") or {}) for s in statuses)):
                self.running[name] = now
            if self.stop.is_set():
                return


def run(kind: str, *, pods: int, nodes: int, rate: float, split: bool = False) -> list[float]:
    run_tag = f"corral-bench-{uuid.uuid4().hex[:5]}"
    with cluster() as cl, contextlib.ExitStack() as stack:
        image = cl.image
        names = []
        for i in range(nodes):
            tag, name = f"{run_tag}{i}", f"{kind[:4]}-{i}"
            if kind == "corral":
                stack.enter_context(corral_node(cl, tag=tag, name=name, split=split))
            else:
                stack.enter_context(containerd_node(cl, tag=tag, name=name))
            names.append(name)
        wait_ready(cl.cp, names)
        c = cl.cp.client()
        rv = c.list("pods", namespace="default")["metadata"]["resourceVersion"]
        obs = Observer(cl.cp, rv)
        obs.thread.start()
        started = time.monotonic()
        for i in range(pods):
            next_at = started + i / rate
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            c.create("pods", pod(f"p{i:04d}", image), namespace="default")
        deadline = time.monotonic() + 300
        while len(obs.running) < pods and time.monotonic() < deadline:
            time.sleep(0.2)
        obs.stop.set()
        latencies = [obs.running[n] - obs.bound[n] for n in obs.running if n in obs.bound]
        if len(latencies) < pods:
            raise SystemExit(f"{kind}: only {len(latencies)}/{pods} pods Running in time")
        c.delete_collection("pods", namespace="default", label_selector="bench=start")
        deadline = time.monotonic() + 120
        while c.list("pods", namespace="default")["items"] and time.monotonic() < deadline:
            time.sleep(0.5)
        return latencies


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pods", type=int, default=300)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--rate", type=float, default=10, help="pods created per second")
    ap.add_argument("--runtime", choices=("corral", "containerd", "both"), default="both")
    ap.add_argument("--split-node", action="store_true", help="our nodes as corral-runtimed "
                    "+ corral-agent (default: one corral-node process each)")
    args = ap.parse_args()
    kinds = ["corral", "containerd"] if args.runtime == "both" else [args.runtime]
    p99: dict[str, float] = {}
    for kind in kinds:
        lat = run(kind, pods=args.pods, nodes=args.nodes, rate=args.rate,
                  split=args.split_node)
        p99[kind] = percentile(lat, 99)
        print(f"{kind}: {len(lat)} pods at {args.rate}/s over {args.nodes} nodes: bound -> "
              f"Running p50 {percentile(lat, 50):.3f} s, p99 {p99[kind]:.3f} s, "
              f"max {max(lat):.3f} s")
    ours = p99.get("corral")
    peer = p99.get("containerd")
    print(json.dumps({"bench": "pod_startup_p99", "ours": round(ours, 3) if ours else None,
                      "peer": round(peer, 3) if peer else None,
                      "ratio": round(ours / peer, 2) if ours and peer else None,
                      "unit": "s"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
