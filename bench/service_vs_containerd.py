"""corral-runtimed + corral-ctr against containerd + ctr, on one busybox image.

    1. `corral-ctr run --rm IMAGE ID /bin/true` vs `ctr run --rm IMAGE ID /bin/true`,
       alternating, N rounds (the image present in both: pulled into ours, and our export
       imported into the containerd the bench starts); the median ratio.
    2. 100 `sleep` containers started (-d) on each: wall time of the whole batch.
    3. PSS per running container of our shim vs containerd-shim-runc-v2 (smaps_rollup).

The last line is JSON: {"bench", "ours", "peer", "ratio", "unit"} for the run median.
Usage: python bench/service_vs_containerd.py [--rounds N] [--batch N]   (root)
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


def timed(fn: object, *args: str) -> float:
    t = time.perf_counter()
    fn(*args)  # type: ignore[operator]
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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--batch", type=int, default=100)
    a = ap.parse_args()
    tag = f"corral-bench-{uuid.uuid4().hex[:6]}"
    with Registry() as reg:
        image = containerd.push_busybox(reg)
        with Runtimed(tag=tag, sandbox_image=image, registries=[reg.host]) as rtd, \
                Containerd(tag=tag + "c", sandbox_image=image, registries=[reg.host]) as ctd:
            rtd.start()
            ctd.start()
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
            t = time.perf_counter()
            for i in range(a.batch):
                ours(rtd, "run", "-d", image, f"s{i}", "sleep", "600")
            batch_ours = time.perf_counter() - t
            t = time.perf_counter()
            for i in range(a.batch):
                peer(ctd, "run", *runc, "-d", image, f"s{i}", "sleep", "600")
            batch_peer = time.perf_counter() - t
            pss_ours = statistics.median(pss_kb(p) for p in shim_pids_ours(rtd))
            pss_peer = statistics.median(pss_kb(p) for p in shim_pids_peer(ctd))
            for i in range(a.batch):
                with_err = subprocess.run([CTR, "-a", ctd.socket, "-n", "default", "task", "kill",
                                           "-s", "9", f"s{i}"], capture_output=True, check=False)
                del with_err
            time.sleep(1)
            for i in range(a.batch):
                subprocess.run([CTR, "-a", ctd.socket, "-n", "default", "task", "rm", "-f",
                                f"s{i}"], capture_output=True, check=False)
                subprocess.run([CTR, "-a", ctd.socket, "-n", "default", "container", "rm",
                                f"s{i}"], capture_output=True, check=False)
            subprocess.run([PYTHON, "-m", "runtime.service.ctr.main", "--socket", rtd.socket,
                            "rm", *[f"s{i}" for i in range(a.batch)]], cwd=ROOT,
                           capture_output=True, check=False)
    mo, mp = statistics.median(a_ms), statistics.median(b_ms)
    ratio = statistics.median(x / y for x, y in zip(a_ms, b_ms, strict=True))
    print(f"run --rm /bin/true: corral-ctr median {mo:.1f} ms, ctr median {mp:.1f} ms, "
          f"median ratio {ratio:.2f} (target <= 0.5)")
    print(f"{a.batch} sleep containers started: corral {batch_ours:.2f} s, "
          f"containerd {batch_peer:.2f} s, ratio {batch_ours / batch_peer:.2f}")
    print(f"shim PSS per container: corral {pss_ours / 1024:.2f} MB, containerd-shim-runc-v2 "
          f"{pss_peer / 1024:.2f} MB, ratio {pss_ours / pss_peer:.2f} (target <= 0.25)")
    print(json.dumps({"bench": "service_vs_containerd.run_rm_true", "ours": round(mo, 2),
                      "peer": round(mp, 2), "ratio": round(ratio, 3), "unit": "ms"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
