"""Memory of an idle node: corral-agent + corral-runtimed, against containerd, same run.

    etcd + corral-controlplane, a registry holding busybox             (the cluster side)
    node "ours":  corral-runtimed (+ its shim fork server) + corral-agent, registered Ready
    node "peer":  containerd 1.6 with its CRI plugin, started the same way by the bench
    both idle (no pods) for --settle seconds, then RSS and PSS summed over each side's
    processes, sampled --samples times; the median is the figure

The issue's target is an absolute one (agent + runtime service <= 60 MB RSS; a k3s agent is
about 275 MB, kubelet plus containerd well over 100 MB). kubelet is not installable here, so
the peer measured side by side is containerd alone, the runtime half of a kubelet node: the
ratio compares our whole node against their runtime only.

Usage: bench/node_footprint.py [--settle S] [--samples N]
The last line is JSON: {"bench", "ours", "peer", "ratio", "unit"} (MB RSS).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._support import _tree
from tests.integration.agent.test_agent import Agent
from tests.integration.runtime.service.test_runtimed import Runtimed
from tests.support import containerd
from tests.support.controlplane import ControlPlane
from tests.support.etcd import EtcdServer
from tests.support.registry import Registry

MB = 1 << 20


def memory(pids: list[int]) -> tuple[int, int]:
    """(RSS, PSS) in bytes summed over PIDS and their descendants."""
    rss = pss = 0
    for pid in {p for root in pids for p in _tree(root)}:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    key, _, value = line.partition(":")
                    if key == "Rss":
                        rss += int(value.split()[0]) * 1024
                    elif key == "Pss":
                        pss += int(value.split()[0]) * 1024
        except OSError:
            continue
    return rss, pss


def sample(pids: list[int], *, samples: int) -> tuple[float, float]:
    got = []
    for _ in range(samples):
        got.append(memory(pids))
        time.sleep(1)
    return (statistics.median(r for r, _ in got) / MB, statistics.median(p for _, p in got) / MB)


def node_ready(cp: ControlPlane, name: str, timeout: float = 60) -> None:
    c = cp.client()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conds = c.get("nodes", name).get("status", {}).get("conditions") or []
            if any(x["type"] == "Ready" and x["status"] == "True" for x in conds):
                return
        except Exception:  # not registered yet
            pass
        time.sleep(0.2)
    raise SystemExit(f"node {name}: not Ready after {timeout}s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settle", type=float, default=15, help="idle seconds before sampling")
    ap.add_argument("--samples", type=int, default=5)
    args = ap.parse_args()
    tag = f"corral-bench-{uuid.uuid4().hex[:6]}"
    etcd = EtcdServer().start()
    try:
        with Registry() as reg, ControlPlane(etcd.endpoint, leader=True) as cp:
            image = containerd.push_busybox(reg)
            with Runtimed(tag=tag, sandbox_image=image, registries=[reg.host]) as rtd:
                rtd.write_cni_conflist()
                rtd.start()
                agent = Agent(cp, rtd, f"fp-{uuid.uuid4().hex[:4]}").start()
                try:
                    node_ready(cp, agent.node)
                    time.sleep(args.settle)
                    assert rtd.proc is not None and agent.proc is not None
                    ours_rss, ours_pss = sample([rtd.proc.pid, agent.proc.pid],
                                                samples=args.samples)
                    agent_rss, _ = sample([agent.proc.pid], samples=1)
                finally:
                    agent.stop()
            with containerd.Containerd(tag=tag + "c", sandbox_image=image,
                                       registries=[reg.host]) as ctd:
                time.sleep(args.settle)
                assert ctd.proc is not None
                peer_rss, peer_pss = sample([ctd.proc.pid], samples=args.samples)
    finally:
        etcd.cleanup()
    print(f"idle node, RSS: corral-agent + corral-runtimed {ours_rss:.1f} MB "
          f"(agent {agent_rss:.1f}, runtimed {ours_rss - agent_rss:.1f}); PSS {ours_pss:.1f} MB")
    print(f"idle containerd 1.6 (CRI plugin), RSS: {peer_rss:.1f} MB; PSS {peer_pss:.1f} MB")
    print(json.dumps({"bench": "node_footprint_idle_rss", "ours": round(ours_rss, 1),
                      "peer": round(peer_rss, 1), "ratio": round(ours_rss / peer_rss, 2),
                      "unit": "MB"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
