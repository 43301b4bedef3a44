"""cgroup v2 controllers, and the v2 freezer / kill / controller enabling.

The OCI resources are v1-shaped; the conversions are runc's (libcontainer/cgroups/fs2):
  cpu.shares 2..262144      -> cpu.weight 1 + (shares - 2) * 9999 / 262142
  cpu.quota / cpu.period    -> cpu.max "quota period" ("max" when quota is -1)
  memory.swap (memory+swap) -> memory.swap.max = swap - limit
  blockIO.weight 10..1000   -> io.bfq.weight as is (BFQ), else io.weight 1 + (w - 10) * 9999 / 990
  throttle*Device           -> io.max "major:minor rbps=N" (0 = no limit = "max")
Settings v2 has no file for (realtime, kernel memory, swappiness, disableOOMKiller) are
refused with Unsupported rather than dropped.
"""

from __future__ import annotations

import os

from ..errors import ConfigError, SetupError, Unsupported
from .devices import DevicesV2
from .fs import CgroupFiles, Controller, requested
from .v1 import Cpuset, HugetlbV1, NetClsV1, NetPrioV1, Pids, Rdma

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def shares_to_weight(shares: int) -> int:
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_to_io_weight(weight: int) -> int:
    return 1 + ((weight - 10) * 9999) // 990


def _limit(v: int) -> str:
    return "max" if v < 0 else str(v)


class CpuV2(Controller):
    name = "cpu"
    section = "cpu"
    keys = ("shares", "quota", "period", "burst", "idle", "realtimePeriod", "realtimeRuntime")

    def apply(self, resources: dict[str, Any], path: str) -> None:
        c = self.section_of(resources)
        for key in ("realtimePeriod", "realtimeRuntime"):
            if requested(c.get(key)):
                raise Unsupported(self.field_of(key), "cgroup v2 has no real-time CPU "
                                                      "bandwidth (cpu.rt_*)")
        if c.get("shares"):
            self.put(path, "cpu.weight", str(shares_to_weight(c["shares"])), "shares")
        quota, period, burst = c.get("quota") or 0, c.get("period") or 0, c.get("burst")
        burst_done = burst is None or self.put(
            path, "cpu.max.burst", str(burst), "burst", missing_ok=not burst,
            defer=bool(quota and burst))
        if quota or period:
            # only the period changes: keep the quota
            value = _limit(quota) if quota else self.get(path, "cpu.max").split()[0]
            self.put(path, "cpu.max", f"{value} {period}" if period else value,
                     "quota" if quota else "period")
        if not burst_done and burst:
            self.put(path, "cpu.max.burst", str(burst), "burst")
        if c.get("idle") is not None:
            self.put(path, "cpu.idle", str(c["idle"]), "idle", missing_ok=not c["idle"])


def swap_max(limit: int, swap: int) -> str | None:
    """memory.swap.max for OCI memory.limit / memory.swap (memory+swap); None: leave it.

    ValueError when the swap limit cannot be expressed without a memory limit."""
    if swap == -1 or (limit == -1 and swap == 0):
        return "max"
    if swap == 0:
        return None
    if limit <= 0:
        raise ValueError("on cgroup v2 the swap limit is memory.swap.max = swap - limit, so "
                         "memory.limit must be set with it")
    if swap < limit:
        raise ValueError(f"memory+swap limit must be >= memory.limit ({limit}), got {swap}")
    return str(swap - limit)


class MemoryV2(Controller):
    name = "memory"
    section = "memory"
    keys = ("limit", "reservation", "swap", "kernel", "kernelTCP", "swappiness",
            "disableOOMKiller", "checkBeforeUpdate")

    def apply(self, resources: dict[str, Any], path: str) -> None:
        m = self.section_of(resources)
        for key, why in (("kernel", "no kernel memory limit"),
                         ("kernelTCP", "no kernel TCP memory limit"),
                         ("disableOOMKiller", "no switch to disable the OOM killer")):
            if requested(m.get(key)):
                raise Unsupported(self.field_of(key), f"cgroup v2 has {why}")
        if m.get("swappiness") is not None:
            raise Unsupported(self.field_of("swappiness"), "cgroup v2 has no per-cgroup "
                                                           "swappiness")
        if m.get("useHierarchy") is False:
            raise Unsupported(self.field_of("useHierarchy"), "cgroup v2 is always hierarchical")
        limit, swap = m.get("limit") or 0, m.get("swap") or 0
        try:
            swap_value = swap_max(limit, swap)
        except ValueError as e:
            raise ConfigError(self.field_of("swap"), str(e)) from None
        if m.get("checkBeforeUpdate") and limit > 0:
            usage = int(self.get(path, "memory.current"))
            if limit < usage:
                raise ConfigError(self.field_of("limit"), f"{limit} is below the current "
                                                          f"usage {usage} (checkBeforeUpdate)")
        if swap_value is not None:
            # no memory.swap.max: a kernel without swap; "max" and "0" are then true anyway
            self.put(path, "memory.swap.max", swap_value, "swap",
                     missing_ok=swap_value in ("max", "0"))
        if limit:
            self.put(path, "memory.max", _limit(limit), "limit")
        if m.get("reservation"):
            self.put(path, "memory.low", _limit(m["reservation"]), "reservation")


