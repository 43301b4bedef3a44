"""corral-runc vs runc: `run` of busybox /bin/true on the same bundle, alternating.

Prints per-runtime medians, the median of the per-pair ratios (ours / runc), the peak RSS
of each runtime's process, and as its last line the JSON result `make bench` collects.
Run as root: python3 bench/runtime_vs_runc.py [--runs N]
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.support import busybox  # noqa: E402

OURS = os.path.join(ROOT, ".venv", "bin", "corral-runc")
PEER = shutil.which("runc") or "/usr/sbin/runc"


DEVNULL = [(os.POSIX_SPAWN_OPEN, n, os.devnull, os.O_RDWR, 0) for n in (0, 1, 2)]


def one(binary: str, state: str, bundle: str, cid: str) -> float:
    """Wall time (ms) of `binary run`."""
    argv = [binary, "--root", state, "run", "--bundle", bundle, cid]
    t0 = time.perf_counter()
    pid = os.posix_spawn(binary, argv, os.environ, file_actions=DEVNULL)
    _, status = os.waitpid(pid, 0)
    elapsed = (time.perf_counter() - t0) * 1000
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{binary} run failed with status {status}")
    return elapsed


def peak_rss(binary: str, state: str, bundle: str, cid: str) -> int:
    """Peak RSS (KiB) of `binary run` and the processes it waited for, measured by GNU
    time: a small process whose own memory does not inflate the figure (a child of this
    Python process would carry our high-water mark across its exec)."""
    import subprocess
    p = subprocess.run(["/usr/bin/time", "-f", "%M", binary, "--root", state, "run",
                        "--bundle", bundle, cid], capture_output=True, text=True, check=True)
    return int(p.stderr.strip().splitlines()[-1])


def main() -> None:
    runs = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 40
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
        rootfs = busybox.build_rootfs(os.path.join(tmp, "rootfs"))
        cfg = busybox.config(["/bin/true"])
        linux = cfg["linux"]
        assert isinstance(linux, dict)
        linux["cgroupsPath"] = "/corral-bench"
        bundle = busybox.write_bundle(os.path.join(tmp, "bundle"), rootfs, cfg)
        state = os.path.join(tmp, "state")
        ours: list[float] = []
        peer: list[float] = []
        ratios: list[float] = []
        for i in range(runs + 3):
            a = one(OURS, state + "-ours", bundle, f"bench-{i}")
            b = one(PEER, state + "-runc", bundle, f"bench-{i}")
            if i < 3:  # warm-up: page cache, pyc files
                continue
            ours.append(a)
            peer.append(b)
            ratios.append(a / b)
        rss = {"ours": max(peak_rss(OURS, state + "-ours", bundle, f"rss-{i}")
                           for i in range(3)),
               "peer": max(peak_rss(PEER, state + "-runc", bundle, f"rss-{i}")
                           for i in range(3))}
    print(f"corral-runc run: median {statistics.median(ours):.1f} ms "
          f"(p10 {statistics.quantiles(ours, n=10)[0]:.1f}, p90 "
          f"{statistics.quantiles(ours, n=10)[-1]:.1f}), peak RSS {rss['ours']} KiB")
    print(f"runc run:        median {statistics.median(peer):.1f} ms "
          f"(p10 {statistics.quantiles(peer, n=10)[0]:.1f}, p90 "
          f"{statistics.quantiles(peer, n=10)[-1]:.1f}), peak RSS {rss['peer']} KiB")
    print(json.dumps({
        "bench": "runtime_vs_runc", "ours": round(statistics.median(ours), 2),
        "peer": round(statistics.median(peer), 2), "ratio": round(statistics.median(ratios), 3),
        "unit": "ms", "runs": runs, "ours_peak_rss_kib": rss["ours"],
        "peer_peak_rss_kib": rss["peer"],
    }))


if __name__ == "__main__":
    main()
