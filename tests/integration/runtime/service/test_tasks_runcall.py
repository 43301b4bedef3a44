"""The holder's corral-runc calls through the fork server's runtime socket, and without it.

Once a container runs, its shim is corral-shim-holder (C). Its exec and delete run
corral-runc in a forked child of the daemon's fork server (forkserver.py, runcall.c); when
the fork server is gone (closed with the daemon, or killed and its socket left behind) the
holder execs the launcher. Both ways give the same exit codes, output, errors and
timeouts; which way ran shows in the exec'd process's parent."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from runtime.service import bundle as B
from runtime.service.shim import protocol as P
from runtime.service.tasks import RUNTIME_SOCKET, ExecResult, TaskError, TaskManager
from tests.support.process import alive

NS = "default"
Spec = Callable[..., dict[str, Any]]


@pytest.fixture
def spec(rootfs: str, tag: str) -> Spec:
    def make(name: str, command: tuple[str, ...]) -> dict[str, Any]:
        cfg = B.ContainerConfig(name=name, command=command, cgroups_path=f"/{tag}-{name}")
        return B.build_spec(config=cfg, image={"Env": ["IMAGE=1"]}, rootfs=rootfs)
    return make


@pytest.fixture
def manager(tmp_path: Any, leak_check: None) -> Iterator[TaskManager]:
    tm = TaskManager(str(tmp_path / "state"))
    if tm.holder is None or not tm.inproc:
        pytest.fail("needs corral-shim-holder and corral-runc (scripts/make_launchers.py)")
    yield tm
    for info in TaskManager(tm.state_dir).list():
        tm.delete(info.namespace, info.id, force=True)
    tm.close()


def ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        st = f.read()
    return int(st[st.rindex(b")") + 2:].split()[1])


def shim_pid(tm: TaskManager, cid: str) -> int:
    with open(os.path.join(tm.task_dir(NS, cid), P.PID)) as f:
        return int(f.read())


def find_process(tm: TaskManager, cid: str, cmdline: bytes, timeout: float = 10) -> int:
    """The pid of the container's process whose command line is CMDLINE."""
    procs = os.path.join(tm._record(NS, cid)["cgroups"]["pids"], "cgroup.procs")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(procs) as f:
            for pid in map(int, f.read().split()):
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as c:
                        if c.read() == cmdline:
                            return pid
                except OSError:
                    continue
        time.sleep(0.01)
    raise AssertionError(f"no process {cmdline!r} in {cid}")


def gone_fork_server(tm: TaskManager, how: str) -> None:
    """Take the fork server away: as a daemon that exits (socket removed) or one killed
    with its server (socket file left behind)."""
    assert tm.forkserver is not None and tm.forkserver._proc is not None
    path = os.path.join(tm.state_dir, RUNTIME_SOCKET)
    assert os.path.exists(path)
    if how == "closed":
        tm.forkserver.close()
        assert not os.path.exists(path)
    else:
        proc = tm.forkserver._proc
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert os.path.exists(path)  # stale: connect is refused


MODES = [
    pytest.param("fork-server", id="through-the-fork-server"),
    pytest.param("closed", id="fork-server-gone-launcher-execd"),
    pytest.param("killed", id="fork-server-killed-stale-socket-launcher-execd"),
]


