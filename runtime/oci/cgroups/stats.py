"""The "data" object of `runc events --stats`, read from v1 or v2 files.

Units are runc's: nanoseconds for CPU time (v1 cpuacct.stat ticks and v2 microseconds are
converted), bytes for memory. On v2, "swap" is reported as memory+swap, as v1's memsw is.
Files that do not exist (a controller not mounted or not enabled) leave zeros.
"""

from __future__ import annotations

import os

from .checks import huge_page_sizes
from .fs import CgroupFiles

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_UINT64 = (1 << 64) - 1


def _entry() -> dict[str, int]:
    return {"limit": 0, "usage": 0, "max": 0, "failcnt": 0}


def empty() -> dict[str, Any]:
    return {
        "cpu": {"usage": {"total": 0, "percpu": [], "kernel": 0, "user": 0},
                "throttling": {"periods": 0, "throttledPeriods": 0, "throttledTime": 0}},
        "memory": {"cache": 0, "usage": _entry(), "swap": _entry(), "kernel": _entry(),
                   "kernelTCP": _entry(), "raw": {}},
        "pids": {"current": 0, "limit": 0},
        "blkio": {"ioServiceBytesRecursive": [], "ioServicedRecursive": []},
        "hugetlb": {},
    }


class _Reader:
    """Reads control files of one directory; a missing file reads as None."""

    def __init__(self, files: CgroupFiles, path: str | None) -> None:
        self.files, self.path = files, path

    def text(self, name: str) -> str | None:
        if self.path is None:
            return None
        try:
            return self.files.read(f"{self.path}/{name}")
        except OSError:
            return None

    def num(self, name: str, max_value: int = 0) -> int:
        t = self.text(name)
        if t is None:
            return 0
        t = t.strip()
        return max_value if t == "max" else int(t or 0)

    def flat(self, name: str) -> dict[str, int]:
        """A "key value" per line file (memory.stat, cpu.stat, *.events)."""
        out = {}
        for line in (self.text(name) or "").splitlines():
            key, _, value = line.partition(" ")
            if value.strip().lstrip("-").isdigit():
                out[key] = int(value)
        return out


