"""The scheduling queue's transitions, with a fake clock (no sleeping)."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.scheduler.queue import Event, QueuedPod, SchedulingQueue, node_update_events

from .harness import node, pod


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def prio(name: str, priority: int = 0) -> dict[str, Any]:
    return pod(name, priority=priority)


def make() -> tuple[SchedulingQueue, FakeClock]:
    clock = FakeClock()
    return SchedulingQueue(clock=clock), clock


def pop(q: SchedulingQueue) -> QueuedPod:
    qp = q.pop()
    assert qp is not None
    return qp


def names(q: SchedulingQueue) -> list[str]:
    out = []
    while (qp := q.pop()) is not None:
        out.append(qp.pod["metadata"]["name"])
        q.done(qp)
    return out


def test_active_order_is_priority_then_arrival() -> None:
    q, clock = make()
    for name, p in (("low", 0), ("high", 100), ("low2", 0), ("mid", 10), ("high2", 100)):
        q.add(prio(name, p))
        clock.now += 1
    assert names(q) == ["high", "high2", "mid", "low", "low2"]
    assert q.pop() is None


def test_add_again_updates_in_place_without_duplicates() -> None:
    q, _ = make()
    q.add(prio("a"))
    q.add(prio("b"))
    q.add(prio("b", 5))  # a new version with a higher priority
    assert q.lengths()["active"] == 2
    assert names(q) == ["b", "a"]


@pytest.mark.parametrize(("attempts", "want"), [
    pytest.param(1, 1.0, id="first-failure-1s"),
    pytest.param(2, 2.0, id="doubles"),
    pytest.param(4, 8.0, id="8s"),
    pytest.param(5, 10.0, id="capped-10s"),
    pytest.param(9, 10.0, id="stays-capped"),
])
def test_backoff_durations(attempts: int, want: float) -> None:
    q, _ = make()
    assert q.backoff_duration(QueuedPod(pod(), 0.0, attempts=attempts)) == want


def test_unschedulable_waits_for_a_helpful_event() -> None:
    q, clock = make()
    q.add(prio("big"))
    qp = pop(q)
    q.add_unschedulable(qp, {"NodeResourcesFit"})
    assert q.where(qp.pod) == "unschedulable"
    clock.now += 60
    assert q.pop() is None  # time alone (under 5 min) does not move it
    assert q.on_event(Event.NODE_LABELS) == 0  # labels cannot free cpu
    assert q.where(qp.pod) == "unschedulable"
    assert q.on_event(Event.POD_DELETE) == 1
    assert q.where(qp.pod) == "active"  # backoff (1 s) long over
    assert pop(q).attempts == 2


def test_event_during_backoff_goes_to_backoff_queue() -> None:
    q, clock = make()
    q.add(prio("p"))
    qp = pop(q)
    q.add_unschedulable(qp, {"NodeAffinity"})
    clock.now += 0.5
    assert q.on_event(Event.NODE_ADD) == 1  # a new node may help anyone
    assert q.where(qp.pod) == "backoff"
    assert q.pop() is None
    assert q.next_ready_in() == pytest.approx(0.5)
    clock.now += 0.5
    assert pop(q).key == "default/p"


def test_event_while_in_flight_sends_failure_to_backoff() -> None:
    q, clock = make()
    q.add(prio("p"))
    qp = pop(q)
    q.on_event(Event.POD_DELETE)  # resources freed while the cycle ran
    q.add_unschedulable(qp, {"NodeResourcesFit"})
    assert q.where(qp.pod) == "backoff"
    clock.now += 1
    assert pop(q).attempts == 2


def test_unschedulable_flushed_after_five_minutes() -> None:
    q, clock = make()
    q.add(prio("p"))
    qp = pop(q)
    q.add_unschedulable(qp, {"TaintToleration"})
    clock.now += 299
    assert q.pop() is None
    clock.now += 1
    assert pop(q).key == "default/p"


def test_backoff_grows_with_attempts() -> None:
    q, clock = make()
    q.add(prio("p"))
    waits = []
    for _ in range(6):
        qp = pop(q)
        q.add_backoff(qp)
        waits.append(q.next_ready_in())
        clock.now += q.next_ready_in() or 0
    assert waits == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_no_rejectors_moves_on_any_event() -> None:
    q, _ = make()
    q.add(prio("p"))
    qp = pop(q)
    q.add_unschedulable(qp)
    assert q.on_event(Event.NODE_ALLOCATABLE) == 1


def test_pod_update_retries_unschedulable_pod() -> None:
    q, clock = make()
    q.add(prio("p"))
    qp = pop(q)
    q.add_unschedulable(qp, {"NodeAffinity"})
    clock.now += 5
    q.add(prio("p", 3))
    assert q.where(qp.pod) == "active"
    assert pop(q).pod["spec"]["priority"] == 3


def test_delete_removes_everywhere() -> None:
    q, _ = make()
    q.add(prio("a"))
    q.add(prio("b"))
    qp = pop(q)
    q.delete(prio("a"))
    q.delete(prio("b"))
    q.add_unschedulable(qp, {"X"})  # deleted while in flight: dropped
    assert q.lengths() == {"active": 0, "backoff": 0, "unschedulable": 0, "inFlight": 0}


def test_done_forgets_in_flight_pod() -> None:
    q, _ = make()
    q.add(prio("a"))
    qp = pop(q)
    assert q.lengths()["inFlight"] == 1
    q.done(qp)
    assert q.where(qp.pod) is None


def _changed(**parts: Any) -> dict[str, Any]:
    n = node("n", labels={"zone": "a"})
    for path, value in parts.items():
        section, field = path.split("__")
        n[section][field] = value
    return n


@pytest.mark.parametrize(("new", "want"), [
    pytest.param(_changed(), set(), id="nothing"),
    pytest.param(_changed(metadata__labels={"zone": "b"}), {Event.NODE_LABELS}, id="labels"),
    pytest.param(_changed(spec__taints=[{"key": "k", "effect": "NoSchedule"}]),
                 {Event.NODE_TAINTS}, id="taints"),
    pytest.param(_changed(status__allocatable={"cpu": "8"}), {Event.NODE_ALLOCATABLE},
                 id="allocatable"),
    pytest.param(_changed(spec__unschedulable=True), {Event.NODE_SCHEDULABLE},
                 id="cordon"),
])
def test_node_update_events(new: dict[str, Any], want: set[Event]) -> None:
    assert node_update_events(_changed(), new) == want


@pytest.mark.parametrize(("event", "rejectors", "moves"), [
    pytest.param(Event.NODE_TAINTS, {"TaintToleration"}, True, id="taints-help-tolerations"),
    pytest.param(Event.NODE_TAINTS, {"NodeResourcesFit"}, False, id="taints-not-resources"),
    pytest.param(Event.POD_ADD, {"InterPodAffinity"}, True, id="pod-add-helps-affinity"),
    pytest.param(Event.POD_ADD, {"NodeResourcesFit"}, False, id="pod-add-takes-resources"),
    pytest.param(Event.NODE_SCHEDULABLE, {"NodeUnschedulable"}, True, id="uncordon"),
    pytest.param(Event.NODE_ALLOCATABLE, {"NodeResourcesFit", "NodeAffinity"}, True,
                 id="any-rejector-helped"),
])
def test_event_plugin_table(event: Event, rejectors: set[str], moves: bool) -> None:
    q, _ = make()
    q.add(prio("p"))
    q.add_unschedulable(pop(q), rejectors)
    assert q.on_event(event) == int(moves)
