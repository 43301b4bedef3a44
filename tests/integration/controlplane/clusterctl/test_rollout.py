"""clusterctl rollout against the real Deployment controller: status waits for a rollout,
history lists revisions, undo returns to the previous template, restart rolls the pods.
The node agents are played by tests/support/fakeagents.py."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.support.controlplane import ROOT, ControlPlane
from tests.support.fakeagents import FakeAgents

CLUSTERCTL = os.path.join(ROOT, ".venv", "bin", "clusterctl")


def manifest(image: str) -> str:
    return yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": image}]}}}})


@pytest.fixture
def ctl(etcd_endpoint: str, tmp_path: Any) -> Iterator[Any]:
    with ControlPlane(etcd_endpoint, insecure=True, leader=True) as cp:
        doc = {"apiVersion": "v1", "kind": "Config", "current-context": "dev",
               "clusters": [{"name": "c", "cluster": {"server": cp.address,
                                                      "insecure": True}}],
               "users": [{"name": "u", "user": {}}],
               "contexts": [{"name": "dev", "context": {"cluster": "c", "user": "u"}}]}
        path = str(tmp_path / "config")
        with open(path, "w") as f:
            yaml.safe_dump(doc, f)
        with cp.client() as client:
            client.create("nodes", {"apiVersion": "v1", "kind": "Node",
                                    "metadata": {"name": "n1"},
                                    "status": {"allocatable": {"cpu": "8", "memory": "8Gi",
                                                               "pods": "110"}}})

            def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
                return subprocess.run([CLUSTERCTL, "--config", path, *args], input=stdin,
                                      capture_output=True, text=True, timeout=90)
            with FakeAgents(client, nodes=["n1"]):
                yield run, client


def image_of(client: Any) -> str:
    d = client.get("deployments", "web", namespace="default")
    return str(d["spec"]["template"]["spec"]["containers"][0]["image"])


def test_rollout_status_history_undo_restart(ctl: Any) -> None:
    run, client = ctl
    assert run("apply", "-f", "-", stdin=manifest("busybox:1")).returncode == 0
    out = run("rollout", "status", "deployment/web", "--timeout", "60s")
    assert out.returncode == 0, out.stderr
    assert 'deployment "web" successfully rolled out' in out.stdout
    assert run("apply", "-f", "-", stdin=manifest("busybox:2")).returncode == 0
    out = run("rollout", "status", "deploy/web", "--timeout", "60s")
    assert out.returncode == 0, out.stderr
    history = run("rollout", "history", "deployment/web")
    assert history.returncode == 0, history.stderr
    lines = history.stdout.splitlines()
    assert lines[0] == "deployment.apps/web" and lines[1].split() == ["REVISION",
                                                                        "CHANGE-CAUSE"]
    assert sorted(ln.split()[0] for ln in lines[2:] if ln.strip()) == ["1", "2"]
    undo = run("rollout", "undo", "deployment/web")
    assert undo.returncode == 0, undo.stderr
    assert image_of(client) == "busybox:1"
    assert run("rollout", "status", "deployment/web", "--timeout", "60s").returncode == 0
    before = {rs["metadata"]["name"] for rs in client.list(
        "replicasets", namespace="default")["items"]}
    restart = run("rollout", "restart", "deployment/web")
    assert restart.returncode == 0, restart.stderr
    assert run("rollout", "status", "deployment/web", "--timeout", "60s").returncode == 0
    d = client.get("deployments", "web", namespace="default")
    assert "kubectl.kubernetes.io/restartedAt" in \
        d["spec"]["template"]["metadata"]["annotations"]
    after = {rs["metadata"]["name"] for rs in client.list(
        "replicasets", namespace="default")["items"]}
    assert after - before, "restart made no new ReplicaSet"
    pods = client.list("pods", namespace="default", label_selector="app=web")["items"]
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert len(live) == 3
