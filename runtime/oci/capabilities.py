"""Linux capabilities: the five sets of process.capabilities.

Only what the config asks for is granted. In particular the inheritable and ambient sets
stay empty unless listed (runc granted inheritable capabilities unasked before
CVE-2022-29162; a setuid or file-capability binary in the image could then gain them).
"""

from __future__ import annotations

from .errors import ConfigError
from .linux import (
    PR_CAP_AMBIENT,
    PR_CAP_AMBIENT_CLEAR_ALL,
    PR_CAP_AMBIENT_RAISE,
    PR_CAPBSET_DROP,
    SYS,
    Syscalls,
)

NAMES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
    "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN",
    "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE",
    "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME",
    "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ",
    "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)
NUMBER = {"CAP_" + n: i for i, n in enumerate(NAMES)}
ALL = tuple("CAP_" + n for n in NAMES)


def last_cap() -> int:
    """The highest capability this kernel knows."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return len(NAMES) - 1


def check_names(names: list[str], field: str) -> None:
    for i, name in enumerate(names):
        if name not in NUMBER:
            raise ConfigError(f"{field}[{i}]", f"unknown capability {name!r}")


def mask(names: list[str] | None, last: int) -> int:
    """The bit mask of NAMES, leaving out capabilities newer than the kernel (as runc
    does; they cannot be granted on this kernel anyway)."""
    m = 0
    for name in names or ():
        n = NUMBER[name]
        if n <= last:
            m |= 1 << n
    return m


def drop_bounding(caps: dict[str, list[str]], *, sys: Syscalls = SYS) -> None:
    """Drop every capability not in the bounding set (needs CAP_SETPCAP: do it first)."""
    last = last_cap()
    keep = mask(caps.get("bounding"), last)
    for n in range(last + 1):
        if not keep & (1 << n):
            sys.prctl(PR_CAPBSET_DROP, n)


def apply(caps: dict[str, list[str]], *, sys: Syscalls = SYS) -> None:
    """Set effective, permitted, inheritable, then ambient, exactly as configured."""
    last = last_cap()
    permitted = mask(caps.get("permitted"), last)
    inheritable = mask(caps.get("inheritable"), last)
    sys.capset(mask(caps.get("effective"), last), permitted, inheritable)
    sys.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    # The kernel allows an ambient capability only if it is permitted and inheritable;
    # others cannot be raised (runc's default spec lists ambient ones with an empty
    # inheritable set, and they are skipped there too).
    for n in ambient_raisable(caps, last, permitted & inheritable):
        sys.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, n)


def ambient_raisable(caps: dict[str, list[str]], last: int, allowed: int) -> list[int]:
    return [NUMBER[n] for n in caps.get("ambient") or () if allowed & (1 << NUMBER[n])
            and NUMBER[n] <= last]
