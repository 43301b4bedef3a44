"""The scheduler: a Kubernetes-style plugin framework over an in-memory snapshot.

Pure logic, no I/O: `schedule_one(pod, snapshot, profile)` returns a `Decision`; binding the
decision (and undoing it on failure) belongs to the caller.
"""

from controlplane.scheduler.framework import Code, CycleState, Profile, Registry, Status
from controlplane.scheduler.schedule import Decision, schedule_one
from controlplane.scheduler.snapshot import NodeInfo, Resource, Snapshot

__all__ = ["Code", "CycleState", "Decision", "NodeInfo", "Profile", "Registry", "Resource",
           "Snapshot", "Status", "schedule_one"]
