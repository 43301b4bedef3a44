"""Pure parts of the commands: the dispatcher, --for conditions, rollout status lines,
describe, config editing, completion candidates; plus the start-up import budget."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from clusterctl import main
from clusterctl.commands import completion, config, describe, rollout, wait

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


@pytest.mark.parametrize(("argv", "want"), [
    pytest.param(["get", "pods"], 0, id="verb-first"),
    pytest.param(["-n", "x", "get"], 2, id="after-a-valued-global"),
    pytest.param(["--namespace=x", "get"], 1, id="after-an-inline-global"),
    pytest.param(["--help"], -1, id="no-verb"),
])
def test_find_command(argv: list[str], want: int) -> None:
    assert main.find_command(argv) == want


def test_unknown_verb_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(["frobnicate"]) == 1
    assert 'unknown command "frobnicate"' in capsys.readouterr().err


def test_usage_error_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(["scale", "deploy", "web"]) == 1  # --replicas is required
    assert "--replicas" in capsys.readouterr().err


def obj(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web", "generation": 2},
            "spec": {"replicas": 3}, "status": status}


@pytest.mark.parametrize(("d", "text", "done"), [
    pytest.param(obj(observedGeneration=1), "Waiting for deployment spec update to be "
                 "observed...", False, id="not-observed"),
    pytest.param(obj(observedGeneration=2, updatedReplicas=1, replicas=3),
                 'Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas '
                 "have been updated...", False, id="updating"),
    pytest.param(obj(observedGeneration=2, updatedReplicas=3, replicas=4),
                 'Waiting for deployment "web" rollout to finish: 1 old replicas are pending '
                 "termination...", False, id="old-pending"),
    pytest.param(obj(observedGeneration=2, updatedReplicas=3, replicas=3,
                     availableReplicas=2),
                 'Waiting for deployment "web" rollout to finish: 2 of 3 updated replicas '
                 "are available...", False, id="becoming-available"),
    pytest.param(obj(observedGeneration=2, updatedReplicas=3, replicas=3,
                     availableReplicas=3),
                 'deployment "web" successfully rolled out', True, id="done"),
])
def test_rollout_status_message(d: dict[str, Any], text: str, done: bool) -> None:
    assert rollout.status_message(d) == (text, done)


@pytest.mark.parametrize(("spec", "o", "want"), [
    pytest.param("delete", None, True, id="delete-gone"),
    pytest.param("delete", {}, False, id="delete-present"),
    pytest.param("condition=Ready", {"status": {"conditions": [
        {"type": "Ready", "status": "True"}]}}, True, id="condition-true"),
    pytest.param("condition=ready=false", {"status": {"conditions": [
        {"type": "Ready", "status": "False"}]}}, True, id="condition-value-any-case"),
    pytest.param("condition=Ready", {"status": {}}, False, id="condition-missing"),
    pytest.param("jsonpath='{.status.phase}'=Running", {"status": {"phase": "Running"}},
                 True, id="jsonpath"),
])
def test_wait_for(spec: str, o: dict[str, Any] | None, want: bool) -> None:
    check, _ = wait.parse_for(spec)
    assert check(o) is want


@pytest.mark.parametrize(("text", "want"), [
    pytest.param("30s", 30.0, id="s"), pytest.param("2m", 120.0, id="m"),
    pytest.param("500ms", 0.5, id="ms"), pytest.param("7", 7.0, id="bare"),
])
def test_durations(text: str, want: float) -> None:
    assert wait.duration(text) == want


def test_describe_sections_and_events() -> None:
    import datetime as dt
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "web", "namespace": "default", "labels": {"a": "b"},
                        "creationTimestamp": "2024-05-01T11:59:00Z"},
           "spec": {"containers": [{"name": "c", "image": "nginx"}]},
           "status": {"phase": "Pending"}}
    ev = {"type": "Warning", "reason": "FailedScheduling", "message": "0/1 nodes",
          "lastTimestamp": "2024-05-01T11:59:30Z", "source": {"component": "scheduler"}}
    text = describe.describe(pod, [ev], now=dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC))
    assert "Name:               web\n" in text
    assert "Labels:             a=b\n" in text
    assert "Status:             Pending\n" in text
    assert "      Image:              nginx\n" not in text and "    Image:" in text
    assert text.rstrip().endswith("Warning   FailedScheduling   30s    scheduler   0/1 nodes")
    assert "Events:              <none>" in describe.describe(pod, [], now=dt.datetime.now(
        dt.UTC))


def test_config_redacts_secrets_unless_raw() -> None:
    doc: dict[str, Any] = {
        "clusters": [{"name": "c", "cluster": {"server": "x",
                                               "certificate-authority-data": "QUJD"}}],
        "users": [{"name": "u", "user": {"token": "secret", "client-key-data": "S0VZ"}}]}
    shown = config.redact(doc)
    assert shown["clusters"][0]["cluster"] == {"server": "x",
                                               "certificate-authority-data": "DATA+OMITTED"}
    assert shown["users"][0]["user"] == {"token": "REDACTED",
                                         "client-key-data": "DATA+OMITTED"}
    assert doc["users"][0]["user"]["token"] == "secret"


@pytest.mark.parametrize(("words", "has", "lacks"), [
    pytest.param([], "apply", "__complete", id="verbs"),
    pytest.param(["get"], "deployments", "apply", id="types"),
    pytest.param(["config"], "use-context", "deployments", id="config-actions"),
    pytest.param(["rollout"], "restart", "deployments", id="rollout-actions"),
    pytest.param(["completion"], "zsh", "apply", id="shells"),
])
def test_completion_candidates(words: list[str], has: str, lacks: str) -> None:
    got = completion.candidates(words)
    assert has in got and lacks not in got


@pytest.mark.parametrize("argv", [
    pytest.param(["--help"], id="help"),
    pytest.param(["explain", "pod.spec"], id="explain"),
    pytest.param(["version", "--client"], id="version-client"),
])
def test_fast_paths_do_not_import_grpc(argv: list[str]) -> None:
    code = ("import sys; from clusterctl.main import main; rc = main(sys.argv[1:]); "
            "assert 'grpc' not in sys.modules, 'grpc imported'; sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code, *argv], cwd=ROOT,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
