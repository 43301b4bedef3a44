"""ReopenContainerLog: the caller renames the log away while the container writes, asks for
a reopen, and the two files together hold every line exactly once, in order. Through the
task manager (real shims, corral-runc) and through the daemon's CRI API."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from runtime.service import bundle as B
from runtime.service.cri import api_pb2 as pb
from runtime.service.cri.client import CRIClient, CRIError
from runtime.service.tasks import FailedPrecondition, NotFound, TaskManager
from tests.integration.runtime.service.test_runtimed import (
    Runtimed,
    container_config,
)

NS = "default"
LINES = 2000
# one line about every half millisecond, then "done"; the container lives on after it
WRITER = (f"i=0; while [ $i -lt {LINES} ]; do echo line-$i; i=$((i+1)); usleep 500; done; "
          "echo done; exec sleep 1000")
EXPECTED = [f"line-{i}" for i in range(LINES)] + ["done"]


def texts(path: str) -> list[str]:
    """The text of each stdout line of a CRI log (all F: the lines are short)."""
    try:
        with open(path, "rb") as f:
            raw = f.read().decode()
    except FileNotFoundError:
        return []
    out = []
    for line in raw.split("\n")[:-1]:
        _, stream, tag, text = line.split(" ", 3)
        assert (stream, tag) == ("stdout", "F"), line
        out.append(text)
    return out


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def rotate_while_writing(log_path: str, reopen: Callable[[], None]) -> list[str]:
    """Rename the log once a few hundred lines are in, reopen, wait for the end; the
    lines of the rotated file followed by the new file's."""
    wait_for("200 lines", lambda: len(texts(log_path)) >= 200)
    os.rename(log_path, log_path + ".1")
    reopen()
    wait_for("the last line in the new file", lambda: "done" in texts(log_path))
    old, new = texts(log_path + ".1"), texts(log_path)
    assert old and new, (len(old), len(new))
    assert len(old) < len(EXPECTED)  # the rotation happened while the lines came
    return old + new


@pytest.fixture
def manager(tmp_path: Any, leak_check: None) -> Iterator[TaskManager]:
    tm = TaskManager(str(tmp_path / "state"))
    yield tm
    for info in TaskManager(tm.state_dir).list():
        tm.delete(info.namespace, info.id, force=True)
    tm.close()


def spec_of(rootfs: str, tag: str, name: str, script: str) -> dict[str, Any]:
    cfg = B.ContainerConfig(name=name, command=("/bin/sh", "-c", script),
                            cgroups_path=f"/{tag}-{name}")
    return B.build_spec(config=cfg, image={}, rootfs=rootfs)


def test_task_reopen_after_rotation_loses_no_line(manager: TaskManager, rootfs: str,
                                                  tag: str) -> None:
    info = manager.run(namespace=NS, container_id=tag, spec=spec_of(rootfs, tag, "w", WRITER))
    got = rotate_while_writing(info.log_path, lambda: manager.reopen_log(NS, tag))
    assert got == EXPECTED
    manager.delete(NS, tag, force=True)


@pytest.mark.parametrize(("make", "error", "message"), [
    pytest.param("exited", FailedPrecondition, r"state: is stopped, not running", id="exited"),
    pytest.param("missing", NotFound, r"not found", id="unknown-task"),
])
def test_task_reopen_refused(manager: TaskManager, rootfs: str, tag: str, make: str,
                             error: type[Exception], message: str) -> None:
    if make == "exited":
        manager.run(namespace=NS, container_id=tag, spec=spec_of(rootfs, tag, "e", "exit 3"))
        assert manager.wait(NS, tag, timeout=20).code == 3
    with pytest.raises(error, match=rf"Task {NS}/{tag}: {message}"):
        manager.reopen_log(NS, tag)


# ---- through the daemon's CRI API ---------------------------------------------------------


def test_cri_reopen_container_log(rtd: Runtimed, busybox: str) -> None:
    async def scenario() -> None:
        async with CRIClient(rtd.socket, timeout=60) as cri:
            await cri.pull_image(pb.ImageSpec(image=busybox))
            sandbox = rtd.sandbox_config("rotate")
            pod = await cri.run_pod_sandbox(sandbox)
            cid = await cri.create_container(
                pod, container_config(busybox, "w", ["sh", "-c", WRITER]),
                sandbox_config=sandbox)
            await cri.start_container(cid)
            log_path = (await cri.container_status(cid)).status.log_path
            loop = asyncio.get_running_loop()

            def reopen() -> None:
                asyncio.run_coroutine_threadsafe(cri.reopen_container_log(cid),
                                                 loop).result(30)
            got = await asyncio.to_thread(rotate_while_writing, log_path, reopen)
            assert got == EXPECTED
            await cri.stop_container(cid, timeout=0)
            with pytest.raises(CRIError) as err:
                await cri.reopen_container_log(cid)
            assert err.value.code == "FAILED_PRECONDITION" and "not running" in err.value.details
            await cri.remove_pod_sandbox(pod)
    asyncio.run(scenario())


def test_cri_reopen_unknown_container(rtd: Runtimed) -> None:
    async def scenario() -> None:
        async with CRIClient(rtd.socket, timeout=60) as cri:
            with pytest.raises(CRIError) as err:
                await cri.reopen_container_log("0123456789ab")
            assert err.value.code == "NOT_FOUND"
    asyncio.run(scenario())


def test_status_reports_the_log_path(rtd: Runtimed, busybox: str) -> None:
    """The reopened log is the path ContainerStatus names (kubelet's rotation reads it)."""
    async def scenario() -> None:
        async with CRIClient(rtd.socket, timeout=60) as cri:
            await cri.pull_image(pb.ImageSpec(image=busybox))
            sandbox = rtd.sandbox_config("path")
            pod = await cri.run_pod_sandbox(sandbox)
            cid = await cri.create_container(
                pod, container_config(busybox, "p", ["sh", "-c", "echo a; sleep 1000"]),
                sandbox_config=sandbox)
            await cri.start_container(cid)
            st = (await cri.container_status(cid)).status
            assert st.state == pb.CONTAINER_RUNNING
            assert st.log_path == os.path.join(sandbox.log_directory, "p.log")
            await asyncio.to_thread(wait_for, "a", lambda: texts(st.log_path) == ["a"])
            os.rename(st.log_path, st.log_path + ".1")
            await cri.reopen_container_log(cid)
            assert os.path.exists(st.log_path)  # created at once, before any new line
            await cri.remove_pod_sandbox(pod)
    asyncio.run(scenario())