@pytest.mark.parametrize("mode", MODES)
def test_exec_and_delete_same_results_either_way(manager: TaskManager, spec: Spec, tag: str,
                                                 mode: str) -> None:
    info = manager.run(namespace=NS, container_id=tag, spec=spec("c", ("/bin/sleep", "1000")))
    shim = shim_pid(manager, tag)
    assert manager.forkserver is not None and manager.forkserver._proc is not None
    server = manager.forkserver._proc.pid
    if mode != "fork-server":
        gone_fork_server(manager, mode)

    r = manager.exec(NS, tag, args=["/bin/sh", "-c", "echo out $IMAGE; echo err >&2; exit 5"],
                     timeout=10)
    assert r == ExecResult(exit_code=5, stdout=b"out 1\n", stderr=b"err\n", timed_out=False)
    big = manager.exec(NS, tag, args=["/bin/sh", "-c", "seq 1 20000"], timeout=10)
    assert big.stdout == b"".join(b"%d\n" % i for i in range(1, 20001))

    with pytest.raises(TaskError, match=r"corral-runc exec: .*/no/such/program"):
        manager.exec(NS, tag, args=["/no/such/program"], timeout=10)

    # a timeout kills the exec'd process (not the runtime, not the container's init)
    done: list[ExecResult] = []
    t0 = time.monotonic()
    waiter = threading.Thread(target=lambda: done.append(
        manager.exec(NS, tag, args=["/bin/sleep", "100"], timeout=1.5)))
    waiter.start()
    try:
        pid = find_process(manager, tag, b"/bin/sleep\x00100\x00")
        if mode == "fork-server":  # the runtime's child; the runtime, the server's
            parent = ppid(pid)
            assert parent != shim and ppid(parent) == server
        else:  # `exec --detach` left it to the holder, a subreaper, once the runtime ended
            deadline = time.monotonic() + 5
            while ppid(pid) != shim and time.monotonic() < deadline:
                time.sleep(0.01)
            assert ppid(pid) == shim
    finally:
        waiter.join(30)
    assert done and done[0].timed_out and done[0].exit_code == 137
    assert time.monotonic() - t0 < 10
    assert not alive(pid)
    assert alive(info.pid)
    assert os.readlink(f"/proc/{shim}/exe") == manager.holder  # still the holder

    assert manager.stop(NS, tag, grace=0).code == 137
    assert manager.delete(NS, tag) is not None
    assert not alive(shim)
    assert not os.path.exists(manager.task_dir(NS, tag))
    assert manager.list() == []


def test_restarted_daemon_serves_running_holders(tmp_path: Any, spec: Spec, tag: str,
                                                 leak_check: None) -> None:
    """The daemon gone, its holders exec the launcher; a daemon started again over the
    same state starts its fork server at once, and the holders use it."""
    state = str(tmp_path / "state")
    first = TaskManager(state)
    try:
        first.run(namespace=NS, container_id=tag, spec=spec("c", ("/bin/sleep", "1000")))
    finally:
        first.close()
    assert not os.path.exists(os.path.join(state, RUNTIME_SOCKET))
    assert first.exec(NS, tag, args=["/bin/echo", "alone"]).stdout == b"alone\n"
    second = TaskManager(state)
    try:
        assert second.forkserver is not None and second.forkserver._proc is not None
        assert os.path.exists(os.path.join(state, RUNTIME_SOCKET))
        done: list[ExecResult] = []
        waiter = threading.Thread(target=lambda: done.append(
            second.exec(NS, tag, args=["/bin/sleep", "100"], timeout=1)))
        waiter.start()
        try:
            pid = find_process(second, tag, b"/bin/sleep\x00100\x00")
            assert ppid(ppid(pid)) == second.forkserver._proc.pid
        finally:
            waiter.join(30)
        assert done and done[0].timed_out
        assert second.delete(NS, tag, force=True) is not None
    finally:
        for t in second.list():
            second.delete(NS, t.id, force=True)
        second.close()


def test_exec_in_flight_keeps_its_result_when_the_daemon_goes(manager: TaskManager,
                                                              spec: Spec, tag: str) -> None:
    """The fork server, its daemon gone, takes no new calls but answers running ones."""
    manager.run(namespace=NS, container_id=tag, spec=spec("c", ("/bin/sleep", "1000")))
    assert manager.forkserver is not None
    done: list[ExecResult] = []
    waiter = threading.Thread(target=lambda: done.append(manager.exec(
        NS, tag, args=["/bin/sh", "-c", "sleep 1.5; echo done; exit 4"], timeout=20)))
    waiter.start()
    try:
        find_process(manager, tag, b"sleep\x001.5\x00")
        manager.forkserver.close()  # returns once the server has answered and exited
        assert not os.path.exists(os.path.join(manager.state_dir, RUNTIME_SOCKET))
    finally:
        waiter.join(30)
    assert done == [ExecResult(exit_code=4, stdout=b"done\n", stderr=b"", timed_out=False)]
    assert manager.exec(NS, tag, args=["/bin/echo", "after"]).stdout == b"after\n"
