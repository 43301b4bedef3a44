"""Shared by bench/api_write.py and bench/watch_fanout.py: a real etcd and a real
corral-controlplane (TLS, admin.conf) started for the run, and the statistics both print.

    with Cluster() as c:         etcd on free ports + corral-controlplane over TLS
        c.config                 the admin's ClientConfig (from DATA_DIR/admin.conf)
        c.etcd_target            "127.0.0.1:PORT" for raw etcd calls (pyetcd's stubs)
        c.cp_pid                 the controlplane's PID (for py-spy)
"""

from __future__ import annotations

import math
import os
import sys
from types import TracebackType

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


class Cluster:
    """etcd plus one corral-controlplane, the realistic path: TLS and client certificates."""

    def __init__(self, *, insecure: bool = False) -> None:
        self.etcd = EtcdServer()
        self.cp: ControlPlane | None = None
        self.insecure = insecure

    @property
    def config(self) -> ClientConfig:
        assert self.cp is not None
        return self.cp.config()

    @property
    def etcd_target(self) -> str:
        return self.etcd.endpoint.removeprefix("http://")

    @property
    def cp_pid(self) -> int:
        assert self.cp is not None and self.cp.proc is not None
        return self.cp.proc.pid

    def __enter__(self) -> Cluster:
        try:
            self.etcd.start()
            self.cp = ControlPlane(self.etcd.endpoint, insecure=self.insecure).start()
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
