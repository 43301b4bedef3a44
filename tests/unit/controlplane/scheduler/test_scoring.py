from __future__ import annotations

from typing import Any

import pytest

from controlplane.scheduler.framework import CycleState, ScorePlugin
from controlplane.scheduler.plugins import BalancedAllocation, LeastAllocated
from controlplane.scheduler.snapshot import NodeInfo

from .harness import info, node, pod, sized

EMPTY = info(node("n1", cpu="4", memory="8Gi"))
HALF_CPU = info(node("n1", cpu="4", memory="8Gi"), sized("a", cpu="2"))


def score(plugin: ScorePlugin, p: dict[str, Any], n: NodeInfo) -> int:
    value, status = plugin.score(CycleState(), p, n)
    assert status.ok
    return value


@pytest.mark.parametrize(("p", "n", "want"), [
    pytest.param(sized(cpu="1", memory="2Gi"), EMPTY, 75, id="quarter-used"),
    pytest.param(sized(cpu="2", memory="2Gi"), EMPTY, 62, id="mean-of-50-and-75-floored"),
    pytest.param(pod(), EMPTY, 97, id="best-effort-uses-defaults"),
    pytest.param(sized(cpu="2", memory="2Gi"), HALF_CPU, 36,
                 id="existing-pods-count-with-memory-default"),
    pytest.param(sized(cpu="8", memory="8Gi"), EMPTY, 0, id="over-capacity-is-zero"),
])
def test_least_allocated(p: dict[str, Any], n: NodeInfo, want: int) -> None:
    assert score(LeastAllocated(), p, n) == want


def test_least_allocated_resource_weights() -> None:
    plugin = LeastAllocated({"resources": [{"name": "cpu", "weight": 3},
                                           {"name": "memory", "weight": 1}]})
    # cpu 50 * 3 + memory 75 * 1 = 225, / 4
    assert score(plugin, sized(cpu="2", memory="2Gi"), EMPTY) == 56


@pytest.mark.parametrize(("p", "n", "want"), [
    pytest.param(sized(cpu="1", memory="2Gi"), EMPTY, 100, id="balanced"),
    pytest.param(sized(cpu="2", memory="2Gi"), EMPTY, 87, id="half-and-quarter"),
    pytest.param(sized(cpu="4"), EMPTY, 50, id="all-cpu-no-memory"),
    pytest.param(sized(cpu="16", memory="0"), EMPTY, 50, id="fraction-capped-at-one"),
    pytest.param(sized(memory="4Gi"), HALF_CPU, 100, id="existing-pods-count"),
])
def test_balanced_allocation(p: dict[str, Any], n: NodeInfo, want: int) -> None:
    assert score(BalancedAllocation(), p, n) == want
