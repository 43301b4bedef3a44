"""node.py: the Node's conditions, the pressures from kubelet's default hard-eviction
thresholds (memory.available<100Mi, nodefs.available<10%, nodefs.inodesFree<5%)."""

from __future__ import annotations

import os

import pytest

from agent import node as N

FACTS = N.HostFacts(cpus=2, memory=8 << 30, hostname="n1", internal_ip="10.0.0.1",
                    kernel="6.1", os_image="Debian", arch="amd64", machine_id="m",
                    boot_id="b", runtime_version="corral://0.1")


def meminfo(free_mib: int, inactive_file_mib: int) -> str:
    return (f"MemTotal:       8000000 kB\nMemFree:        {free_mib * 1024} kB\n"
            f"Inactive(file): {inactive_file_mib * 1024} kB\nActive(file): 5 kB\n")


def fs(blocks: int, bavail: int, files: int = 1000, favail: int = 1000) -> os.statvfs_result:
    return os.statvfs_result((4096, 4096, blocks, bavail, bavail, files, favail, favail, 0,
                              255))


@pytest.mark.parametrize(("mem", "vfs", "memory", "disk"), [
    pytest.param(meminfo(50, 60), fs(100, 50), "", "", id="none"),
    pytest.param(meminfo(50, 40), fs(100, 50), "memory.available 90Mi is below 100Mi", "",
                 id="memory"),
    pytest.param(meminfo(500, 0), fs(1000, 99), "",
                 "nodefs.available 9.9% of /var/lib/x's filesystem is below 10%", id="disk"),
    pytest.param(meminfo(500, 0), fs(1000, 500, files=1000, favail=40), "",
                 "nodefs.inodesFree 4.0% of /var/lib/x's filesystem is below 5%",
                 id="inodes"),
    pytest.param(meminfo(500, 0), fs(0, 0), "", "", id="a-filesystem-without-blocks"),
])
def test_pressure_follows_kubelets_default_thresholds(
        mem: str, vfs: os.statvfs_result, memory: str, disk: str) -> None:
    got = N.read_pressure("/var/lib/x", meminfo=mem, statvfs=vfs)
    assert (got.memory, got.disk) == (memory, disk)


def test_conditions_carry_the_pressure_and_keep_their_transition_time() -> None:
    calm = N.node_status(FACTS, ready=True, pressure=N.Pressure())
    by = {c["type"]: c for c in calm["conditions"]}
    assert [by[k]["status"] for k in ("MemoryPressure", "DiskPressure", "PIDPressure",
                                      "Ready")] == ["False", "False", "False", "True"]
    hot = N.node_status(FACTS, ready=True, old=calm,
                        pressure=N.Pressure(memory="memory.available 90Mi is below 100Mi"))
    mem = {c["type"]: c for c in hot["conditions"]}["MemoryPressure"]
    assert (mem["status"], mem["reason"]) == ("True", "KubeletHasInsufficientMemory")
    assert mem["message"] == "memory.available 90Mi is below 100Mi"
    ready = {c["type"]: c for c in hot["conditions"]}["Ready"]
    assert ready["lastTransitionTime"] == by["Ready"]["lastTransitionTime"]  # unchanged

