"""Each filter plugin, table-driven: (pod, node) -> the code and reasons it returns."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.scheduler.framework import Code, CycleState, FilterPlugin, Status
from controlplane.scheduler.plugins import (
    NodeAffinity,
    NodeName,
    NodeResourcesFit,
    NodeUnschedulable,
    TaintToleration,
)
from controlplane.scheduler.snapshot import NodeInfo

from .harness import container, info, node, pod, sized

OK = (Code.SUCCESS, [])
UNRESOLVABLE = Code.UNSCHEDULABLE_AND_UNRESOLVABLE


def run(plugin: FilterPlugin, p: dict[str, Any], n: NodeInfo) -> tuple[Code, list[str]]:
    status: Status = plugin.filter(CycleState(), p, n)
    if not status.ok:
        assert status.plugin == plugin.name
    return status.code, status.reasons


# ---- NodeName ---------------------------------------------------------------------------

@pytest.mark.parametrize(("p", "want"), [
    pytest.param(pod(), OK, id="no-node-name"),
    pytest.param(pod(node_name="n1"), OK, id="same-node"),
    pytest.param(pod(node_name="n2"),
                 (UNRESOLVABLE, ["node(s) didn't match the requested node name"]),
                 id="other-node"),
])
def test_node_name(p: dict[str, Any], want: tuple[Code, list[str]]) -> None:
    assert run(NodeName(), p, info(node("n1"))) == want


# ---- NodeUnschedulable ------------------------------------------------------------------

CORDONED = (UNRESOLVABLE, ["node(s) were unschedulable"])


@pytest.mark.parametrize(("tolerations", "cordoned", "want"), [
    pytest.param([], False, OK, id="schedulable"),
    pytest.param([], True, CORDONED, id="cordoned"),
    pytest.param([{"key": "node.kubernetes.io/unschedulable", "operator": "Exists",
                   "effect": "NoSchedule"}], True, OK, id="tolerated"),
    pytest.param([{"operator": "Exists"}], True, OK, id="tolerate-everything"),
    pytest.param([{"key": "node.kubernetes.io/unschedulable", "operator": "Exists",
                   "effect": "NoExecute"}], True, CORDONED, id="wrong-effect"),
    pytest.param([{"key": "other", "operator": "Exists"}], True, CORDONED, id="wrong-key"),
])
def test_node_unschedulable(tolerations: list[dict[str, str]], cordoned: bool,
                            want: tuple[Code, list[str]]) -> None:
    p = pod(tolerations=tolerations)
    assert run(NodeUnschedulable(), p, info(node("n1", unschedulable=cordoned))) == want


# ---- TaintToleration --------------------------------------------------------------------

GPU_TAINT = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
GPU_REASON = (UNRESOLVABLE, ["node(s) had untolerated taint {dedicated: gpu}"])


@pytest.mark.parametrize(("taints", "tolerations", "want"), [
    pytest.param([], [], OK, id="no-taints"),
    pytest.param([GPU_TAINT], [], GPU_REASON, id="untolerated"),
    pytest.param([GPU_TAINT], [{"key": "dedicated", "value": "gpu"}], OK,
                 id="equal-default-operator"),
    pytest.param([GPU_TAINT], [{"key": "dedicated", "operator": "Equal", "value": "cpu"}],
                 GPU_REASON, id="equal-wrong-value"),
    pytest.param([GPU_TAINT], [{"key": "dedicated", "operator": "Exists"}], OK,
                 id="exists-any-value"),
    pytest.param([GPU_TAINT], [{"operator": "Exists"}], OK, id="empty-key-exists-all"),
    pytest.param([GPU_TAINT], [{"key": "dedicated", "operator": "Exists",
                                "effect": "NoExecute"}], GPU_REASON, id="effect-mismatch"),
    pytest.param([GPU_TAINT], [{"key": "dedicated", "operator": "Exists",
                                "effect": "NoSchedule"}], OK, id="effect-match"),
    pytest.param([{"key": "k", "effect": "PreferNoSchedule"}], [], OK,
                 id="prefer-no-schedule-ignored"),
    pytest.param([{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}], [],
                 (UNRESOLVABLE, ["node(s) had untolerated taint "
                                 "{node.kubernetes.io/not-ready: }"]), id="no-execute-no-value"),
    pytest.param([GPU_TAINT, {"key": "zone", "value": "a", "effect": "NoExecute"}],
                 [{"key": "dedicated", "operator": "Exists"}],
                 (UNRESOLVABLE, ["node(s) had untolerated taint {zone: a}"]),
                 id="second-taint-untolerated"),
])
def test_taint_toleration(taints: list[dict[str, str]], tolerations: list[dict[str, str]],
                          want: tuple[Code, list[str]]) -> None:
    p = pod(tolerations=tolerations)
    assert run(TaintToleration(), p, info(node("n1", taints=taints))) == want


# ---- NodeAffinity (nodeSelector + required terms) ---------------------------------------

AFFINITY_REASON = (UNRESOLVABLE, ["node(s) didn't match Pod's node affinity/selector"])
LABELS = {"zone": "a", "disktype": "ssd", "cores": "16"}


def required(*terms: dict[str, Any]) -> dict[str, Any]:
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": list(terms)}}}


def expr(key: str, op: str, *values: str) -> dict[str, Any]:
    r: dict[str, Any] = {"key": key, "operator": op}
    if values:
        r["values"] = list(values)
    return {"matchExpressions": [r]}


@pytest.mark.parametrize(("spec", "want"), [
    pytest.param({}, OK, id="no-constraints"),
    pytest.param({"nodeSelector": {"zone": "a"}}, OK, id="selector-match"),
    pytest.param({"nodeSelector": {"zone": "a", "disktype": "hdd"}}, AFFINITY_REASON,
                 id="selector-one-mismatch"),
    pytest.param({"nodeSelector": {"gpu": "yes"}}, AFFINITY_REASON, id="selector-missing"),
    pytest.param({"affinity": required(expr("zone", "In", "b", "a"))}, OK, id="in"),
    pytest.param({"affinity": required(expr("zone", "In", "b"))}, AFFINITY_REASON,
                 id="in-mismatch"),
    pytest.param({"affinity": required(expr("zone", "NotIn", "b"))}, OK, id="notin"),
    pytest.param({"affinity": required(expr("zone", "NotIn", "a"))}, AFFINITY_REASON,
                 id="notin-mismatch"),
    pytest.param({"affinity": required(expr("gpu", "NotIn", "x"))}, OK,
                 id="notin-missing-label"),
    pytest.param({"affinity": required(expr("disktype", "Exists"))}, OK, id="exists"),
    pytest.param({"affinity": required(expr("gpu", "Exists"))}, AFFINITY_REASON,
                 id="exists-mismatch"),
    pytest.param({"affinity": required(expr("gpu", "DoesNotExist"))}, OK, id="doesnotexist"),
    pytest.param({"affinity": required(expr("zone", "DoesNotExist"))}, AFFINITY_REASON,
                 id="doesnotexist-mismatch"),
    pytest.param({"affinity": required(expr("cores", "Gt", "8"))}, OK, id="gt"),
    pytest.param({"affinity": required(expr("cores", "Gt", "16"))}, AFFINITY_REASON,
                 id="gt-equal-fails"),
    pytest.param({"affinity": required(expr("cores", "Lt", "32"))}, OK, id="lt"),
    pytest.param({"affinity": required(expr("cores", "Lt", "-1"))}, AFFINITY_REASON,
                 id="lt-mismatch"),
    pytest.param({"affinity": required(expr("zone", "Gt", "1"))}, AFFINITY_REASON,
                 id="gt-non-integer-label"),
    pytest.param({"affinity": required(expr("zone", "In", "b"), expr("disktype", "Exists"))},
                 OK, id="terms-ored"),
    pytest.param({"affinity": required({"matchExpressions": [
        {"key": "zone", "operator": "In", "values": ["a"]},
        {"key": "gpu", "operator": "Exists"}]})}, AFFINITY_REASON, id="expressions-anded"),
    pytest.param({"affinity": required({})}, AFFINITY_REASON, id="empty-term-matches-none"),
    pytest.param({"affinity": required({"matchFields": [
        {"key": "metadata.name", "operator": "In", "values": ["n1"]}]})}, OK,
        id="match-fields-name"),
    pytest.param({"affinity": required({"matchFields": [
        {"key": "metadata.name", "operator": "NotIn", "values": ["n1"]}]})}, AFFINITY_REASON,
        id="match-fields-name-mismatch"),
    pytest.param({"nodeSelector": {"zone": "b"},
                  "affinity": required(expr("zone", "Exists"))}, AFFINITY_REASON,
                 id="selector-and-affinity-both-needed"),
])
def test_node_affinity(spec: dict[str, Any], want: tuple[Code, list[str]]) -> None:
    assert run(NodeAffinity(), pod(**spec), info(node("n1", labels=LABELS))) == want


# ---- NodeResourcesFit -------------------------------------------------------------------

def fit(*reasons: str) -> tuple[Code, list[str]]:
    return (Code.UNSCHEDULABLE, list(reasons)) if reasons else OK


BUSY = info(node("n1", cpu="2", memory="4Gi", pods=3, example_com__gpu="2"),
            sized("a", cpu="1500m", memory="3Gi"),
            pod("b", containers=[container(example_com__gpu="1")]))


@pytest.mark.parametrize(("p", "n", "want"), [
    pytest.param(sized(cpu="500m", memory="1Gi"), BUSY, fit(), id="exactly-fits"),
    pytest.param(sized(cpu="501m"), BUSY, fit("Insufficient cpu"), id="cpu"),
    pytest.param(sized(memory="1025Mi"), BUSY, fit("Insufficient memory"), id="memory"),
    pytest.param(sized(cpu="1", memory="2Gi"), BUSY,
                 fit("Insufficient cpu", "Insufficient memory"), id="cpu-and-memory"),
    pytest.param(pod(), BUSY, fit(), id="best-effort"),
    pytest.param(pod(), info(node("n1", pods=2), pod("a"), pod("b")), fit("Too many pods"),
                 id="too-many-pods"),
    pytest.param(sized(cpu="10"), info(node("n1", cpu="1", pods=1), pod("a")),
                 fit("Too many pods", "Insufficient cpu"), id="pods-reported-first"),
    pytest.param(pod(containers=[container(example_com__gpu="1")]), BUSY, fit(),
                 id="extended-fits"),
    pytest.param(pod(containers=[container(example_com__gpu="2")]), BUSY,
                 fit("Insufficient example.com/gpu"), id="extended-insufficient"),
    pytest.param(pod(containers=[container(example_com__gpu="1")]), info(node("n1")),
                 fit("Insufficient example.com/gpu"), id="extended-absent-on-node"),
    pytest.param(pod(containers=[container(cpu="100m")], init=[container("i", cpu="600m")]),
                 BUSY, fit("Insufficient cpu"), id="init-container-counts"),
])
def test_node_resources_fit(p: dict[str, Any], n: NodeInfo,
                            want: tuple[Code, list[str]]) -> None:
    assert run(NodeResourcesFit(), p, n) == want


def test_fit_pre_filter_stores_request_in_cycle_state() -> None:
    plugin, state = NodeResourcesFit(), CycleState()
    assert plugin.pre_filter(state, sized(cpu="501m")).ok
    assert len(state) == 1
    # the filter reads the request computed in PreFilter, not the pod passed later
    assert plugin.filter(state, pod(), BUSY).reasons == ["Insufficient cpu"]
