"""The CPU one container costs the OCI runtime: create + start + delete, every process.

    for each run, alternating:
      ours, CLI         .venv/bin/corral-runc create/start/delete (fresh interpreters)
      ours, in-process  a fork of this process per verb, running runtime.oci.cli.main as
                        the shim does (runtime/service/shim/inproc.py: preload, gc.freeze,
                        spawn); the fork's own cost in this process is counted too
      runc              Debian's runc create/start/delete

    CPU = user + sys of every process involved: the runtime's processes, the container's
    init (the host's Python until its exec, then the workload) and the workload, all
    reaped by this process (a child subreaper), read from RUSAGE_CHILDREN (+ RUSAGE_SELF
    around the in-process forks).

The config is what the CRI path writes (runtime/service/bundle.py build_spec): busybox,
Docker's default seccomp profile and capabilities, masked/readonly paths, the default
/dev, a cgroup of its own under a parent (cpu shares, memory limit), new pid/ipc/uts/mount
namespaces and the network namespace of a holder process joined by path. Workloads:
`/bin/true` (exits at once; reaped before delete) and `sleep 60` (delete --force).

Prints a table and, last, the JSON line `make bench` collects: ours = the in-process
CPU-ms of a /bin/true container (the path a node uses), peer = runc's for the same config.
Run as root: python3 bench/container_cpu.py [--runs N] [--modes inproc,cli,runc]
(the in-process mode imports the runtime from this script's tree)
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import gc
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.support import busybox  # noqa: E402

# CORRAL_RUNC: another launcher (e.g. of an older tree, to compare before/after a change)
OURS = os.environ.get("CORRAL_RUNC") or os.path.join(ROOT, ".venv", "bin", "corral-runc")
PEER = shutil.which("runc") or "/usr/sbin/runc"
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
PR_SET_CHILD_SUBREAPER = 36
WORKLOADS = {"true": ["/bin/true"], "sleep": ["/bin/sleep", "60"]}
MODES = ("inproc", "cli", "runc")


def cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Runner:
    """Runs one runtime verb and waits for it; `spent` adds this process's own CPU."""

    def __init__(self, mode: str, state: str) -> None:
        self.mode = mode
        self.state = state
        self.spent = 0.0
        self.devnull = os.open(os.devnull, os.O_RDWR)
        if mode == "inproc":
            from runtime.service.shim import inproc
            inproc.preload()
            inproc.use_environ(ENV)  # as the fork server does: the children start with it
            gc.collect()
            gc.freeze()
            self.inproc = inproc

    def __call__(self, *args: str) -> None:
        flags = ["--root", self.state]
        argv = [*flags, *args]
        if self.mode == "inproc" and args[0] in self.inproc.IN_CALLER:
            # as the shim runs start (when its holder follows): in this process, no fork
            t0 = cpu_self()
            rc = self.inproc.call(args, runtime_flags=flags,
                                  stdio=(self.devnull, self.devnull, 2))
            self.spent += cpu_self() - t0
            if rc != 0:
                raise SystemExit(f"{self.mode}: {' '.join(args)} failed with exit code {rc}")
            return
        if self.mode == "inproc":
            t0 = cpu_self()
            pid = self.inproc.spawn(argv, stdio=(self.devnull, self.devnull, 2), env=ENV)
            self.spent += cpu_self() - t0
        else:
            binary = PEER if self.mode == "runc" else OURS
            pid = os.posix_spawn(binary, [binary, *argv], ENV, file_actions=[
                (os.POSIX_SPAWN_DUP2, self.devnull, 0), (os.POSIX_SPAWN_DUP2, self.devnull, 1)])
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{self.mode}: {' '.join(args)} failed with status {status}")


def one(run: Runner, *, bundle: str, cid: str, workload: str) -> tuple[float, float]:
    """CPU-ms and wall-ms of one container's create, start and delete."""
    pid_file = os.path.join(run.state + "-pids", cid)
    run.spent = 0.0
    c0, w0 = cpu_children(), time.perf_counter()
    run("create", "--bundle", bundle, "--pid-file", pid_file, cid)
    run("start", cid)
    with open(pid_file) as f:
        init = int(f.read())
    if workload == "true":
        os.waitpid(init, 0)  # ours since create exited (we are its subreaper)
        run("delete", cid)
    else:
        run("delete", "--force", cid)
        os.waitpid(init, 0)
    wall = time.perf_counter() - w0
    os.unlink(pid_file)
    return (cpu_children() - c0 + run.spent) * 1000, wall * 1000


def netns_holder() -> subprocess.Popen[bytes]:
    """A process in a network namespace of its own, as a pod sandbox's would be."""
    holder = subprocess.Popen(["unshare", "--net", "sleep", "3600"])
    mine = os.readlink("/proc/self/ns/net")
    for _ in range(500):
        try:
            if os.readlink(f"/proc/{holder.pid}/ns/net") != mine:
                return holder
        except OSError:
            pass
        time.sleep(0.002)
    holder.kill()
    raise SystemExit("unshare --net did not make a network namespace")


