"""The node CPU one pod start costs: RunPodSandbox + CreateContainer + StartContainer (a
busybox `sleep`) through CRIClient, on corral-runtimed and on containerd 1.6's CRI plugin.

    for each side (ours: corral-runtimed; peer: containerd + containerd-shim-runc-v2 + runc):
        pull busybox, start one warm-up pod (not counted)
        for each of --pods pods:
            (before the first counted pod: snapshot the CPU of the side's processes)
            RunPodSandbox, CreateContainer, StartContainer; wait --settle s
        snapshot again after the last: the difference, by process, over the pods

A side's processes are its daemon, every process that carries its mark (ours: the test
tag in the environment, the cwd or the cgroup path; the peer's: its socket on the command
line, as the shims have it) and their children. Each is counted twice: its own
time (utime + stime, by comm: runtimed, shims, ...) and the time of its children that
exited and were reaped while we measured (cutime + cstime: the daemon's are the CNI
plugins and helpers it execs; a shim's are the runtime calls, corral-runc or runc). A
pod's process is counted as "container init": its time is the runtime's init (ours Python,
runc's Go) until it exec'd `sleep`, which then sleeps.

Prints one JSON line per side with the CPU-ms per pod by process (the mean over the pods:
/proc counts in 10 ms clock ticks), then the final line {"bench", "ours", "peer", "ratio",
"unit"} (node CPU-ms per pod start).
Usage: python bench/pod_start_cpu.py [--pods N] [--settle S] [--side both|ours|peer]
[--pid container|pod]   (root; keep runs short: the machine is shared). --pid pod is what
an agent that leaves namespace_options.pid unset asks for: a shared PID namespace, so a
pause container per pod.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from runtime.service.cri import api_pb2 as pb  # noqa: E402
from runtime.service.cri.client import CRIClient  # noqa: E402
from tests.integration.runtime.service import cri_scenario  # noqa: E402
from tests.integration.runtime.service.test_runtimed import (  # noqa: E402
    Runtimed,
    container_config,
)
from tests.support import containerd, leaks  # noqa: E402
from tests.support.containerd import Containerd  # noqa: E402
from tests.support.registry import Registry  # noqa: E402

TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")
# key: (pid, starttime) -> (comm, own ticks, reaped children's ticks)
Snapshot = dict[tuple[int, int], tuple[str, int, int]]


def _stat(pid: int) -> tuple[str, int, int, int, int] | None:
    """(comm, ppid, starttime, own ticks, reaped children's ticks) of PID, or None if
    gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1:raw.rindex(")")]
    fields = raw.rpartition(")")[2].split()
    # fields[0] is field 3 (state): ppid 4, utime 14, stime 15, cutime 16, cstime 17,
    # starttime 22
    return comm, int(fields[1]), int(fields[19]), int(fields[11]) + int(fields[12]), \
        int(fields[13]) + int(fields[14])