_IO_MAX = (("throttleReadBpsDevice", "rbps"), ("throttleWriteBpsDevice", "wbps"),
           ("throttleReadIOPSDevice", "riops"), ("throttleWriteIOPSDevice", "wiops"))


class IoV2(Controller):
    name = "io"
    section = "blockIO"
    keys = ("weight", "leafWeight", "weightDevice", *(k for k, _ in _IO_MAX))

    def apply(self, resources: dict[str, Any], path: str) -> None:
        b = self.section_of(resources)
        if b.get("leafWeight"):
            raise Unsupported(self.field_of("leafWeight"), "cgroup v2 has no leaf weights")
        devices = b.get("weightDevice") or []
        bfq = bool(b.get("weight") or devices) and os.path.exists(f"{path}/io.bfq.weight")
        if b.get("weight"):
            if bfq:
                self.put(path, "io.bfq.weight", str(b["weight"]), "weight")
            else:
                self.put(path, "io.weight", str(blkio_to_io_weight(b["weight"])), "weight")
        for i, d in enumerate(devices):
            if d.get("leafWeight"):
                raise Unsupported(self.field_of(f"weightDevice[{i}].leafWeight"),
                                  "cgroup v2 has no leaf weights")
            if not d.get("weight"):
                continue
            if not bfq:
                raise Unsupported(self.field_of(f"weightDevice[{i}]"), "per-device weights "
                                  "need the BFQ I/O scheduler (io.bfq.weight)")
            self.put(path, "io.bfq.weight", f"{d['major']}:{d['minor']} {d['weight']}",
                     f"weightDevice[{i}]")
        for key, knob in _IO_MAX:
            for i, d in enumerate(b.get(key) or []):
                rate = d["rate"] or "max"  # 0 lifts the limit, as on v1
                self.put(path, "io.max", f"{d['major']}:{d['minor']} {knob}={rate}",
                         f"{key}[{i}]")


class HugetlbV2(HugetlbV1):
    suffix = ".max"


class Unified(Controller):
    """linux.resources.unified: raw v2 files, written last so they override the rest."""

    name = "unified"
    section = "unified"
    absent = "needs a cgroup v2 host"

    def apply(self, resources: dict[str, Any], path: str) -> None:
        for key, value in (resources.get("unified") or {}).items():
            if "/" in key or key in (".", ".."):
                raise ConfigError(self.field_of(key), 'keys must be file names like '
                                                      '"memory.high"')
            self.put(path, key, value, key)


CONTROLLERS: tuple[type[Controller], ...] = (
    Cpuset, CpuV2, MemoryV2, Pids, IoV2, HugetlbV2, NetClsV1, NetPrioV1, Rdma, DevicesV2,
    Unified,
)
V1_ONLY = frozenset({"net_cls", "net_prio"})


def enable_controllers(files: CgroupFiles, mountpoint: str, leaf: str,
                       only: frozenset[str] | None = None) -> None:
    """Enable in cgroup.subtree_control of every ancestor of `leaf` (from the mount down)
    the controllers available there (or those of them in `only`).

    Best effort, as runc: a busy ancestor (processes in an inner node) refuses; the file
    that then does not exist in the leaf names the problem when a value is written."""
    rel = leaf[len(mountpoint):].strip("/").split("/")
    level = mountpoint.rstrip("/")
    for part in rel:
        try:
            available = files.read(f"{level}/cgroup.controllers").split()
            enabled = files.read(f"{level}/cgroup.subtree_control").split()
        except OSError:
            return
        missing = [c for c in available if c not in enabled and (only is None or c in only)]
        if missing:
            ctl = f"{level}/cgroup.subtree_control"
            try:
                files.write(ctl, " ".join("+" + c for c in missing))
            except OSError:
                for c in missing:
                    try:
                        files.write(ctl, "+" + c)
                    except OSError:
                        pass
        level = f"{level}/{part}"


def _events(files: CgroupFiles, path: str) -> dict[str, str]:
    out = {}
    for line in files.read(f"{path}/cgroup.events").splitlines():
        key, _, value = line.partition(" ")
        out[key] = value.strip()
    return out


def freeze(files: CgroupFiles, path: str, timeout: float = 2.0) -> None:
    """cgroup.freeze = 1, then wait for "frozen 1" in cgroup.events."""
    import time

    files.write(f"{path}/cgroup.freeze", "1")
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while _events(files, path).get("frozen") != "1":
        if time.monotonic() > deadline:
            files.write(f"{path}/cgroup.freeze", "0")
            raise SetupError(f"{path}: not frozen after {timeout:g}s; thawed it again")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def thaw(files: CgroupFiles, path: str) -> None:
    files.write(f"{path}/cgroup.freeze", "0")


def frozen(files: CgroupFiles, path: str) -> bool:
    return _events(files, path).get("frozen") == "1"


def oom_kill_count(files: CgroupFiles, path: str) -> int:
    for line in files.read(f"{path}/memory.events").splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            return int(value)
    return 0
