"""nodelifecycle_plan: node health from the lease, the lifecycle taints, eviction times,
and the eviction-rate limiter, all at fake times."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.controllers import nodelifecycle_plan as nl
from controlplane.controllers.plan_util import rfc3339

NOW = 1_800_000_000.0
UNREACH_NE = {"key": nl.UNREACHABLE, "effect": "NoExecute"}
UNREACH_NS = {"key": nl.UNREACHABLE, "effect": "NoSchedule"}
NOT_READY_NE = {"key": nl.NOT_READY, "effect": "NoExecute"}


def node(ready: str | None = "True", reason: str = "KubeletReady",
         taints: list[dict[str, Any]] | None = None,
         created: float = NOW - 1000) -> dict[str, Any]:
    conds = [] if ready is None else [{"type": "Ready", "status": ready, "reason": reason,
                                       "lastTransitionTime": rfc3339(NOW - 500)}]
    return {"metadata": {"name": "n1", "creationTimestamp": rfc3339(created)},
            "spec": {"taints": taints} if taints else {}, "status": {"conditions": conds}}


def lease(renewed: float) -> dict[str, Any]:
    return {"metadata": {"name": "n1", "namespace": nl.LEASE_NAMESPACE},
            "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40,
                     "renewTime": rfc3339(renewed)}}


@pytest.mark.parametrize("the_node,the_lease,ready,no_execute,probe_in", [
    pytest.param(node(), lease(NOW - 5), "True", (), 35.0, id="fresh-lease"),
    pytest.param(node(), lease(NOW - 41), "Unknown", (UNREACH_NE,), 40.0, id="stale-lease"),
    pytest.param(node(), None, "Unknown", (UNREACH_NE,), 40.0, id="no-lease-old-node"),
    pytest.param(node(created=NOW - 10), None, "True", (), 30.0, id="no-lease-new-node"),
    pytest.param(node("False", "KubeletNotReady"), lease(NOW - 5), "False",
                 (NOT_READY_NE,), 35.0, id="agent-says-not-ready"),
    pytest.param(node("Unknown", nl.STATUS_UNKNOWN), lease(NOW - 1), "True", (), 39.0,
                 id="lease-renewed-after-unknown"),
    pytest.param(node(None), lease(NOW - 1), "True", (), 39.0, id="no-condition-yet"),
])
def test_node_health(the_node: dict[str, Any], the_lease: dict[str, Any] | None,
                     ready: str, no_execute: tuple[dict[str, Any], ...],
                     probe_in: float) -> None:
    h = nl.node_health(the_node, the_lease, now=NOW, grace=40)
    assert h.ready == ready
    assert h.no_execute == no_execute
    assert h.probe_in == probe_in
    cond = next((c for c in h.conditions if c["type"] == "Ready"), None)
    if ready == "Unknown":
        assert cond is not None and cond["reason"] == nl.STATUS_UNKNOWN
        assert cond["lastTransitionTime"] == rfc3339(NOW)
    elif cond is not None:
        assert cond["status"] == ready


def test_unknown_is_not_rewritten() -> None:
    stale = node("Unknown", nl.STATUS_UNKNOWN)
    h = nl.node_health(stale, lease(NOW - 100), now=NOW, grace=40)
    assert h.conditions == stale["status"]["conditions"]


OTHER = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}


@pytest.mark.parametrize("taints,ready,may_add,expected", [
    pytest.param([OTHER], "Unknown", True,
                 [OTHER, UNREACH_NS, {**UNREACH_NE, "timeAdded": rfc3339(NOW)}],
                 id="stale-adds-both"),
    pytest.param([OTHER], "Unknown", False, [OTHER, UNREACH_NS], id="rate-limited"),
    pytest.param([{**UNREACH_NE, "timeAdded": rfc3339(NOW - 9)}], "Unknown", False,
                 [UNREACH_NS, {**UNREACH_NE, "timeAdded": rfc3339(NOW - 9)}],
                 id="keeps-time-added"),
    pytest.param([OTHER, UNREACH_NS, UNREACH_NE], "True", False, [OTHER],
                 id="healthy-removes"),
    pytest.param([UNREACH_NS, UNREACH_NE], "False", True,
                 [{"key": nl.NOT_READY, "effect": "NoSchedule"},
                  {**NOT_READY_NE, "timeAdded": rfc3339(NOW)}], id="unreachable-to-not-ready"),
])
def test_desired_taints(taints: list[dict[str, Any]], ready: str, may_add: bool,
                        expected: list[dict[str, Any]]) -> None:
    n = node(taints=taints)
    key = {"False": nl.NOT_READY, "Unknown": nl.UNREACHABLE}.get(ready)
    health = nl.NodeHealth(ready, [], ({"key": key, "effect": "NoSchedule"},) if key else (),
                           ({"key": key, "effect": "NoExecute"},) if key else (), 0.0)
    assert nl.desired_taints(n, health, now=NOW, may_add_no_execute=may_add) == expected


def pod(*tolerations: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "p"}, "spec": {"tolerations": list(tolerations)}}


TAINTED = [{**UNREACH_NE, "timeAdded": rfc3339(NOW - 100)}, UNREACH_NS]


@pytest.mark.parametrize("the_pod,taints,expected", [
    pytest.param(pod(), TAINTED, NOW - 100 + 300, id="default-300s"),
    pytest.param(pod({"key": nl.UNREACHABLE, "operator": "Exists", "effect": "NoExecute",
                      "tolerationSeconds": 30}), TAINTED, NOW - 70, id="own-seconds"),
    pytest.param(pod({"key": nl.UNREACHABLE, "operator": "Exists",
                      "effect": "NoExecute"}), TAINTED, None, id="tolerated-for-ever"),
    pytest.param(pod({"operator": "Exists"}), TAINTED, None, id="tolerates-everything"),
    pytest.param(pod(), [{"key": "dedicated", "effect": "NoExecute"}], NOW,
                 id="untolerated-custom-taint-now"),
    pytest.param(pod(), [UNREACH_NS, OTHER], None, id="no-execute-absent"),
    pytest.param(pod({"key": nl.UNREACHABLE, "operator": "Exists", "effect": "NoExecute",
                      "tolerationSeconds": -5}), TAINTED, NOW - 100, id="negative-is-zero"),
])
def test_eviction_time(the_pod: dict[str, Any], taints: list[dict[str, Any]],
                       expected: float | None) -> None:
    assert nl.eviction_time(the_pod, taints, now=NOW, default_seconds=300) == expected


def test_rate_limiter() -> None:
    limiter = nl.RateLimiter(0.1)
    assert limiter.try_take(NOW)
    assert not limiter.try_take(NOW + 1)
    assert limiter.wait(NOW + 1) == pytest.approx(9.0)
    assert limiter.try_take(NOW + 10)
    assert not limiter.try_take(NOW + 10)


def test_rate_limiter_zero_never_gives() -> None:
    limiter = nl.RateLimiter(0.0)
    assert not limiter.try_take(NOW) and limiter.wait(NOW) == float("inf")
