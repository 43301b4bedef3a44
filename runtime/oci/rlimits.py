"""process.rlimits: RLIMIT_* names to setrlimit(2)."""

from __future__ import annotations

import resource

from .errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

RESOURCES = {
    name: getattr(resource, name)
    for name in (
        "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE",
        "RLIMIT_RSS", "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS",
        "RLIMIT_LOCKS", "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE", "RLIMIT_NICE",
        "RLIMIT_RTPRIO", "RLIMIT_RTTIME",
    )
    if hasattr(resource, name)
}
_INFINITY = (1 << 64) - 1  # RLIM_INFINITY as the spec's uint64 writes it


def check_rlimits(rlimits: list[dict[str, Any]], field: str) -> None:
    seen = set()
    for i, r in enumerate(rlimits):
        if r["type"] not in RESOURCES:
            raise ConfigError(f"{field}[{i}].type", f"unknown rlimit {r['type']!r}")
        if r["type"] in seen:
            raise ConfigError(f"{field}[{i}].type", f"duplicate rlimit {r['type']!r}")
        seen.add(r["type"])
        if r["soft"] > r["hard"]:
            raise ConfigError(f"{field}[{i}]", f"soft limit {r['soft']} is above the hard "
                              f"limit {r['hard']}")


def _value(v: int) -> int:
    return resource.RLIM_INFINITY if v >= _INFINITY else v


def apply(rlimits: list[dict[str, Any]]) -> None:
    for r in rlimits:
        try:
            resource.setrlimit(RESOURCES[r["type"]], (_value(r["soft"]), _value(r["hard"])))
        except (ValueError, OSError) as e:
            raise ConfigError(f"process.rlimits {r['type']}", f"setrlimit: {e}") from None
