"""`start` of corral-runc run in the shim itself (shim/inproc.py call), not in a forked
child, when the holder takes over next: a started container, and a start the runtime
refuses (its exec fifo gone, so it sees a running container), which leaves the shim
serving, with the runtime's own error message."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from runtime.service import bundle as B
from runtime.service.shim import protocol as P
from runtime.service.tasks import TaskError, TaskManager, TaskState, holder_path

NS = "default"


def make_spec(rootfs: str, tag: str) -> Callable[[str, tuple[str, ...]], dict[str, Any]]:
    def make(name: str, command: tuple[str, ...]) -> dict[str, Any]:
        cfg = B.ContainerConfig(name=name, command=command, cgroups_path=f"/{tag}-{name}")
        return B.build_spec(config=cfg, image={}, rootfs=rootfs)
    return make


def exe(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/exe")


@pytest.mark.parametrize(("lose_fifo", "want"), [
    pytest.param(False, None, id="started"),
    pytest.param(True, r"start: corral-runc start: cannot start an already running container",
                 id="runtime-refuses"),
])
def test_start_in_the_shim(tmp_path: Any, rootfs: str, tag: str, leak_check: None,
                           lose_fifo: bool, want: str | None) -> None:
    tm = TaskManager(str(tmp_path / "state"), inproc=True, holder=True)
    spec = make_spec(rootfs, tag)
    try:
        info = tm.create(namespace=NS, container_id=tag, spec=spec("c", ("/bin/sleep", "1000")))
        with open(os.path.join(tm.task_dir(NS, tag), P.PID)) as f:
            shim_pid = int(f.read())
        if lose_fifo:
            os.unlink(os.path.join(tm.state_dir, "runtime", "corral-runc", tag, "exec.fifo"))
            with pytest.raises(TaskError, match=want):
                tm.start(NS, tag)
            # the shim lived through the runtime's failure, and still answers
            assert os.path.basename(exe(shim_pid)).startswith("python")
            assert tm.get(NS, tag).state == TaskState.CREATED
        else:
            assert tm.start(NS, tag).state == TaskState.RUNNING
            assert tm.get(NS, tag).state == TaskState.RUNNING
            assert exe(shim_pid) == holder_path()  # the holder took over after the start
            assert os.path.basename(exe(info.pid)) == "busybox"  # init exec'd the workload
        assert tm.delete(NS, tag, force=True) is not None
    finally:
        for t in tm.list():
            tm.delete(NS, t.id, force=True)
        tm.close()
