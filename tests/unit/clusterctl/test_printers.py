"""Tables, AGE and -o output: pure functions of objects and the time."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from clusterctl import printers

NOW = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)


def ago(seconds: float) -> str:
    return (NOW - dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(("seconds", "want"), [
    pytest.param(5, "5s", id="seconds"),
    pytest.param(119, "119s", id="under-two-minutes-in-seconds"),
    pytest.param(182, "3m2s", id="minutes-and-seconds"),
    pytest.param(300, "5m", id="whole-minutes"),
    pytest.param(45 * 60, "45m", id="minutes-only-past-ten"),
    pytest.param(4 * 3600, "4h", id="hours"),
    pytest.param(5 * 3600 + 30 * 60, "5h30m", id="hours-and-minutes"),
    pytest.param(20 * 3600, "20h", id="hours-only-past-eight"),
    pytest.param(2 * 86400, "2d", id="days"),
    pytest.param(3 * 86400 + 4 * 3600, "3d4h", id="days-and-hours"),
    pytest.param(400 * 86400, "400d", id="days-only-past-a-week"),
    pytest.param((2 * 365 + 10) * 86400, "2y10d", id="years-and-days"),
    pytest.param(-1, "0s", id="clock-skew-of-a-second"),
    pytest.param(-5, "<invalid>", id="future"),
])
def test_human_duration_is_kubectls(seconds: float, want: str) -> None:
    assert printers.human_duration(seconds) == want


def pod(name: str, *, phase: str = "Running", ready: bool = True, restarts: int = 0,
        waiting: str = "", deleting: bool = False, ns: str = "default") -> dict[str, Any]:
    state = {"waiting": {"reason": waiting}} if waiting else {"running": {}}
    meta: dict[str, Any] = {"name": name, "namespace": ns, "creationTimestamp": ago(65)}
    if deleting:
        meta["deletionTimestamp"] = ago(0)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"},
            "status": {"phase": phase, "podIP": "10.0.0.5", "containerStatuses": [
                {"name": "a", "ready": ready, "restartCount": restarts, "state": state},
                {"name": "b", "ready": True, "restartCount": 1, "state": {"running": {}}}]}}


@pytest.mark.parametrize(("obj", "want"), [
    pytest.param(pod("web"), ["web", "2/2", "Running", "1", "65s"], id="running"),
    pytest.param(pod("web", ready=False, restarts=4, waiting="CrashLoopBackOff"),
                 ["web", "1/2", "CrashLoopBackOff", "5", "65s"], id="waiting-reason-wins"),
    pytest.param(pod("web", deleting=True), ["web", "2/2", "Terminating", "1", "65s"],
                 id="terminating"),
])
def test_pod_rows(obj: dict[str, Any], want: list[str]) -> None:
    rows = printers.table("Pod", [obj], now=NOW)
    assert rows == [["NAME", "READY", "STATUS", "RESTARTS", "AGE"], want]


def test_wide_and_all_namespaces_add_columns() -> None:
    rows = printers.table("Pod", [pod("web", ns="prod")], now=NOW, wide=True,
                          all_namespaces=True)
    assert rows[0] == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP",
                       "NODE", "NOMINATED NODE"]
    assert rows[1] == ["prod", "web", "2/2", "Running", "1", "65s", "10.0.0.5", "n1",
                       "<none>"]


@pytest.mark.parametrize(("kind", "obj", "want"), [
    pytest.param("Deployment", {"metadata": {"name": "web", "creationTimestamp": ago(3600)},
                                "spec": {"replicas": 3},
                                "status": {"readyReplicas": 2, "updatedReplicas": 3,
                                           "availableReplicas": 2}},
                 [["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
                  ["web", "2/3", "3", "2", "60m"]], id="deployment"),
    pytest.param("Node", {"metadata": {"name": "n1", "creationTimestamp": ago(2 * 86400),
                                       "labels": {"node-role.kubernetes.io/control-plane": ""}},
                          "spec": {"unschedulable": True},
                          "status": {"conditions": [{"type": "Ready", "status": "True"}],
                                     "nodeInfo": {"kubeletVersion": "v0.1.0"}}},
                 [["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
                  ["n1", "Ready,SchedulingDisabled", "control-plane", "2d", "v0.1.0"]],
                 id="node"),
    pytest.param("ConfigMap", {"metadata": {"name": "c", "creationTimestamp": ago(9)},
                               "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}},
                 [["NAME", "DATA", "AGE"], ["c", "3", "9s"]], id="configmap"),
    pytest.param("Widget", {"metadata": {"name": "w", "creationTimestamp": ago(9)}},
                 [["NAME", "AGE"], ["w", "9s"]], id="unknown-kind-name-age"),
])
def test_kind_tables(kind: str, obj: dict[str, Any], want: list[list[str]]) -> None:
    assert printers.table(kind, [obj], now=NOW) == want


def test_format_table_pads_columns_by_three_spaces() -> None:
    text = printers.format_table([["NAME", "DATA", "AGE"], ["a-long-name", "1", "5s"]])
    assert text == "NAME          DATA   AGE\na-long-name   1      5s\n"


def test_render_one_object_as_itself_and_several_as_a_list() -> None:
    a, b = {"kind": "ConfigMap", "metadata": {"name": "a"}}, {"kind": "ConfigMap",
                                                               "metadata": {"name": "b"}}
    assert json.loads(printers.render([a], output="json", single=True)) == a
    listed = json.loads(printers.render([a, b], output="json"))
    assert listed["kind"] == "List" and listed["items"] == [a, b]
    assert "name: a" in printers.render([a], output="yaml", single=True)
    assert printers.render([a, b], output="name", refs=["configmap/a", "configmap/b"]) == \
        "configmap/a\nconfigmap/b\n"
    assert printers.render([a, b], output="jsonpath={.items[*].metadata.name}") == "a b"
    with pytest.raises(ValueError, match="output format \"xml\""):
        printers.render([a], output="xml")
