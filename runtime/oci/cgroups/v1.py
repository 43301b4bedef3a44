"""cgroup v1 controllers: one class per controller, each writing its part of linux.resources.

Write orders follow runc's cgroupfs driver (libcontainer/cgroups/fs), because the kernel
checks every value against the others as it is written:
  cpu     period, burst, quota, then period / burst again if the kernel refused them
          (EINVAL) before the new quota was in place, idle, rt period, rt runtime
  memory  memsw before limit when raising, limit before memsw when lowering
          (the kernel keeps memory.memsw.limit_in_bytes >= memory.limit_in_bytes)
"""

from __future__ import annotations

import errno
import os

from ..errors import ConfigError, SetupError, Unsupported
from .devices import DevicesV1
from .fs import CgroupFiles, Controller, write_error

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class CpuV1(Controller):
    name = "cpu"
    section = "cpu"
    keys = ("shares", "quota", "period", "burst", "idle", "realtimePeriod", "realtimeRuntime")

    def apply(self, resources: dict[str, Any], path: str) -> None:
        c = self.section_of(resources)
        if c.get("shares"):
            self.put(path, "cpu.shares", str(c["shares"]), "shares")
        # burst <= quota and quota / period <= the parent's: write each value before the
        # one it may conflict with, and retry the first after the second when refused.
        period, quota, burst = c.get("period") or 0, c.get("quota") or 0, c.get("burst")
        period_done = not period or self.put(
            path, "cpu.cfs_period_us", str(period), "period", defer=bool(quota))
        burst_done = burst is None or self.put(
            path, "cpu.cfs_burst_us", str(burst), "burst", missing_ok=not burst,
            defer=bool(quota and burst))
        if quota:
            self.put(path, "cpu.cfs_quota_us", str(quota), "quota")
        if not period_done:
            self.put(path, "cpu.cfs_period_us", str(period), "period")
        if not burst_done and burst:
            self.put(path, "cpu.cfs_burst_us", str(burst), "burst")
        if c.get("idle") is not None:
            self.put(path, "cpu.idle", str(c["idle"]), "idle", missing_ok=not c["idle"])
        if c.get("realtimePeriod"):
            self.put(path, "cpu.rt_period_us", str(c["realtimePeriod"]), "realtimePeriod")
        if c.get("realtimeRuntime"):
            self.put(path, "cpu.rt_runtime_us", str(c["realtimeRuntime"]), "realtimeRuntime")


class Cpuset(Controller):
    """cpuset.cpus / cpuset.mems, the same files on v1 and v2."""

    name = "cpuset"
    section = "cpu"
    keys = ("cpus", "mems")

    def apply(self, resources: dict[str, Any], path: str) -> None:
        c = self.section_of(resources)
        if c.get("cpus"):
            self.put(path, "cpuset.cpus", c["cpus"], "cpus")
        if c.get("mems"):
            self.put(path, "cpuset.mems", c["mems"], "mems")


def init_cpuset(files: CgroupFiles, mountpoint: str, leaf: str) -> None:
    """Copy cpuset.cpus / cpuset.mems from the parent into every empty level from the mount
    down to `leaf`: v1 refuses tasks in a cpuset whose cpus or mems are empty."""
    rel = leaf[len(mountpoint):].strip("/")
    parent = mountpoint
    inherited = {n: files.read(f"{parent}/{n}").strip() for n in ("cpuset.cpus", "cpuset.mems")}
    for part in rel.split("/"):
        parent = f"{parent}/{part}"
        for name, value in inherited.items():
            own = files.read(f"{parent}/{name}").strip()
            if not own:
                files.write(f"{parent}/{name}", value)
            else:
                inherited[name] = own


