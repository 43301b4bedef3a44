"""What the agent knows of its containers and its machine, without prometheus_client.

    ContainerInfo    one running container (stats.Inventory builds them; the cAdvisor
                     collector and the node API's Stats read them)
    ContainerSource  what hands out ContainerInfo snapshots (stats.Inventory)
    Machine          cores, memory and IDs of this host: read_machine()

The node API (Stats) and the inventory need these on every agent; prometheus_client (~2 MB
of RSS) is loaded only with cadvisor.py, when --http-listen serves /metrics. cadvisor.py
re-exports every name here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class ContainerInfo:
    """One running container as the agent knows it.

    cgroup_path is below each hierarchy's root ("/corral/k8s.io/<id>"); pid is its init
    process on the host (0: unknown); started_at is in Unix seconds. `network` marks the
    entry whose network namespace is reported: one per pod (the sandbox), since every
    container of a pod shares it, as cAdvisor reports it for the pause container only."""
    container_id: str
    container: str
    pod: str
    namespace: str
    image: str
    cgroup_path: str
    pid: int = 0
    started_at: float = 0.0
    network: bool = False


class ContainerSource(Protocol):
    """What the collector asks at each scrape. Called from the thread that renders the
    scrape: return a snapshot (a list), not a live view of state another thread mutates."""

    def containers(self) -> Iterable[ContainerInfo]: ...


@dataclass(frozen=True)
class Machine:
    cpu_cores: int
    memory_bytes: int
    boot_id: str = ""
    machine_id: str = ""
    system_uuid: str = ""


def _first_line(path: str) -> str:
    try:
        with open(path) as f:
            return f.readline().strip()
    except OSError:
        return ""


def parse_cpuinfo_cores(text: str) -> int:
    """Logical CPUs as cAdvisor counts them: the "processor" entries of /proc/cpuinfo."""
    return sum(1 for line in text.splitlines() if line.split(":")[0].strip() == "processor")


def parse_meminfo_total(text: str) -> int:
    """MemTotal of /proc/meminfo, in bytes."""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            return int(parts[1]) * (1024 if len(parts) > 2 and parts[2] == "kB" else 1)
    return 0


def read_machine(*, proc_root: str = "/proc", etc_root: str = "/etc",
                 sys_root: str = "/sys") -> Machine:
    try:
        with open(os.path.join(proc_root, "cpuinfo")) as f:
            cores = parse_cpuinfo_cores(f.read())
    except OSError:
        cores = 0
    try:
        with open(os.path.join(proc_root, "meminfo")) as f:
            memory = parse_meminfo_total(f.read())
    except OSError:
        memory = 0
    return Machine(
        cpu_cores=cores or os.cpu_count() or 0, memory_bytes=memory,
        boot_id=_first_line(os.path.join(proc_root, "sys", "kernel", "random", "boot_id")),
        machine_id=_first_line(os.path.join(etc_root, "machine-id")),
        system_uuid=_first_line(os.path.join(sys_root, "class", "dmi", "id", "product_uuid")))
