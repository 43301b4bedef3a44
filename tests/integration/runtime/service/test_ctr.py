"""corral-ctr against a real corral-runtimed: every verb, namespaces, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import pytest

from tests.integration.runtime.service.test_runtimed import (
    PYTHON,
    ROOT,
    Runtimed,
    need_root,
)
from tests.support import containerd
from tests.support.registry import Registry


@pytest.fixture
def rtd(tag: str, leak_check: None, registry: Registry, busybox: str) -> Iterator[Runtimed]:
    need_root()
    with Runtimed(tag=tag, sandbox_image=busybox, registries=[registry.host]) as r:
        r.start()
        yield r


def ctr(rtd: Runtimed, *args: str, namespace: str = "default",
        check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "CORRAL_RUNTIME_SOCKET": rtd.socket}
    p = subprocess.run([PYTHON, "-m", "runtime.service.ctr.main", "-n", namespace, *args],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                       check=False)
    if check and p.returncode != 0:
        raise AssertionError(f"corral-ctr {' '.join(args)}: exit {p.returncode}: {p.stderr}")
    return p


def test_verbs(rtd: Runtimed, busybox: str, tag: str) -> None:
    image_id = ctr(rtd, "pull", busybox).stdout.strip()
    assert image_id == containerd.busybox_image().config.digest
    assert busybox in ctr(rtd, "images").stdout
    assert busybox not in ctr(rtd, "images", namespace="other").stdout

    p = ctr(rtd, "run", "--rm", busybox, "once", "sh", "-c", "echo hi; echo err >&2; exit 5",
            check=False)
    assert (p.returncode, p.stdout, p.stderr) == (5, "hi\n", "err\n")
    assert "once" not in ctr(rtd, "ps").stdout  # --rm removed it

    cid = ctr(rtd, "run", "-d", busybox, "bg", "sh", "-c", "echo started; sleep 60").stdout
    assert len(cid.strip()) == 64
    ps = ctr(rtd, "ps").stdout
    assert "bg" in ps and "running" in ps
    assert "bg" not in ctr(rtd, "ps", namespace="other").stdout
    out = ctr(rtd, "exec", "bg", "sh", "-c", "echo in; exit 2", check=False)
    assert (out.returncode, out.stdout) == (2, "in\n")
    assert ctr(rtd, "logs", "bg").stdout == "started\n"
    assert ctr(rtd, "stop", "-t", "1", "bg").stdout == "bg\n"
    assert "exited (137)" in ctr(rtd, "ps").stdout
    ctr(rtd, "rm", "bg")
    assert "bg" not in ctr(rtd, "ps").stdout

    info = json.loads(ctr(rtd, "info").stdout)
    assert info["runtime"] == "corral" and info["config"]["socket"] == rtd.socket

    archive = os.path.join(rtd.dir, "export.tar")
    from runtime.service.content import FileContentStore  # an export by our image service
    from runtime.service.images.service import ImageService
    from runtime.service.snapshots import NativeSnapshotter
    svc = ImageService(os.path.join(rtd.root, "images"),
                       content=FileContentStore(os.path.join(rtd.root, "content")),
                       snapshotters={"native": NativeSnapshotter(os.path.join(rtd.dir, "n"))},
                       default_snapshotter="native")
    with open(archive, "wb") as f:
        svc.export("default", [busybox], f)
    svc.close()
    assert ctr(rtd, "import", archive, namespace="imported").stdout.split() == [busybox]
    assert busybox in ctr(rtd, "images", namespace="imported").stdout
    assert ctr(rtd, "rmi", busybox, namespace="imported").stdout == busybox + "\n"
    assert busybox not in ctr(rtd, "images", namespace="imported").stdout


@pytest.mark.parametrize(("args", "code", "message"), [
    pytest.param(["logs", "nope"], 2, "container 'nope': not found", id="logs-unknown"),
    pytest.param(["run", "127.0.0.1:1/none:1", "x", "true"], 3, "NOT_FOUND",
                 id="run-unknown-image"),
    pytest.param(["bogus"], 2, "bogus: unknown verb", id="unknown-verb"),
    pytest.param(["rmi", "nothing:1"], 2, "image 'nothing:1': not found", id="rmi-unknown"),
])
def test_errors(rtd: Runtimed, args: list[str], code: int, message: str) -> None:
    p = ctr(rtd, *args, check=False)
    assert p.returncode == code, p.stderr
    assert message in p.stderr
    assert "Traceback" not in p.stderr
    assert ctr(rtd, "ps").stdout.count("\n") == 1  # nothing half-made