class MemoryV1(Controller):
    name = "memory"
    section = "memory"
    keys = ("limit", "reservation", "swap", "kernel", "kernelTCP", "swappiness",
            "disableOOMKiller", "useHierarchy")

    def apply(self, resources: dict[str, Any], path: str) -> None:
        m = self.section_of(resources)
        limit, swap = m.get("limit") or 0, m.get("swap") or 0
        if limit == -1 and not swap:
            swap = -1  # unlimited memory means unlimited memory+swap, as in runc
        if limit and swap:
            current = int(self.get(path, "memory.limit_in_bytes"))
            if swap == -1 or current < swap:
                self._swap(path, swap)
                self._limit(path, limit)
            else:
                self._limit(path, limit)
                self._swap(path, swap)
        elif limit:
            self._limit(path, limit)
        elif swap:
            self._swap(path, swap)
        if m.get("reservation"):
            self.put(path, "memory.soft_limit_in_bytes", str(m["reservation"]), "reservation")
        if m.get("kernel"):
            self.put(path, "memory.kmem.limit_in_bytes", str(m["kernel"]), "kernel")
        if m.get("kernelTCP"):
            self.put(path, "memory.kmem.tcp.limit_in_bytes", str(m["kernelTCP"]), "kernelTCP")
        if m.get("disableOOMKiller") is not None:
            self.put(path, "memory.oom_control", "1" if m["disableOOMKiller"] else "0",
                     "disableOOMKiller")
        if m.get("swappiness") is not None:
            self.put(path, "memory.swappiness", str(m["swappiness"]), "swappiness")
        if m.get("useHierarchy") is not None:
            self.put(path, "memory.use_hierarchy", "1" if m["useHierarchy"] else "0",
                     "useHierarchy")

    def _limit(self, path: str, limit: int) -> None:
        full = f"{path}/memory.limit_in_bytes"
        try:
            self.files.write(full, str(limit))
        except OSError as e:
            refused = f"the kernel refused {str(limit)!r} in memory.limit_in_bytes"
            if e.errno == errno.EBUSY:
                usage = self.get(path, "memory.usage_in_bytes")
                peak = self.get(path, "memory.max_usage_in_bytes")
                raise ConfigError(self.field_of("limit"), f"{refused}: below the current "
                                                          f"usage {usage} (peak {peak})") from None
            if e.errno == errno.EINVAL and os.path.exists(f"{path}/memory.memsw.limit_in_bytes"):
                memsw = self.get(path, "memory.memsw.limit_in_bytes")
                raise ConfigError(self.field_of("limit"), f"{refused}: above the memory+swap "
                                  f"limit {memsw} (raise memory.swap with it)") from None
            raise write_error(e, field=self.field_of("limit"), path=full,
                              value=str(limit)) from None

    def _swap(self, path: str, swap: int) -> None:
        full = f"{path}/memory.memsw.limit_in_bytes"
        try:
            self.files.write(full, str(swap))
        except OSError as e:
            if e.errno != errno.ENOENT or not os.path.isdir(path):
                raise write_error(e, field=self.field_of("swap"), path=full,
                                  value=str(swap)) from None
            if swap != -1:  # unlimited is what a kernel without swap accounting does anyway
                raise Unsupported(self.field_of("swap"),
                                  "swap accounting is not enabled in this kernel (no "
                                  "memory.memsw.limit_in_bytes; boot with swapaccount=1)"
                                  ) from None


class Pids(Controller):
    """pids.max, the same file on v1 and v2."""

    name = "pids"
    section = "pids"
    keys = ("limit",)

    def apply(self, resources: dict[str, Any], path: str) -> None:
        limit = self.section_of(resources).get("limit")
        if limit is not None:
            self.put(path, "pids.max", str(limit) if limit > 0 else "max", "limit")


_THROTTLE = (("throttleReadBpsDevice", "blkio.throttle.read_bps_device"),
             ("throttleWriteBpsDevice", "blkio.throttle.write_bps_device"),
             ("throttleReadIOPSDevice", "blkio.throttle.read_iops_device"),
             ("throttleWriteIOPSDevice", "blkio.throttle.write_iops_device"))


