"""The leak check (tests/support/leaks.py) against real leftovers: it catches a mount, a
network namespace, a cgroup and a process of its own test and removes them, and it leaves
alone the same objects made for another test (another tag, another tmp dir) even when
their paths say "corral".

Each case makes one object with ``make(tag, dir)``; for "ours" TAG is the check's tag and
DIR is under its tmp dir, for "theirs" they are another tag and a dir elsewhere in /tmp.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from runtime.service.cni import netns
from tests.support import leaks
from tests.support.process import alive

CGROUP = "/sys/fs/cgroup/pids"


@dataclass
class Made:
    """One object a case made: what the check must report (kind, name), how to tell it
    still exists, and how to remove it."""

    reports: list[tuple[str, str]]
    exists: Callable[[], bool]
    remove: Callable[[], None]


def kill(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)


def rmdirs(*paths: str) -> None:
    for p in paths:
        with contextlib.suppress(OSError):
            os.rmdir(p)


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=False, stderr=subprocess.DEVNULL)


def orphan(cmd: str, env: dict[str, str] | None = None) -> int:
    """Run CMD in the background of a shell that exits: a process whose parent died, as a
    shim's is when its daemon is killed. Returns its PID."""
    out = subprocess.run(["sh", "-c", f"{cmd} >/dev/null 2>&1 </dev/null & echo $!"],
                         env=env, capture_output=True, check=True, timeout=10).stdout
    pid = int(out)
    assert pid not in leaks.descendants_of(os.getpid(), leaks.read_procs(details=False))
    return pid


def make_mount(tag: str, d: str) -> Made:
    m = os.path.join(d, "corral-rootfs")
    os.makedirs(m)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", m], check=True)
    return Made([("mounts", m)], lambda: netns.is_mounted(m), lambda: sh("umount", "-l", m))


def make_netns(tag: str, d: str) -> Made:
    path = netns.create("sandbox1", root=os.path.join(d, "netns"))
    return Made([("network namespaces", path)], lambda: netns.is_netns(path),
                lambda: netns.remove(path))


def make_ip_netns(tag: str, d: str) -> Made:
    name = f"{tag}-node-1"
    subprocess.run(["ip", "netns", "add", name], check=True)
    path = f"/run/netns/{name}"
    return Made([("network namespaces", path)], lambda: os.path.exists(path),
                lambda: sh("ip", "netns", "delete", name))


def make_cgroup(tag: str, d: str) -> Made:
    path = os.path.join(CGROUP, f"{tag}-bundle")
    os.makedirs(os.path.join(path, "child"))
    return Made([("cgroups", path)], lambda: os.path.isdir(path),
                lambda: rmdirs(os.path.join(path, "child"), path))


def make_process_env(tag: str, d: str) -> Made:
    pid = orphan("sleep 600", env={**os.environ, leaks.TAG_ENV: tag})
    return Made([("processes", f"{pid} (sleep 600)")], lambda: alive(pid), lambda: kill(pid))


def make_process_argv(tag: str, d: str) -> Made:
    pid = orphan(f"exec {sys.executable} -c 'import time; time.sleep(600)' {tag}")
    return Made([("processes", f"{pid} ({sys.executable} -c import time")],
                lambda: alive(pid), lambda: kill(pid))


def make_process_cgroup(tag: str, d: str) -> Made:
    cg = os.path.join(CGROUP, f"{tag}-c")
    os.makedirs(cg)
    pid = orphan(f"exec sh -c 'echo $$ > {cg}/cgroup.procs; exec sleep 600'")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with open(os.path.join(cg, "cgroup.procs")) as f:
            if str(pid) in f.read().split() and b"sleep" in cmdline(pid):
                break
        time.sleep(0.02)

    def remove() -> None:
        kill(pid)
        rmdirs(cg)
    return Made([("processes", f"{pid} (sleep 600)"), ("cgroups", cg)],
                lambda: alive(pid) or os.path.isdir(cg), remove)


def cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


CASES = [
    pytest.param(make_mount, id="mount"),
    pytest.param(make_netns, id="netns-in-a-private-dir"),
    pytest.param(make_ip_netns, id="ip-netns"),
    pytest.param(make_cgroup, id="cgroup"),
    pytest.param(make_process_env, id="orphan-with-tag-in-environ"),
    pytest.param(make_process_argv, id="orphan-with-tag-in-argv"),
    pytest.param(make_process_cgroup, id="orphan-in-a-tagged-cgroup"),
]


@pytest.fixture
def root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")


@pytest.fixture
def made() -> Iterator[list[Made]]:
    """What a test made: removed at the end whatever the check did."""
    objs: list[Made] = []
    yield objs
    for m in reversed(objs):
        if m.exists():
            m.remove()


@pytest.mark.parametrize("make", CASES)
def test_catches_and_removes_its_own(make: Callable[[str, str], Made], root: None,
                                     tmp_path: Path, tag: str, leak_check: None,
                                     made: list[Made]) -> None:
    obj = make(tag, str(tmp_path))
    made.append(obj)
    assert obj.exists()
    problems = leaks.Leaks(tag, str(tmp_path), grace=0.3).check()
    assert len(problems) == len(obj.reports), problems
    for kind, name in obj.reports:
        assert any(p.startswith(f"{kind} left") and name in p for p in problems), problems
    assert not obj.exists(), f"the check reported {obj.reports} but did not remove it"


@pytest.mark.parametrize("make", CASES)
def test_leaves_another_tests_alone(make: Callable[[str, str], Made], root: None,
                                    tmp_path: Path, tag: str, leak_check: None,
                                    made: list[Made]) -> None:
    other = f"corral-test-{uuid.uuid4().hex[:10]}"
    elsewhere = tempfile.mkdtemp(prefix="corral-elsewhere-", dir="/tmp")
    try:
        obj = make(other, elsewhere)
        made.append(obj)
        assert leaks.Leaks(tag, str(tmp_path), grace=0.3).check() == []
        assert obj.exists(), f"the check removed {obj.reports}, which are not its test's"
        obj.remove()
    finally:
        shutil.rmtree(elsewhere, ignore_errors=True)


def test_catches_a_new_child_of_pytest_without_tag(root: None, tmp_path: Path, tag: str,
                                                   leak_check: None) -> None:
    before = subprocess.Popen(["sleep", "600"])  # alive before the check starts: not a leak
    try:
        check = leaks.Leaks(tag, str(tmp_path), grace=0.3)
        during = subprocess.Popen(["sleep", "601"])
        try:
            problems = check.check()
            assert problems == [f"processes left running: {during.pid} (sleep 601)"]
            assert during.wait(timeout=5) == -signal.SIGKILL
        finally:
            during.kill()
            during.wait()
        assert before.poll() is None
    finally:
        before.kill()
        before.wait()


def test_a_clean_test_passes_quickly(tmp_path: Path, tag: str) -> None:
    check = leaks.Leaks(tag, str(tmp_path))
    t = time.monotonic()
    assert check.check() == []
    assert time.monotonic() - t < 1
