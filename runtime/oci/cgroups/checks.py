"""Checks of linux.resources made before any cgroup is created.

The lead's schema has checked JSON types; these are the value checks the kernel would
otherwise answer with a bare EINVAL half-way through setup. Apart from the online CPU and
memory-node lists and the huge page sizes (read only when the config names them), the
checks are pure. Whether rdma / network / unified can be honoured depends on the host.
"""

from __future__ import annotations

import os

from ..errors import ConfigError, Unsupported

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .host import Host

CPU_ONLINE = "/sys/devices/system/cpu/online"
NODE_ONLINE = "/sys/devices/system/node/online"
HUGEPAGES = "/sys/kernel/mm/hugepages"

_UNIFIED_FORBIDDEN = frozenset({"cgroup.procs", "cgroup.threads", "cgroup.kill"})


def parse_list(text: str) -> list[tuple[int, int]]:
    """A kernel CPU / node list ("0-3,5") as inclusive ranges; ValueError if malformed."""
    text = text.strip()
    if not text:
        return []
    ranges = []
    for item in text.split(","):
        lo, dash, hi = item.partition("-")
        if not _digits(lo) or (dash and not _digits(hi)):
            raise ValueError(item)
        a, b = int(lo), int(hi) if dash else int(lo)
        if b < a:
            raise ValueError(item)
        ranges.append((a, b))
    return ranges


def _digits(s: str) -> bool:
    return s.isascii() and s.isdigit()


def _read_list(path: str, missing: str) -> list[tuple[int, int]]:
    try:
        with open(path) as f:
            return parse_list(f.read())
    except FileNotFoundError:
        return parse_list(missing)


def _uncovered(want: list[tuple[int, int]], have: list[tuple[int, int]]) -> int | None:
    """The first number in `want` that no range of `have` contains, or None."""
    for a, b in want:
        n = a
        while n <= b:
            hit = next(((x, y) for x, y in have if x <= n <= y), None)
            if hit is None:
                return n
            n = hit[1] + 1
    return None


def page_size_name(kib: int) -> str:
    """runc's huge page size names: 2048 kB -> "2MB", 1048576 kB -> "1GB", 64 kB -> "64KB"."""
    size, units = float(kib), ("KB", "MB", "GB", "TB", "PB")
    i = 0
    while size >= 1024 and i < len(units) - 1:
        size /= 1024
        i += 1
    return f"{size:g}{units[i]}"


def huge_page_sizes() -> list[str]:
    """The host's huge page sizes, smallest first ("2MB", "1GB")."""
    try:
        names = os.listdir(HUGEPAGES)
    except FileNotFoundError:
        return []
    kibs = sorted(int(n[10:-2]) for n in names
                  if n.startswith("hugepages-") and n.endswith("kB") and _digits(n[10:-2]))
    return [page_size_name(k) for k in kibs]


def _fail(field: str, problem: str) -> ConfigError:
    return ConfigError(field, problem)


def _int(d: dict[str, Any], key: str, field: str) -> int | None:
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise _fail(f"{field}.{key}", f"must be an integer, got {v!r}")
    return v


def _at_least(d: dict[str, Any], key: str, field: str, low: int) -> int | None:
    v = _int(d, key, field)
    if v is not None and v < low:
        raise _fail(f"{field}.{key}", f"must be >= {low}, got {v}")
    return v


def _unset_or_range(d: dict[str, Any], key: str, field: str, low: int, high: int,
                    unset: tuple[int, ...] = (0,)) -> None:
    v = _int(d, key, field)
    if v is not None and v not in unset and not low <= v <= high:
        extra = "".join(f" or {u}" for u in unset)
        raise _fail(f"{field}.{key}", f"must be {low}..{high}{extra}, got {v}")


def _section(resources: dict[str, Any], key: str, field: str) -> dict[str, Any]:
    s = resources.get(key)
    if s is None:
        return {}
    if not isinstance(s, dict):
        raise _fail(f"{field}.{key}", f"must be an object, got {s!r}")
    return s