def cri_config(rootfs: str, args: list[str], *, netns: str, parent: str) -> dict[str, object]:
    from runtime.service import bundle as B

    cfg = B.ContainerConfig(
        name="bench", command=tuple(args),
        resources=B.Resources(cpu_shares=102, memory_limit_bytes=64 << 20),
        security=B.SecurityContext(seccomp=B.SECCOMP_DEFAULT),
        namespaces=(("network", netns),))
    return B.build_spec(config=cfg, image={}, rootfs=rootfs, default_cgroups_path=parent)


def set_cgroups_path(config: dict[str, Any], path: str) -> None:
    config["linux"]["cgroupsPath"] = path


def hierarchies() -> list[str]:
    """The mount points of this host's cgroup hierarchies (v1 and v2)."""
    with open("/proc/self/mountinfo") as f:
        rows = [line.split(" - ")[0].split()[4:5] + line.split(" - ")[1].split()[:1]
                for line in f]
    return [mp for mp, fstype in rows if fstype in ("cgroup", "cgroup2")]


def hold_parent_cgroups(name: str) -> None:
    """The containers' parent cgroup in every hierarchy, kept non-empty by a child
    `hold`, so nothing that prunes empty cgroups can take it away between containers."""
    for mp in hierarchies():
        os.makedirs(os.path.join(mp, name, "hold"), exist_ok=True)


def remove_parent_cgroups(name: str) -> None:
    for mp in hierarchies():
        for d in (os.path.join(mp, name, "hold"), os.path.join(mp, name)):
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass


def modes_arg(value: str) -> list[str]:
    modes = value.split(",")
    unknown = [m for m in modes if m not in MODES]
    if unknown or not value:
        raise argparse.ArgumentTypeError(f"unknown mode(s) {', '.join(unknown) or repr(value)};"
                                         f" expected a comma-separated subset of "
                                         f"{','.join(MODES)}")
    return modes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="CPU of one container's create+start+delete",
                                 allow_abbrev=False)
    ap.add_argument("--runs", type=int, default=15, help="measured runs (after 2 warm-ups)")
    ap.add_argument("--modes", type=modes_arg, default=list(MODES),
                    help=f"comma-separated, from {','.join(MODES)} (default: all)")
    return ap.parse_args(argv)


def main() -> None:
    args = parse_args()
    runs, modes = args.runs, args.modes
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    parent = f"corral-bench-cpu-{os.getpid()}"
    holder = netns_holder()
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    try:
        hold_parent_cgroups(parent)
        with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
            rootfs = busybox.build_rootfs(os.path.join(tmp, "rootfs"))
            bundles = {}
            for w, args in WORKLOADS.items():
                cfg = cri_config(rootfs, args, netns=f"/proc/{holder.pid}/ns/net",
                                 parent=f"/{parent}/c")
                bundles[w] = busybox.write_bundle(os.path.join(tmp, f"bundle-{w}"), rootfs, cfg)
            runners = {}
            for m in modes:
                os.makedirs(os.path.join(tmp, m + "-pids"))
                runners[m] = Runner(m, os.path.join(tmp, m))
            for i in range(runs + 2):
                for w in WORKLOADS:
                    for m in modes:
                        # each container its own cgroup under the parent
                        cid = f"b{i}-{w}"
                        b = bundles[w]
                        busybox.edit_config(b, functools.partial(
                            set_cgroups_path, path=f"/{parent}/{cid}"))
                        got = one(runners[m], bundle=b, cid=cid, workload=w)
                        if i >= 2:  # warm-up: page cache, pyc files
                            results.setdefault((m, w), []).append(got)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        remove_parent_cgroups(parent)
    print(f"load: {os.getloadavg()[0]:.2f} (1-min), runs: {runs}")
    print(f"{'runtime':<10} {'workload':<8} {'CPU-ms med':>10} {'p90':>7} {'wall-ms med':>11}")
    med: dict[tuple[str, str], float] = {}
    for (m, w), xs in results.items():
        cpu = [x[0] for x in xs]
        wall = [x[1] for x in xs]
        med[m, w] = statistics.median(cpu)
        p90 = statistics.quantiles(cpu, n=10)[-1] if len(cpu) > 1 else cpu[0]
        print(f"{m:<10} {w:<8} {med[m, w]:>10.1f} {p90:>7.1f} {statistics.median(wall):>11.1f}")
    out: dict[str, object] = {"bench": "container_cpu", "unit": "CPU-ms", "runs": runs}
    ours = med.get(("inproc", "true"), med.get(("cli", "true")))
    peer = med.get(("runc", "true"))
    out["ours"] = None if ours is None else round(ours, 1)
    out["peer"] = None if peer is None else round(peer, 1)
    out["ratio"] = round(ours / peer, 3) if ours and peer else None
    for (m, w), v in sorted(med.items()):
        out[f"{m}_{w}"] = round(v, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
