"""clusterctl top: kubectl's units and columns, summed per pod, percentages per node."""

from __future__ import annotations

from typing import Any

import pytest

from api.v1 import node_pb2 as npb
from clusterctl.commands import top

MI = 1024 * 1024


@pytest.mark.parametrize(("value", "text"), [
    pytest.param(top.cpu(3_000_000), "3m", id="cpu-3m"),
    pytest.param(top.cpu(999_999), "0m", id="cpu-below-1m"),
    pytest.param(top.cpu(2_500_000_000), "2500m", id="cpu-cores"),
    pytest.param(top.memory(12 * MI + 5), "12Mi", id="memory"),
    pytest.param(top.percent(250, 2000), "12%", id="percent"),
    pytest.param(top.percent(1, 0), "<unknown>", id="no-capacity"),
])
def test_units(value: str, text: str) -> None:
    assert value == text


def stats(*pods: tuple[str, str, list[tuple[str, int, int]]]) -> Any:
    out = npb.StatsResponse(node=npb.NodeUsage(cpu_nano_cores=500_000_000,
                                               memory_working_set_bytes=1024 * MI,
                                               cpu_capacity_milli=4000,
                                               memory_capacity_bytes=4096 * MI))
    for ns, name, cs in pods:
        out.pods.add(namespace=ns, name=name, containers=[
            npb.ContainerUsage(name=c, cpu_nano_cores=cpu, memory_working_set_bytes=m * MI)
            for c, cpu, m in cs])
    return out


NODE_A = stats(("default", "web", [("app", 3_000_000, 12), ("side", 1_000_000, 4)]))
NODE_B = stats(("default", "api", [("app", 7_000_000, 30)]), ("kube", "dns", [("d", 0, 1)]))


def test_pods_are_summed_over_containers_and_sorted() -> None:
    usage = top.pod_usage([NODE_A, NODE_B], containers=False)
    assert top.pods_table(usage, all_namespaces=False, containers=False).splitlines() == [
        "NAME   CPU(cores)   MEMORY(bytes)",
        "api    7m           30Mi",
        "web    4m           16Mi",
        "dns    0m           1Mi"]


def test_all_namespaces_and_containers() -> None:
    usage = top.pod_usage([NODE_A], containers=True)
    assert top.pods_table(usage, all_namespaces=True, containers=True).splitlines() == [
        "NAMESPACE   POD   NAME   CPU(cores)   MEMORY(bytes)",
        "default     web   app    3m           12Mi",
        "default     web   side   1m           4Mi"]


@pytest.mark.parametrize(("resp", "node", "row"), [
    pytest.param(NODE_A, {}, ["n1", "500m", "12%", "1024Mi", "25%"], id="agent-capacity"),
    pytest.param(npb.StatsResponse(node=npb.NodeUsage(cpu_nano_cores=1_000_000_000,
                                                      memory_working_set_bytes=512 * MI)),
                 {"status": {"allocatable": {"cpu": "2", "memory": "1Gi"}}},
                 ["n1", "1000m", "50%", "512Mi", "50%"], id="allocatable-fallback"),
    pytest.param(None, {}, ["n1", "<unknown>", "<unknown>", "<unknown>", "<unknown>"],
                 id="unreachable"),
])
def test_node_rows(resp: Any, node: dict[str, Any], row: list[str]) -> None:
    assert top.node_row("n1", resp, node) == row