def _list(resources: dict[str, Any], key: str, field: str) -> list[Any]:
    s = resources.get(key)
    if s is None:
        return []
    if not isinstance(s, list):
        raise _fail(f"{field}.{key}", f"must be an array, got {s!r}")
    for i, item in enumerate(s):
        if not isinstance(item, dict):
            raise _fail(f"{field}.{key}[{i}]", f"must be an object, got {item!r}")
    return s


def _memory(m: dict[str, Any], field: str) -> None:
    for key in ("limit", "reservation", "swap", "kernel", "kernelTCP"):
        _at_least(m, key, field, -1)
    limit, swap = _int(m, "limit", field), _int(m, "swap", field)
    if limit and swap and limit != -1 and swap != -1 and swap < limit:
        raise _fail(f"{field}.swap", f"memory+swap limit must be >= memory.limit ({limit}), "
                                     f"got {swap}")
    _unset_or_range(m, "swappiness", field, 0, 100, unset=())


def _cpu(c: dict[str, Any], field: str) -> None:
    _unset_or_range(c, "shares", field, 2, 262144)
    quota = _int(c, "quota", field)
    if quota is not None and quota not in (0, -1) and quota < 1000:
        raise _fail(f"{field}.quota", f"must be -1 (unlimited) or >= 1000 us, got {quota}")
    _unset_or_range(c, "period", field, 1000, 1000000)
    _at_least(c, "realtimeRuntime", field, -1)
    _at_least(c, "realtimePeriod", field, 0)
    _at_least(c, "burst", field, 0)
    _unset_or_range(c, "idle", field, 0, 1)
    for key, path, missing, what in (("cpus", CPU_ONLINE, "0", "CPU"),
                                     ("mems", NODE_ONLINE, "0", "memory node")):
        v = c.get(key)
        if v is None or v == "":
            continue
        if not isinstance(v, str):
            raise _fail(f"{field}.{key}", f"must be a string, got {v!r}")
        try:
            want = parse_list(v)
        except ValueError:
            raise _fail(f"{field}.{key}", f'must be a list like "0-3,5", got {v!r}') from None
        online = _read_list(path, missing)
        bad = _uncovered(want, online)
        if bad is not None:
            have = ",".join(f"{a}-{b}" if a != b else str(a) for a, b in online)
            raise _fail(f"{field}.{key}", f"{what} {bad} is not online (online: {have}), "
                                          f"got {v!r}")


def _blockio(b: dict[str, Any], field: str) -> None:
    _unset_or_range(b, "weight", field, 10, 1000)
    _unset_or_range(b, "leafWeight", field, 10, 1000)
    for i, d in enumerate(_list(b, "weightDevice", field)):
        f = f"{field}.weightDevice[{i}]"
        _device_numbers(d, f, required=True)
        _unset_or_range(d, "weight", f, 10, 1000)
        _unset_or_range(d, "leafWeight", f, 10, 1000)
    for key in ("throttleReadBpsDevice", "throttleWriteBpsDevice",
                "throttleReadIOPSDevice", "throttleWriteIOPSDevice"):
        for i, d in enumerate(_list(b, key, field)):
            f = f"{field}.{key}[{i}]"
            _device_numbers(d, f, required=True)
            if _at_least(d, "rate", f, 0) is None:
                raise _fail(f"{f}.rate", "is required")


def _device_numbers(d: dict[str, Any], field: str, *, required: bool) -> None:
    low, any_ = (0, "") if required else (-1, "-1 (any) or ")
    for key in ("major", "minor"):
        v = _int(d, key, field)
        if v is None:
            if required:
                raise _fail(f"{field}.{key}", "is required")
        elif not low <= v <= 0xFFFFFFFF:
            raise _fail(f"{field}.{key}", f"must be {any_}0..4294967295, got {v}")