def _marked_by_tag(tag: str) -> Callable[[int], bool]:
    """Ours: the tag in the environment (the daemon and what it execs), or in the cwd (a
    shim or holder: its bundle dir; the fork server hands them a PATH-only environment),
    or in the cgroup path (a pod's processes: under the cgroup parent /TAG)."""
    env = f"{leaks.TAG_ENV}={tag}".encode()

    def test(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if env in f.read().split(b"\0"):
                    return True
            if tag in os.readlink(f"/proc/{pid}/cwd"):
                return True
            with open(f"/proc/{pid}/cgroup") as f:
                return tag in f.read()
        except OSError:
            return False
    return test


def _marked_by_cmdline(mark: bytes) -> Callable[[int], bool]:
    def test(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                return mark in f.read()
        except OSError:
            return False
    return test


def snapshot(daemon: int, marked: Callable[[int], bool], known: dict[int, bool]) -> Snapshot:
    """CPU ticks of DAEMON (comm "daemon"), of every live process MARKED says is the
    side's, and of their children (a pod's process: its environment is the container's).
    KNOWN caches MARKED's answer per PID across snapshots."""
    stats = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (st := _stat(int(name))) is not None:
            stats[int(name)] = st
    out: Snapshot = {}
    for pid, (comm, ppid, start, own, reaped) in stats.items():
        for p in (pid, ppid):
            if p not in known:
                known[p] = p == daemon or marked(p)
        if not (known[pid] or known[ppid]):
            continue
        out[(pid, start)] = (f"{comm} (daemon)" if pid == daemon else comm, own, reaped)
    return out


def difference(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """CPU-ms by process between two snapshots: "COMM" for own time, "COMM children" for
    the reaped children's (processes that ended in between are not in AFTER: the little
    they used since BEFORE is lost)."""
    out: dict[str, float] = {}
    for key, (comm, own, reaped) in after.items():
        _, own0, reaped0 = before.get(key, (comm, 0, 0))
        if comm == "sleep":  # the pod's process: the runtime's init until it exec'd sleep
            comm = "container init"
        for label, ticks in ((comm, own - own0), (f"{comm} children", reaped - reaped0)):
            if ticks:
                out[label] = out.get(label, 0.0) + ticks * TICK_MS
    return out


async def measure(*, socket: str, image: str, sandbox_config: Callable[[str], Any],
                  daemon: int, marked: Callable[[int], bool], pods: int,
                  settle: float) -> tuple[dict[str, float], list[float]]:
    """CPU-ms per pod by process (over all PODS: the clock ticks are 10 ms), and each
    pod's wall ms."""
    known: dict[int, bool] = {}
    walls = []
    async with CRIClient(socket, timeout=60) as cri:
        await cri.pull_image(pb.ImageSpec(image=image))
        for i in range(pods + 1):  # pod 0 warms up
            if i == 1:
                before = snapshot(daemon, marked, known)
            cfg = sandbox_config(f"p{i}")
            t = time.perf_counter()
            sid = await cri.run_pod_sandbox(cfg)
            cid = await cri.create_container(sid, container_config(image, "c", ["sleep", "600"]),
                                             sandbox_config=cfg)
            await cri.start_container(cid)
            walls.append((time.perf_counter() - t) * 1000)
            await asyncio.sleep(settle)  # the shims settle (holder exec, exits reaped)
        total = difference(before, snapshot(daemon, marked, known))
    return {k: v / pods for k, v in total.items()}, walls[1:]


def summary(side: str, cost: dict[str, float], walls: list[float]) -> dict[str, Any]:
    return {"side": side, "pods": len(walls), "cpu_ms_per_pod": round(sum(cost.values()), 1),
            "wall_ms_median": round(statistics.median(walls), 1),
            "by_process": {k: round(v, 1) for k, v in sorted(cost.items())}}


def with_pid(cfg: pb.PodSandboxConfig, pid: int) -> pb.PodSandboxConfig:
    cfg.linux.security_context.namespace_options.pid = pid  # type: ignore[assignment]
    return cfg


async def ours(*, tag: str, image: str, registry: str, pods: int, settle: float,
               pid: int) -> dict[str, Any]:
    with Runtimed(tag=tag, sandbox_image=image, registries=[registry]) as rtd:
        rtd.write_cni_conflist()
        rtd.start()
        assert rtd.proc is not None
        cost, walls = await measure(
            socket=rtd.socket, image=image,
            sandbox_config=lambda name: with_pid(cri_scenario.sandbox_config(rtd, name), pid),
            daemon=rtd.proc.pid, pods=pods, settle=settle,
            marked=_marked_by_tag(tag))
    return summary("corral-runtimed", cost, walls)


async def peer(*, tag: str, image: str, registry: str, pods: int, settle: float,
               pid: int) -> dict[str, Any]:
    with Containerd(tag=tag, sandbox_image=image, registries=[registry]) as ctd:
        ctd.write_cni_conflist(subnet=cri_scenario.subnet(ctd.tag, first=216))
        assert ctd.proc is not None
        cost, walls = await measure(
            socket=ctd.socket, image=image,
            sandbox_config=lambda name: with_pid(cri_scenario.sandbox_config(ctd, name), pid),
            daemon=ctd.proc.pid, pods=pods, settle=settle,
            marked=_marked_by_cmdline(ctd.socket.encode()))
    return summary("containerd", cost, walls)


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=10)
    ap.add_argument("--settle", type=float, default=0.3)
    ap.add_argument("--side", choices=("both", "ours", "peer"), default="both")
    ap.add_argument("--pid", choices=("container", "pod"), default="container",
                    help="the sandboxes' PID namespace mode: container (kubelet's default) "
                    "or pod (shared: the runtime runs a pause container as its init)")
    a = ap.parse_args()
    tag = f"corral-bench-{uuid.uuid4().hex[:6]}"
    with open("/proc/loadavg") as f:
        print(json.dumps({"loadavg_before": f.read().strip()}), flush=True)
    results: dict[str, dict[str, Any]] = {}
    with Registry() as reg:
        image = containerd.push_busybox(reg)
        for side, run in (("ours", ours), ("peer", peer)):
            if a.side in ("both", side):
                results[side] = await run(tag=tag + side[0], image=image, registry=reg.host,
                                          pods=a.pods, settle=a.settle,
                                          pid=pb.POD if a.pid == "pod" else pb.CONTAINER)
                print(json.dumps(results[side]), flush=True)
    with open("/proc/loadavg") as f:
        print(json.dumps({"loadavg_after": f.read().strip()}), flush=True)
    o = results["ours"]["cpu_ms_per_pod"] if "ours" in results else None
    p = results["peer"]["cpu_ms_per_pod"] if "peer" in results else None
    print(json.dumps({"bench": "pod_start_cpu.cri_run_create_start", "ours": o, "peer": p,
                      "ratio": round(o / p, 3) if o and p else None,
                      "unit": "cpu_ms_per_pod"}))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