class BlkioV1(Controller):
    name = "blkio"
    section = "blockIO"
    keys = ("weight", "leafWeight", "weightDevice", *(k for k, _ in _THROTTLE))

    def apply(self, resources: dict[str, Any], path: str) -> None:
        b = self.section_of(resources)
        devices = b.get("weightDevice") or []
        weight = "blkio.weight"  # CFQ's files, else BFQ's (as runc)
        if (b.get("weight") or devices) and not os.path.exists(f"{path}/blkio.weight"):
            weight = "blkio.bfq.weight"
        if b.get("weight"):
            self.put(path, weight, str(b["weight"]), "weight")
        if b.get("leafWeight"):
            self.put(path, "blkio.leaf_weight", str(b["leafWeight"]), "leafWeight")
        for i, d in enumerate(devices):
            dev = f"{d['major']}:{d['minor']}"
            if d.get("weight"):
                self.put(path, weight + "_device", f"{dev} {d['weight']}", f"weightDevice[{i}]")
            if d.get("leafWeight"):
                self.put(path, "blkio.leaf_weight_device", f"{dev} {d['leafWeight']}",
                         f"weightDevice[{i}]")
        for key, name in _THROTTLE:
            for i, d in enumerate(b.get(key) or []):
                self.put(path, name, f"{d['major']}:{d['minor']} {d['rate']}", f"{key}[{i}]")


class HugetlbV1(Controller):
    name = "hugetlb"
    section = "hugepageLimits"
    suffix = ".limit_in_bytes"

    def apply(self, resources: dict[str, Any], path: str) -> None:
        rsvd = True
        for i, h in enumerate(resources.get("hugepageLimits") or []):
            prefix, value = f"hugetlb.{h['pageSize']}", str(h["limit"])
            self.put(path, prefix + self.suffix, value, f"[{i}].limit")
            if rsvd:  # kernels >= 5.7 also account reservations; keep them in step
                rsvd = self.put(path, prefix + ".rsvd" + self.suffix, value, f"[{i}].limit",
                                missing_ok=True)

    def field_of(self, key: str) -> str:
        return f"{self.field}.hugepageLimits{key}"


class NetClsV1(Controller):
    name = "net_cls"
    section = "network"
    keys = ("classID",)

    def apply(self, resources: dict[str, Any], path: str) -> None:
        class_id = self.section_of(resources).get("classID")
        if class_id:
            self.put(path, "net_cls.classid", str(class_id), "classID")


class NetPrioV1(Controller):
    name = "net_prio"
    section = "network"
    keys = ("priorities",)

    def apply(self, resources: dict[str, Any], path: str) -> None:
        for i, p in enumerate(self.section_of(resources).get("priorities") or []):
            self.put(path, "net_prio.ifpriomap", f"{p['name']} {p['priority']}",
                     f"priorities[{i}]")


class Rdma(Controller):
    """rdma.max, the same file on v1 and v2."""

    name = "rdma"
    section = "rdma"

    def apply(self, resources: dict[str, Any], path: str) -> None:
        for dev, lim in (resources.get("rdma") or {}).items():
            parts = [dev]
            if lim.get("hcaHandles") is not None:
                parts.append(f"hca_handle={lim['hcaHandles']}")
            if lim.get("hcaObjects") is not None:
                parts.append(f"hca_object={lim['hcaObjects']}")
            if len(parts) > 1:
                self.put(path, "rdma.max", " ".join(parts), dev)


# The order of application: cpuset before cpu (as runc), memory before pids.
CONTROLLERS: tuple[type[Controller], ...] = (
    Cpuset, CpuV1, MemoryV1, Pids, BlkioV1, HugetlbV1, NetClsV1, NetPrioV1, Rdma, DevicesV1,
)


def freeze(files: CgroupFiles, path: str, timeout: float = 2.0) -> None:
    """freezer.state = FROZEN, then wait until the kernel reports FROZEN (not FREEZING)."""
    import time

    state = f"{path}/freezer.state"
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        files.write(state, "FROZEN")
        if files.read(state).strip() == "FROZEN":
            return
        if time.monotonic() > deadline:
            files.write(state, "THAWED")
            raise SetupError(f"{path}: still FREEZING after {timeout:g}s; thawed it again")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def thaw(files: CgroupFiles, path: str) -> None:
    files.write(f"{path}/freezer.state", "THAWED")


def frozen(files: CgroupFiles, path: str) -> bool:
    return files.read(f"{path}/freezer.state").strip() == "FROZEN"


def oom_kill_count(files: CgroupFiles, path: str) -> int:
    for line in files.read(f"{path}/memory.oom_control").splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            return int(value)
    return 0
