"""Memory of an idle node: corral-node (or, --split, corral-agent + corral-runtimed),
against containerd, same run.

    etcd + corral-controlplane, a registry holding busybox             (the cluster side)
    node "ours":  corral-node, the runtime service and the agent in one process (--split:
                  corral-runtimed + corral-agent), registered Ready (tests/support/node.py)
    node "peer":  containerd 1.6 with its CRI plugin, started the same way by the bench
    both idle (no pods) for --settle seconds, then RSS and PSS summed over each side's
    processes, sampled --samples times; the median is the figure

The issue's target is an absolute one (agent + runtime service <= 60 MB RSS; a k3s agent is
about 275 MB, kubelet plus containerd well over 100 MB). kubelet is not installable here, so
the peer measured side by side is containerd alone, the runtime half of a kubelet node: the
ratio compares our whole node against their runtime only.

Usage: bench/node_footprint.py [--settle S] [--samples N] [--detail] [--split]
PSS divides shared pages among every process on the machine that maps them (other Pythons
with grpc included); "pages counted once" is the node's own figure: the distinct physical
pages its processes hold (/proc/PID/pagemap, as root).
--detail prints, per process, RSS/PSS split into anonymous and file-backed pages, its thread
count and its largest mappings: where each megabyte goes.
The last line is JSON: {"bench", "ours", "peer", "ratio", "unit"} (MB RSS).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._support import _tree
from tests.support import containerd
from tests.support.node import idle_node

MB = 1 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")


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


def resident_frames(pid: int) -> set[int]:
    """The physical page frames PID has resident (/proc/PID/pagemap; needs root for the
    frame numbers, else empty)."""
    frames: set[int] = set()
    ranges: list[tuple[int, int]] = []
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                head = line.split()
                if head and not head[0].endswith(":"):
                    lo, hi = (int(x, 16) for x in head[0].split("-"))
                elif head and head[0] == "Rss:" and int(head[1]) > 0:
                    ranges.append((lo, hi))
        with open(f"/proc/{pid}/pagemap", "rb") as pm:
            for lo, hi in ranges:
                pm.seek(lo // PAGE * 8)
                data = pm.read((hi - lo) // PAGE * 8)
                for (entry,) in struct.iter_unpack("<Q", data):
                    if entry >> 63:  # present
                        frames.add(entry & ((1 << 55) - 1))
    except OSError:
        return set()
    return frames if len(frames) > 1 else set()  # all-zero frame numbers: not root


def node_unique(pids: list[int]) -> int:
    """Bytes of RAM the node's processes hold together: every resident page counted once,
    however many of them map it (shared libraries, the interpreter) and whatever other
    processes on the machine map it too. 0 when the frames cannot be read (not root)."""
    frames: set[int] = set()
    for pid in {p for root in pids for p in _tree(root)}:
        got = resident_frames(pid)
        if not got:
            return 0
        frames |= got
    return len(frames) * PAGE


def detail(pids: list[int], *, top: int = 8) -> list[str]:
    """One block per process of PIDS and their descendants: command, threads, RSS/PSS
    (anonymous + file) and the TOP mappings by RSS (read from /proc/PID/smaps)."""
    out = []
    for pid in sorted({p for root in pids for p in _tree(root)}):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")[:90]
            with open(f"/proc/{pid}/status") as f:
                threads = next(int(x.split()[1]) for x in f if x.startswith("Threads:"))
            by_map: dict[str, list[int]] = {}
            name = ""
            with open(f"/proc/{pid}/smaps") as f:
                for line in f:
                    head = line.split()
                    if head and not head[0].endswith(":"):
                        name = head[5] if len(head) > 5 else "[anon]"
                    elif head and head[0] in ("Rss:", "Pss:"):
                        by_map.setdefault(name, [0, 0])[head[0] == "Pss:"] += int(head[1])
        except (OSError, StopIteration):
            continue
        anon = {"[anon]", "[heap]", "[stack]"}
        rss = sum(v[0] for v in by_map.values())
        pss = sum(v[1] for v in by_map.values())
        arss = sum(v[0] for k, v in by_map.items() if k in anon or k.startswith("[stack"))
        out.append(f"pid {pid} threads {threads} RSS {rss / 1024:.1f} MB (anon "
                   f"{arss / 1024:.1f}, file {(rss - arss) / 1024:.1f}) PSS "
                   f"{pss / 1024:.1f} MB: {cmd}")
        for k, v in sorted(by_map.items(), key=lambda kv: -kv[1][0])[:top]:
            out.append(f"    {v[0] / 1024:6.1f} MB RSS {v[1] / 1024:6.1f} MB PSS  {k}")
    return out


def sample(pids: list[int], *, samples: int) -> tuple[float, float]:
    got = []
    for _ in range(samples):
        got.append(memory(pids))
        time.sleep(1)
    return (statistics.median(r for r, _ in got) / MB, statistics.median(p for _, p in got) / MB)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settle", type=float, default=15, help="idle seconds before sampling")
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--detail", action="store_true", help="per-process breakdown")
    ap.add_argument("--split", action="store_true", help="ours is the two-process node "
                    "(corral-runtimed + corral-agent) instead of corral-node")
    args = ap.parse_args()
    tag = f"corral-bench-{uuid.uuid4().hex[:6]}"
    what = "corral-runtimed + corral-agent" if args.split else "corral-node"
    with idle_node(tag, name=f"fp-{uuid.uuid4().hex[:4]}", split=args.split,
                   settle=args.settle) as idle:
        pids = idle.node.pids()
        ours_rss, ours_pss = sample(pids, samples=args.samples)
        unique = node_unique(pids) / MB
        parts = ""
        if args.split:
            assert idle.node.proc is not None
            agent_rss, _ = sample([idle.node.proc.pid], samples=1)
            parts = f" (agent {agent_rss:.1f}, runtimed {ours_rss - agent_rss:.1f})"
        if args.detail:
            print("\n".join(detail(pids)))
        reg, image = idle.cluster.registry, idle.cluster.image
        idle.node.stop()
        with containerd.Containerd(tag=tag + "c", sandbox_image=image,
                                   registries=[reg.host]) as ctd:
            time.sleep(args.settle)
            assert ctd.proc is not None
            peer_rss, peer_pss = sample([ctd.proc.pid], samples=args.samples)
    print(f"idle node, RSS: {what} {ours_rss:.1f} MB{parts}; PSS {ours_pss:.1f} MB; "
          f"pages counted once {unique:.1f} MB")
    print(f"idle containerd 1.6 (CRI plugin), RSS: {peer_rss:.1f} MB; PSS {peer_pss:.1f} MB")
    print(json.dumps({"bench": "node_footprint_idle_rss", "ours": round(ours_rss, 1),
                      "peer": round(peer_rss, 1), "ratio": round(ours_rss / peer_rss, 2),
                      "unit": "MB"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
