"""The scheduler: a Kubernetes-style plugin framework over an in-memory snapshot.

    SchedulingQueue.pop() -> schedule_one(pod, snapshot, profile) -> Decision
        node chosen            -> the caller binds (and assumes it into the snapshot)
        none, nominated set    -> the caller evicts the victims, writes
                                  status.nominatedNodeName, add_unschedulable()
        none                   -> add_unschedulable(rejecting plugins); cluster events
                                  (queue.Event) bring it back

Pure logic, no I/O: binding the decision (and undoing it on failure) belongs to the caller.
"""

from controlplane.scheduler.framework import (
    Code,
    CycleState,
    PostFilterResult,
    Profile,
    Registry,
    Status,
)
from controlplane.scheduler.queue import Event, QueuedPod, SchedulingQueue, node_update_events
from controlplane.scheduler.schedule import Decision, schedule_one
from controlplane.scheduler.snapshot import NodeInfo, Resource, Snapshot

__all__ = ["Code", "CycleState", "Decision", "Event", "NodeInfo", "PostFilterResult", "Profile",
           "QueuedPod", "Registry", "Resource", "SchedulingQueue", "Snapshot", "Status",
           "node_update_events", "schedule_one"]
