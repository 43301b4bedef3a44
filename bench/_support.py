"""Shared by bench/api_write.py and bench/watch_fanout.py: a real etcd and a real
corral-controlplane (TLS, admin.conf) started for the run, and the statistics both print.

    with Cluster() as c:         etcd on free ports + corral-controlplane over TLS
        c.config                 the admin's ClientConfig (from DATA_DIR/admin.conf)
        c.etcd_target            "127.0.0.1:PORT" for raw etcd calls (pyetcd's stubs)
        c.cp_pid                 the controlplane's PID (for py-spy; with --workers, the
                                 primary's: py-spy --subprocesses follows the others)
        c.etcd_pid               etcd's PID (its CPU time per call, both sides)
    CONNECTIONS                  TCP connections per benchmark client, so the kernel
                                 spreads them over the controlplane's --workers processes
"""

from __future__ import annotations

import math
import os
import sys
from types import TracebackType

CONNECTIONS = 8
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from api.client import ClientConfig  # noqa: E402
from tests.support.controlplane import ControlPlane  # noqa: E402
from tests.support.etcd import EtcdServer  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    """The Q-th percentile (0..100) by the nearest-rank method; nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def etcd_txns(endpoint: str) -> float:
    """Txn calls etcd has answered OK so far (its /metrics): writes per Txn shows how
    well the API server's group commit batches."""
    import re
    import urllib.request
    with urllib.request.urlopen(f"{endpoint}/metrics", timeout=5) as r:
        text = r.read().decode()
    found = re.search(r'grpc_server_handled_total\{grpc_code="OK",grpc_method="Txn"'
                      r'[^}]*\} (\S+)', text)
    return float(found.group(1)) if found else math.nan


def _tree(pid: int) -> list[int]:
    """PID and its descendants (Linux /proc)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by PID and its live descendants: the cost of
    a benchmark's calls, which a loaded machine's throughput figures hide."""
    total = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


class Cluster:
    """etcd plus one corral-controlplane, the realistic path: TLS and client certificates."""

    def __init__(self, *, insecure: bool = False, workers: int = 0) -> None:
        self.etcd = EtcdServer()
        self.cp: ControlPlane | None = None
        self.insecure = insecure
        self.workers = workers  # corral-controlplane --workers; 0: its default (CPUs)

    @property
    def config(self) -> ClientConfig:
        assert self.cp is not None
        return self.cp.config()

    @property
    def etcd_target(self) -> str:
        return self.etcd.endpoint.removeprefix("http://")

    @property
    def etcd_pid(self) -> int:
        assert self.etcd.proc is not None
        return self.etcd.proc.pid

    @property
    def cp_pid(self) -> int:
        assert self.cp is not None and self.cp.proc is not None
        return self.cp.proc.pid

    def __enter__(self) -> Cluster:
        try:
            self.etcd.start()
            args = ("--workers", str(self.workers)) if self.workers else ()
            self.cp = ControlPlane(self.etcd.endpoint, insecure=self.insecure,
                                   args=args).start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def cleanup(self) -> None:
        if self.cp is not None:
            self.cp.cleanup()
            self.cp = None
        self.etcd.cleanup()

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.cleanup()