def _devices(rules: list[Any], field: str) -> None:
    for i, r in enumerate(rules):
        f = f"{field}[{i}]"
        if not isinstance(r.get("allow"), bool):
            raise _fail(f"{f}.allow", f"must be true or false, got {r.get('allow')!r}")
        t = r.get("type", "a")
        if t not in ("a", "b", "c"):
            raise _fail(f"{f}.type", f'must be "a", "b" or "c", got {t!r}')
        _device_numbers(r, f, required=False)
        access = r.get("access", "rwm")
        if (not isinstance(access, str) or any(ch not in "rwm" for ch in access)
                or len(set(access)) != len(access)):
            raise _fail(f"{f}.access", f'must be a subset of "rwm", got {access!r}')


def _hugepages(limits: list[Any], field: str) -> None:
    sizes: list[str] | None = None
    for i, h in enumerate(limits):
        f = f"{field}[{i}]"
        size = h.get("pageSize")
        if sizes is None:
            sizes = huge_page_sizes()
        if size not in sizes:
            raise _fail(f"{f}.pageSize", f"no such huge page size on this host, got {size!r} "
                                         f"(available: {', '.join(sizes) or 'none'})")
        if _at_least(h, "limit", f, 0) is None:
            raise _fail(f"{f}.limit", "is required")


def validate(resources: dict[str, Any], field: str = "linux.resources", *,
             host: Host | None = None, root: str = "/sys/fs/cgroup") -> None:
    """Raise ConfigError / Unsupported for the first bad value in `resources`.

    `host` (default: the hierarchies mounted at `root`) decides the host-dependent checks:
    rdma, network and unified; it is only looked up when the config uses them.
    """
    _memory(_section(resources, "memory", field), f"{field}.memory")
    _cpu(_section(resources, "cpu", field), f"{field}.cpu")
    _int(_section(resources, "pids", field), "limit", f"{field}.pids")  # <= 0: unlimited
    _blockio(_section(resources, "blockIO", field), f"{field}.blockIO")
    _devices(_list(resources, "devices", field), f"{field}.devices")
    _hugepages(_list(resources, "hugepageLimits", field), f"{field}.hugepageLimits")

    rdma = _section(resources, "rdma", field)
    network = _section(resources, "network", field)
    unified = _section(resources, "unified", field)
    if not (rdma or network or unified):
        return
    if host is None:
        from .host import read_host
        host = read_host(root)
    if rdma:
        for dev, lim in rdma.items():
            f = f"{field}.rdma.{dev}"
            if not isinstance(lim, dict):
                raise _fail(f, f"must be an object, got {lim!r}")
            _at_least(lim, "hcaHandles", f, 0)
            _at_least(lim, "hcaObjects", f, 0)
        if not _host_has(host, "rdma"):
            raise Unsupported(f"{field}.rdma", "the rdma cgroup controller is not available "
                                               "on this host")
    if network:
        if host.mode == "v2" and (network.get("classID") or network.get("priorities")):
            raise Unsupported(f"{field}.network", "cgroup v2 has no net_cls / net_prio "
                                                  "controllers")
        for key, ctl in (("classID", "net_cls"), ("priorities", "net_prio")):
            if network.get(key) and not host.has(ctl):
                raise Unsupported(f"{field}.network.{key}", f"the {ctl} cgroup controller is "
                                                            "not mounted on this host")
    if unified:
        if host.mode != "v2":
            raise Unsupported(f"{field}.unified", f"needs cgroup v2; this host is {host.mode}")
        for key, value in unified.items():
            f = f"{field}.unified.{key}"
            name_ok = key not in (".", "..") and "/" not in key and "\0" not in key
            if not name_ok or "." not in key.strip("."):
                raise _fail(f, 'keys must be file names like "memory.high"')
            if key in _UNIFIED_FORBIDDEN:
                raise _fail(f, "processes are placed in the cgroup by the runtime, not by "
                               "resources")
            if not isinstance(value, str):
                raise _fail(f, f"must be a string, got {value!r}")


def _host_has(host: Host, controller: str) -> bool:
    if host.mode != "v2":
        return host.has(controller)
    h = host.unified()
    if h is None:
        return False
    try:
        with open(h.mountpoint + "/cgroup.controllers") as f:
            return controller in f.read().split()
    except OSError:
        return False
