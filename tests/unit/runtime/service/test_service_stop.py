"""StopContainer, then ContainerStatus: the status says EXITED at once. The service
answers a running task's state from memory (Service._live, kept until the thread that
waits for its exit wakes up); a stop that saw the exit must not leave that answer behind
(a CRI scenario found RUNNING after a graceful stop, under load)."""

from __future__ import annotations

import threading
from typing import Any

from runtime.service.containers import Container
from runtime.service.cri.service import Service
from runtime.service.tasks import ExitStatus, TaskInfo, TaskState

CID = "c" * 64


class Tasks:
    """A task that runs until stop(); wait() (the service's watch thread) is held until
    the test lets it go, as a loaded machine may hold it."""

    def __init__(self) -> None:
        self.exit: ExitStatus | None = None
        self.release = threading.Event()

    def get(self, namespace: str, cid: str) -> TaskInfo:
        state = TaskState.STOPPED if self.exit else TaskState.RUNNING
        return TaskInfo(namespace, cid, state, 42, "corral-runc", "/l", self.exit)

    def stop(self, namespace: str, cid: str, *, grace: float) -> ExitStatus:
        self.exit = ExitStatus(3, 1, "Error")
        return self.exit

    def wait(self, namespace: str, cid: str, timeout: float | None = None) -> ExitStatus:
        assert self.release.wait(10)
        assert self.exit is not None
        return self.exit


def test_status_after_stop_is_exited_before_the_watch_thread_wakes() -> None:
    svc: Any = Service.__new__(Service)
    tasks = Tasks()
    container = Container(namespace="k8s.io", id=CID, labels={}, created_at_ns=1,
                          spec={"cri": {"sandbox_id": "s" * 64}})
    svc.tasks, svc.bus, svc._lock, svc._live, svc._waiting = \
        tasks, None, threading.Lock(), {}, set()
    svc._resolve = lambda tenant, cid: container
    svc.watch("k8s.io", CID, "s" * 64, tasks.get("k8s.io", CID))
    try:
        assert svc.get("k8s.io", CID).task.state is TaskState.RUNNING
        svc.stop("k8s.io", CID, grace=5)
        task = svc.get("k8s.io", CID).task
        assert (task.state, task.exit) == (TaskState.STOPPED, ExitStatus(3, 1, "Error"))
    finally:
        tasks.release.set()
