"""The real .venv/bin/clusterctl, as a subprocess, against a real corral-controlplane and
etcd: apply (created/configured/unchanged, all-or-nothing), get, delete, scale, diff, wait,
config use-context."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from api.client import Client
from tests.support.controlplane import ROOT, ControlPlane

CLUSTERCTL = os.path.join(ROOT, ".venv", "bin", "clusterctl")


class CLI:
    def __init__(self, config: str, client: Client) -> None:
        self.config = config
        self.client = client

    def __call__(self, *args: str, stdin: str | None = None,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CLUSTERCTL, "--config", self.config, *args], input=stdin,
                              capture_output=True, text=True, timeout=30,
                              env={**os.environ, **(env or {})})


@pytest.fixture
def cli(etcd_endpoint: str, tmp_path: Any) -> Iterator[CLI]:
    with ControlPlane(etcd_endpoint, insecure=True) as cp:
        doc = {"apiVersion": "v1", "kind": "Config", "current-context": "dev",
               "clusters": [{"name": "c", "cluster": {"server": cp.address,
                                                      "insecure": True}}],
               "users": [{"name": "u", "user": {}}],
               "contexts": [{"name": "dev", "context": {"cluster": "c", "user": "u"}},
                            {"name": "team", "context": {"cluster": "c", "user": "u",
                                                         "namespace": "team"}}]}
        path = str(tmp_path / "config")
        with open(path, "w") as f:
            yaml.safe_dump(doc, f)
        with cp.client() as client:
            yield CLI(path, client)


def cm(name: str, **data: str) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": name, "labels": {"app": "demo"}},
                           "data": data or {"a": "1"}})


def deploy(name: str, replicas: int = 2) -> str:
    return yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": "demo"}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})


def write(tmp_path: Any, name: str, *docs: str) -> str:
    path = str(tmp_path / name)
    with open(path, "w") as f:
        f.write("---\n".join(docs))
    return path


def test_apply_reports_created_configured_unchanged(cli: CLI, tmp_path: Any) -> None:
    path = write(tmp_path, "app.yaml", cm("conf"), deploy("web"))
    out = cli("apply", "-f", path)
    assert (out.returncode, out.stdout) == (0, "configmap/conf created\n"
                                               "deployment.apps/web created\n"), out.stderr
    out = cli("apply", "-f", path)
    assert out.stdout == "configmap/conf unchanged\ndeployment.apps/web unchanged\n"
    write(tmp_path, "app.yaml", cm("conf"), deploy("web", replicas=4))
    out = cli("apply", "-f", str(tmp_path))  # a directory
    assert out.stdout == "configmap/conf unchanged\ndeployment.apps/web configured\n"
    assert cli.client.get("deployments", "web", namespace="default")["spec"]["replicas"] == 4
    out = cli("apply", "-f", "-", "--dry-run=server", stdin=cm("conf", a="2"))
    assert out.stdout == "configmap/conf configured (server dry run)\n"
    assert cli.client.get("configmaps", "conf", namespace="default")["data"] == {"a": "1"}


def test_apply_with_invalid_documents_applies_nothing_and_reports_each(
        cli: CLI, tmp_path: Any) -> None:
    bad_local = deploy("bad", replicas=-1)  # api.kinds.validate finds this one
    ghost = cm("ghost").replace("metadata:\n", "metadata:\n  namespace: ghost\n")
    path = write(tmp_path, "mixed.yaml", cm("good"), bad_local, ghost)
    line = cm("good").count("\n") + 2  # the second document starts after the first's ---
    out = cli("apply", "-f", path)
    assert out.returncode == 1 and out.stdout == ""
    assert f"error: {path}: document 2 (line {line}): Deployment bad: spec.replicas: must " \
           "be >= 0, got -1\n" in out.stderr
    # only the server knows this one: its dry run says so, and still nothing is applied
    assert f'"{path}" document 3' in out.stderr and "ghost" in out.stderr
    assert "nothing applied: 2 errors" in out.stderr
    assert cli.client.list("configmaps", namespace="default")["items"] == []


def test_apply_prune_deletes_what_left_the_files(cli: CLI, tmp_path: Any) -> None:
    assert cli("apply", "-f", write(tmp_path, "a.yaml", cm("one"), cm("two"))).returncode == 0
    out = cli("apply", "-f", write(tmp_path, "a.yaml", cm("one")), "--prune", "-l",
              "app=demo")
    assert out.stdout == "configmap/one unchanged\nconfigmap/two pruned\n", out.stderr
    names = [o["metadata"]["name"] for o in cli.client.list(
        "configmaps", namespace="default")["items"]]
    assert names == ["one"]


def test_get_tables_and_outputs(cli: CLI, tmp_path: Any) -> None:
    out = cli("get", "pods")
    assert (out.returncode, out.stdout, out.stderr) == (
        0, "", "No resources found in default namespace.\n")
    cli("apply", "-f", write(tmp_path, "a.yaml", cm("conf", a="1", b="2"), deploy("web")))
    out = cli("get", "cm")
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["NAME", "DATA", "AGE"]
    assert lines[1].split()[:2] == ["conf", "2"]
    assert cli("get", "deploy").stdout.splitlines()[1].split()[:4] == ["web", "0/2", "0", "0"]
    assert cli("get", "cm", "-A").stdout.splitlines()[0].split()[:2] == ["NAMESPACE", "NAME"]
    got = yaml.safe_load(cli("get", "cm", "conf", "-o", "yaml").stdout)
    assert (got["kind"], got["data"]) == ("ConfigMap", {"a": "1", "b": "2"})
    assert "managedFields" not in got["metadata"]
    listed = json.loads(cli("get", "deployments.apps", "-o", "json").stdout)
    assert listed["kind"] == "List" and listed["items"][0]["kind"] == "Deployment"
    assert cli("get", "cm,deploy", "-o", "name").stdout == "configmap/conf\n" \
                                                           "deployment.apps/web\n"
    assert cli("get", "deploy/web", "-o", "jsonpath={.spec.replicas}").stdout == "2"
    out = cli("get", "deploy", "web", "nope")
    assert out.returncode == 1
    assert out.stderr == 'Error from server (NotFound): deployments.apps "nope" not found\n'
    assert cli("get", "widgets").stderr == \
        'error: the server doesn\'t have a resource type "widgets"\n'


def test_delete_scale_and_wait(cli: CLI, tmp_path: Any) -> None:
    path = write(tmp_path, "a.yaml", cm("one"), cm("two"), deploy("web"))
    cli("apply", "-f", path)
    out = cli("scale", "deploy", "web", "--replicas=5")
    assert out.stdout == "deployment.apps/web scaled\n", out.stderr
    assert cli.client.get("deployments", "web", namespace="default")["spec"]["replicas"] == 5
    out = cli("delete", "cm", "one")
    assert out.stdout == 'configmap "one" deleted\n'
    out = cli("delete", "cm", "one")
    assert (out.returncode, out.stderr) == (
        1, 'Error from server (NotFound): configmaps "one" not found\n')
    deleter = threading.Timer(0.5, lambda: cli.client.delete("configmaps", "two",
                                                             namespace="default"))
    deleter.start()
    start = time.monotonic()
    out = cli("wait", "--for=delete", "cm/two", "--timeout=10s")
    deleter.join()
    assert (out.returncode, out.stdout) == (0, "configmap/two deleted\n"), out.stderr
    assert time.monotonic() - start < 5
    out = cli("wait", "--for=condition=Available", "deploy/web", "--timeout=0.3s")
    assert out.returncode == 1 and "timed out waiting" in out.stderr
    out = cli("delete", "-f", path, "--ignore-not-found")
    assert out.stdout == 'deployment.apps "web" deleted\n'


def test_diff_shows_what_apply_would_change(cli: CLI, tmp_path: Any) -> None:
    path = write(tmp_path, "a.yaml", deploy("web", replicas=2))
    cli("apply", "-f", path)
    out = cli("diff", "-f", path)
    assert (out.returncode, out.stdout) == (0, ""), out.stderr
    write(tmp_path, "a.yaml", deploy("web", replicas=3))
    out = cli("diff", "-f", path)
    assert out.returncode == 1
    assert "-  replicas: 2\n+  replicas: 3\n" in out.stdout
    assert "--- live/apps.v1.Deployment.default.web" in out.stdout
    assert cli.client.get("deployments", "web", namespace="default")["spec"]["replicas"] == 2


def test_config_use_context_switches_the_namespace(cli: CLI, tmp_path: Any) -> None:
    cli.client.create("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                     "metadata": {"name": "team"}})
    out = cli("config", "use-context", "team")
    assert out.stdout == 'Switched to context "team".\n'
    assert cli("config", "current-context").stdout == "team\n"
    assert cli("apply", "-f", "-", stdin=cm("here")).returncode == 0
    assert cli.client.get("configmaps", "here", namespace="team")["metadata"]["name"] == \
        "here"
    out = cli("get", "cm")
    assert "No resources found in team namespace." not in out.stderr
    assert cli("config", "use-context", "nope").returncode == 1


def test_describe_shows_events_of_the_object(cli: CLI, tmp_path: Any) -> None:
    cli("apply", "-f", write(tmp_path, "a.yaml", cm("conf")))
    made = cli.client.get("configmaps", "conf", namespace="default")
    cli.client.create("events", {
        "apiVersion": "v1", "kind": "Event", "metadata": {"name": "conf.1"},
        "involvedObject": {"kind": "ConfigMap", "name": "conf", "namespace": "default",
                           "uid": made["metadata"]["uid"]},
        "reason": "Checked", "message": "looked fine", "type": "Normal",
        "source": {"component": "test"}}, namespace="default")
    out = cli("describe", "cm", "conf")
    assert out.returncode == 0, out.stderr
    assert "Name:               conf" in out.stdout
    assert "Normal   Checked" in out.stdout and "looked fine" in out.stdout
