"""corral-runtimed + corral-ctr against containerd + ctr, on one busybox image.

    1. `corral-ctr run --rm IMAGE ID /bin/true` vs `ctr run --rm IMAGE ID /bin/true`,
       alternating, N rounds (the image present in both: pulled into ours, and our export
       imported into the containerd the bench starts); the median ratio.
    2. BATCH (100) `sleep` containers started one after another (`run -d`, which returns
       once the container runs) on each: the time until all run. Alternating: each of
       --batch-rounds rounds starts a batch on both, the first side swapping each round,
       and removes them; the median ratio.
    3. PSS per running container of our shim vs containerd-shim-runc-v2 (smaps_rollup),
       with 1, 10 and BATCH containers running (measured while the batch starts, with the
       clock stopped); the median shim at each count.

One JSON line per case: {"bench", "ours", "peer", "ratio", "unit"}; the last is the run
median. Usage: python bench/service_vs_containerd.py [--rounds N] [--batch N]
[--batch-rounds N]   (root)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from runtime.service.content import FileContentStore  # noqa: E402
from runtime.service.images.service import ImageService  # noqa: E402
from runtime.service.snapshots import NativeSnapshotter  # noqa: E402
from tests.integration.runtime.service.test_runtimed import PYTHON, Runtimed  # noqa: E402
from tests.support import containerd  # noqa: E402
from tests.support.containerd import Containerd  # noqa: E402
from tests.support.registry import Registry  # noqa: E402

CTR = "/usr/bin/ctr"


def ours(rtd: Runtimed, *args: str) -> subprocess.CompletedProcess[bytes]:
    launcher = os.path.join(ROOT, ".venv", "bin", "corral-ctr")
    cmd = [launcher] if os.path.exists(launcher) else [PYTHON, "-m", "runtime.service.ctr.main"]
    return subprocess.run([*cmd, "--socket", rtd.socket, *args], cwd=ROOT, check=True,
                          capture_output=True)


def peer(ctd: Containerd, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([CTR, "-a", ctd.socket, "-n", "default", *args], check=True,
                          capture_output=True)


def timed(fn: Any, *args: Any) -> float:
    t = time.perf_counter()
    fn(*args)
    return (time.perf_counter() - t) * 1000


def pss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def shim_pids_ours(rtd: Runtimed) -> list[int]:
    out = []
    base = os.path.join(rtd.state, "tasks", "default")
    for cid in os.listdir(base):
        with open(os.path.join(base, cid, "shim.pid")) as f:
            out.append(int(f.read()))
    return out


def shim_pids_peer(ctd: Containerd) -> list[int]:
    return [p for p in containerd._pids_with_cmdline(b"containerd-shim-runc-v2")
            if ctd.socket.encode() in open(f"/proc/{p}/cmdline", "rb").read()]


def batch_start(start: Callable[[int], object], pids: Callable[[], list[int]], n: int) -> tuple[float, dict[int, float]]:
    """Seconds to start N containers (START(i) each), and {count: median shim PSS kB}
    at 1, 10 and N running (measured with the clock stopped)."""
    elapsed, pss = 0.0, {}
    for i in range(n):
        t = time.perf_counter()
        start(i)
        elapsed += time.perf_counter() - t
        if i + 1 in (1, 10, n):
            pss[i + 1] = statistics.median(pss_kb(p) for p in pids())
    return elapsed, pss


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--batch-rounds", type=int, default=2)
    a = ap.parse_args()
    tag = f"corral-bench-{uuid.uuid4().hex[:6]}"
    with Registry() as reg:
        image = containerd.push_busybox(reg)
        with Runtimed(tag=tag, sandbox_image=image, registries=[reg.host]) as rtd, \
                Containerd(tag=tag + "c", sandbox_image=image, registries=[reg.host]) as ctd:
            rtd.start()  # (Containerd's __enter__ started containerd already: a second
            # start() would leave the first one running, unstopped, after the bench)
            ours(rtd, "pull", image)
            tar = os.path.join(rtd.dir, "busybox.tar")
            svc = ImageService(os.path.join(rtd.root, "images"),
                               content=FileContentStore(os.path.join(rtd.root, "content")),
                               snapshotters={"n": NativeSnapshotter(os.path.join(rtd.dir, "n"))},
                               default_snapshotter="n")
            with open(tar, "wb") as f:
                svc.export("default", [image], f)
            svc.close()
            peer(ctd, "images", "import", tar)
            runc = ["--runc-binary", containerd.RUNC]
            a_ms, b_ms = [], []
            for i in range(a.rounds):
                a_ms.append(timed(ours, rtd, "run", "--rm", image, f"r{i}", "/bin/true"))
                b_ms.append(timed(peer, ctd, "run", *runc, "--rm", image, f"r{i}", "/bin/true"))
            sides: dict[str, tuple[Callable[[int], object], Callable[[], list[int]],
                                   Callable[[], None]]] = {
                "ours": (lambda i: ours(rtd, "run", "-d", image, f"s{i}", "sleep", "600"),
                         lambda: shim_pids_ours(rtd), lambda: remove_ours(rtd, a.batch)),
                "peer": (lambda i: peer(ctd, "run", *runc, "-d", image, f"s{i}", "sleep",
                                        "600"),
                         lambda: shim_pids_peer(ctd), lambda: remove_peer(ctd, a.batch)),
            }
            batch: dict[str, list[float]] = {"ours": [], "peer": []}
            pss: dict[str, dict[int, list[float]]] = {"ours": {}, "peer": {}}
            for r in range(a.batch_rounds):
                for side in (("ours", "peer") if r % 2 == 0 else ("peer", "ours")):
                    start, pids, remove = sides[side]
                    try:
                        took, kb = batch_start(start, pids, a.batch)
                    finally:
                        remove()
                    batch[side].append(took)
                    for count, v in kb.items():
                        pss[side].setdefault(count, []).append(v)
    mo, mp = statistics.median(a_ms), statistics.median(b_ms)
    ratio = statistics.median(x / y for x, y in zip(a_ms, b_ms, strict=True))
    bo, bp = statistics.median(batch["ours"]), statistics.median(batch["peer"])
    b_ratio = statistics.median(x / y for x, y in zip(batch["ours"], batch["peer"],
                                                      strict=True))
    print(f"run --rm /bin/true: corral-ctr median {mo:.1f} ms, ctr median {mp:.1f} ms, "
          f"median ratio {ratio:.2f} (target <= 0.5)")
    print(f"{a.batch} sleep containers started: corral {bo:.2f} s, containerd {bp:.2f} s, "
          f"median ratio {b_ratio:.2f} ({a.batch_rounds} alternating rounds)")
    for count in sorted(pss["ours"]):
        po, pp = statistics.median(pss["ours"][count]), statistics.median(pss["peer"][count])
        print(f"shim PSS per container with {count} running: corral {po / 1024:.2f} MB, "
              f"containerd-shim-runc-v2 {pp / 1024:.2f} MB, ratio {po / pp:.2f} "
              "(target <= 0.25)")
    po, pp = statistics.median(pss["ours"][a.batch]), statistics.median(pss["peer"][a.batch])
    print(json.dumps({"bench": f"service_vs_containerd.shim_pss_{a.batch}", "ours": po,
                      "peer": pp, "ratio": round(po / pp, 3), "unit": "kB"}))
    print(json.dumps({"bench": f"service_vs_containerd.start_{a.batch}_sleep",
                      "ours": round(bo, 3), "peer": round(bp, 3), "ratio": round(b_ratio, 3),
                      "unit": "s"}))
    print(json.dumps({"bench": "service_vs_containerd.run_rm_true", "ours": round(mo, 2),
                      "peer": round(mp, 2), "ratio": round(ratio, 3), "unit": "ms"}))
    return 0


def remove_ours(rtd: Runtimed, n: int) -> None:
    subprocess.run([PYTHON, "-m", "runtime.service.ctr.main", "--socket", rtd.socket,
                    "rm", *[f"s{i}" for i in range(n)]], cwd=ROOT, capture_output=True,
                   check=False)


def remove_peer(ctd: Containerd, n: int) -> None:
    for i in range(n):
        subprocess.run([CTR, "-a", ctd.socket, "-n", "default", "task", "kill", "-s", "9",
                        f"s{i}"], capture_output=True, check=False)
    for i in range(n):
        subprocess.run([CTR, "-a", ctd.socket, "-n", "default", "task", "rm", "-f",
                        f"s{i}"], capture_output=True, check=False)
        subprocess.run([CTR, "-a", ctd.socket, "-n", "default", "container", "rm",
                        f"s{i}"], capture_output=True, check=False)


if __name__ == "__main__":
    sys.exit(main())
