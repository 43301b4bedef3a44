"""A task's usage from its cgroup files, on a v1, hybrid or v2 host (CRI ContainerStats).

    cgroup_controller_dirs(container_id, cgroups_path)  {controller: directory}, kept in
                                                        the task's record at create
    read_stats(dirs)  cpu: cpuacct.usage (v1) | cpu.stat usage_usec (v2)
                      memory: usage_in_bytes - total_inactive_file (v1) |
                              memory.current - inactive_file (v2): the working set
                      pids.current
A file that is missing or unreadable counts as 0.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from runtime.oci.cgroups.host import cgroup_dirs, read_host


@dataclass(frozen=True)
class Stats:
    timestamp_ns: int
    cpu_usage_ns: int
    memory_usage_bytes: int
    memory_working_set_bytes: int
    pids: int


def cgroup_controller_dirs(*, container_id: str, cgroups_path: str) -> dict[str, str]:
    """{controller: directory} of the container's cgroup (v1, hybrid or v2 host)."""
    host = read_host()
    dirs = cgroup_dirs(host, container_id=container_id, cgroups_path=cgroups_path)
    out: dict[str, str] = {}
    for h in host.hierarchies:
        if h.key == "unified":
            if host.mode == "v2":
                for ctl in ("cpu", "cpuacct", "memory", "pids"):
                    out[ctl] = dirs[h.key]
            continue
        for ctl in h.controllers:
            out[ctl] = dirs[h.key]
    return out


def _read_flat(path: str) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open(path) as f:
            for line in f:
                k, _, v = line.partition(" ")
                if v.strip().isdigit():
                    out[k] = int(v)
    except OSError:
        pass
    return out


def read_int(path: str) -> int:
    """The integer in PATH; 0 when it is missing, unreadable or not one."""
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return 0
    return int(text) if text.isdigit() else 0


def read_stats(ctl: dict[str, str]) -> Stats:
    """The usage now, from the controller directories CTL."""
    cpu = ctl.get("cpuacct", "")
    if cpu and os.path.exists(os.path.join(cpu, "cpuacct.usage")):
        cpu_ns = read_int(os.path.join(cpu, "cpuacct.usage"))
    else:
        cpu_ns = _read_flat(os.path.join(ctl.get("cpu", ""), "cpu.stat")).get(
            "usage_usec", 0) * 1000
    mem = ctl.get("memory", "")
    mstat = _read_flat(os.path.join(mem, "memory.stat"))
    if os.path.exists(os.path.join(mem, "memory.usage_in_bytes")):
        usage = read_int(os.path.join(mem, "memory.usage_in_bytes"))
        inactive = mstat.get("total_inactive_file", 0)
    else:
        usage = read_int(os.path.join(mem, "memory.current"))
        inactive = mstat.get("inactive_file", 0)
    return Stats(timestamp_ns=time.time_ns(), cpu_usage_ns=cpu_ns,
                 memory_usage_bytes=usage,
                 memory_working_set_bytes=max(0, usage - inactive),
                 pids=read_int(os.path.join(ctl.get("pids", ""), "pids.current")))