def _blkio_v1(r: _Reader, name: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for line in (r.text(name) or "").splitlines():
        parts = line.split()
        if len(parts) != 3 or ":" not in parts[0]:
            continue  # the "Total N" line
        major, _, minor = parts[0].partition(":")
        out.append({"major": int(major), "minor": int(minor), "op": parts[1],
                    "value": int(parts[2])})
    return out


def v1(files: CgroupFiles, dirs: dict[str, str], hugetlb_v2_dir: str | None) -> dict[str, Any]:
    """Stats of a v1 / hybrid cgroup; `dirs` maps controller names to directories."""
    s = empty()
    acct = _Reader(files, dirs.get("cpuacct"))
    usage = s["cpu"]["usage"]
    usage["total"] = acct.num("cpuacct.usage")
    usage["percpu"] = [int(x) for x in (acct.text("cpuacct.usage_percpu") or "").split()]
    ticks = acct.flat("cpuacct.stat")
    ns_per_tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    usage["user"] = ticks.get("user", 0) * ns_per_tick
    usage["kernel"] = ticks.get("system", 0) * ns_per_tick
    cpu = _Reader(files, dirs.get("cpu")).flat("cpu.stat")
    s["cpu"]["throttling"] = {"periods": cpu.get("nr_periods", 0),
                              "throttledPeriods": cpu.get("nr_throttled", 0),
                              "throttledTime": cpu.get("throttled_time", 0)}

    mem = _Reader(files, dirs.get("memory"))
    m = s["memory"]
    m["raw"] = mem.flat("memory.stat")
    m["cache"] = m["raw"].get("cache", 0)
    for key, prefix in (("usage", "memory."), ("swap", "memory.memsw."),
                        ("kernel", "memory.kmem."), ("kernelTCP", "memory.kmem.tcp.")):
        m[key] = {"limit": mem.num(prefix + "limit_in_bytes"),
                  "usage": mem.num(prefix + "usage_in_bytes"),
                  "max": mem.num(prefix + "max_usage_in_bytes"),
                  "failcnt": mem.num(prefix + "failcnt")}

    pids = _Reader(files, dirs.get("pids"))
    s["pids"] = {"current": pids.num("pids.current"), "limit": pids.num("pids.max")}

    # As runc: the first of BFQ's, CFQ's and the throttling layer's counters that has any
    # entries (a scheduler's files exist, empty, for devices that do not use it).
    blkio = _Reader(files, dirs.get("blkio"))
    for prefix in ("blkio.bfq.", "blkio.", "blkio.throttle."):
        serviced = _blkio_v1(blkio, prefix + "io_serviced_recursive")
        if serviced:
            s["blkio"] = {
                "ioServiceBytesRecursive": _blkio_v1(blkio, prefix + "io_service_bytes_recursive"),
                "ioServicedRecursive": serviced,
            }
            break

    if hugetlb_v2_dir is not None:
        s["hugetlb"] = _hugetlb_v2(_Reader(files, hugetlb_v2_dir))
    elif dirs.get("hugetlb"):
        h = _Reader(files, dirs["hugetlb"])
        s["hugetlb"] = {size: {"usage": h.num(f"hugetlb.{size}.usage_in_bytes"),
                               "max": h.num(f"hugetlb.{size}.max_usage_in_bytes"),
                               "failcnt": h.num(f"hugetlb.{size}.failcnt")}
                        for size in huge_page_sizes()}
    return s


def _hugetlb_v2(h: _Reader) -> dict[str, Any]:
    return {size: {"usage": h.num(f"hugetlb.{size}.current"), "max": 0,
                   "failcnt": h.flat(f"hugetlb.{size}.events").get("max", 0)}
            for size in huge_page_sizes()}


_IO_STAT = {"rbytes": ("ioServiceBytesRecursive", "Read"),
            "wbytes": ("ioServiceBytesRecursive", "Write"),
            "rios": ("ioServicedRecursive", "Read"),
            "wios": ("ioServicedRecursive", "Write")}


def v2(files: CgroupFiles, path: str) -> dict[str, Any]:
    s = empty()
    r = _Reader(files, path)
    cpu = r.flat("cpu.stat")
    s["cpu"]["usage"].update(total=cpu.get("usage_usec", 0) * 1000,
                             user=cpu.get("user_usec", 0) * 1000,
                             kernel=cpu.get("system_usec", 0) * 1000)
    s["cpu"]["throttling"] = {"periods": cpu.get("nr_periods", 0),
                              "throttledPeriods": cpu.get("nr_throttled", 0),
                              "throttledTime": cpu.get("throttled_usec", 0) * 1000}

    m = s["memory"]
    m["raw"] = r.flat("memory.stat")
    m["cache"] = m["raw"].get("file", 0)
    usage = {"limit": r.num("memory.max", MAX_UINT64), "usage": r.num("memory.current"),
             "max": r.num("memory.peak"), "failcnt": r.flat("memory.events").get("max", 0)}
    swap_limit = r.num("memory.swap.max", MAX_UINT64)
    m["usage"] = usage
    m["swap"] = {  # memory+swap, like v1's memsw
        "limit": MAX_UINT64 if MAX_UINT64 in (swap_limit, usage["limit"])
        else swap_limit + usage["limit"],
        "usage": r.num("memory.swap.current") + usage["usage"], "max": 0,
        "failcnt": r.flat("memory.swap.events").get("max", 0)}

    s["pids"] = {"current": r.num("pids.current"), "limit": r.num("pids.max")}

    for line in (r.text("io.stat") or "").splitlines():
        dev, *pairs = line.split()
        major, _, minor = dev.partition(":")
        for pair in pairs:
            key, _, value = pair.partition("=")
            if key in _IO_STAT:
                table, op = _IO_STAT[key]
                s["blkio"][table].append({"major": int(major), "minor": int(minor),
                                          "op": op, "value": int(value)})
    s["hugetlb"] = _hugetlb_v2(r)
    return s
