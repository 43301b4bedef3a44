"""schedule_one end to end with the full default profile on a 50-node synthetic cluster:
zones, taints, images, spread, affinity, anti-affinity, then preemption when it is full."""

from __future__ import annotations

from collections import Counter
from typing import Any

from controlplane.scheduler.framework import Code
from controlplane.scheduler.queue import Event, SchedulingQueue

from .harness import Cluster, container, node, pod

HOST = "kubernetes.io/hostname"
MB = 1024 * 1024
ZONES = ("a", "b", "c")


def cluster_nodes() -> list[dict[str, Any]]:
    nodes = []
    for i in range(50):
        name = f"n{i:02d}"
        taints = [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}] if i >= 45 \
            else [{"key": "old", "effect": "PreferNoSchedule"}] if i % 10 == 1 else []
        images = {"docker.io/library/nginx:1.25": 600 * MB} if i % 5 == 0 else {}
        nodes.append(node(name, cpu="4", memory="8Gi",
                          labels={HOST: name, "zone": ZONES[i % 3]}, taints=taints,
                          images=images))
    return nodes


def web(i: int) -> dict[str, Any]:
    return pod(f"web-{i}", labels={"app": "web"},
               containers=[container(image="nginx:1.25", cpu="500m", memory="512Mi")],
               topologySpreadConstraints=[{
                   "maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
                   "labelSelector": {"matchLabels": {"app": "web"}}}],
               affinity={"podAntiAffinity": {
                   "preferredDuringSchedulingIgnoredDuringExecution": [{
                       "weight": 100, "podAffinityTerm": {
                           "topologyKey": HOST,
                           "labelSelector": {"matchLabels": {"app": "web"}}}}]}})


def db(i: int) -> dict[str, Any]:
    return pod(f"db-{i}", labels={"app": "db"},
               containers=[container(cpu="1", memory="1Gi")],
               affinity={"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                   {"topologyKey": HOST, "labelSelector": {"matchLabels": {"app": "db"}}}]}})


def cache(i: int) -> dict[str, Any]:
    return pod(f"cache-{i}", labels={"app": "cache"},
               containers=[container(cpu="250m", memory="256Mi")],
               affinity={"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                   {"topologyKey": HOST, "labelSelector": {"matchLabels": {"app": "db"}}}]}})


def test_fifty_node_cluster_end_to_end() -> None:
    c = Cluster(cluster_nodes())
    pods = [web(i) for i in range(30)] + [db(i) for i in range(10)] + \
        [cache(i) for i in range(10)]
    decisions = c.schedule(*pods)
    placed = {p["metadata"]["name"]: d.node for p, d in zip(pods, decisions, strict=True)}
    assert all(placed.values()), [d.message for d in decisions if d.node is None]

    zone_of = {f"n{i:02d}": ZONES[i % 3] for i in range(50)}
    web_nodes = [placed[f"web-{i}"] for i in range(30)]
    assert sorted(Counter(zone_of[n] for n in web_nodes).values()) == [10, 10, 10]
    assert len(set(web_nodes)) == 30  # preferred anti-affinity: one per host while possible
    assert not any(int(n[1:]) >= 45 for n in placed.values() if n)  # gpu taint respected
    db_nodes = {placed[f"db-{i}"] for i in range(10)}
    assert len(db_nodes) == 10  # required anti-affinity
    assert {placed[f"cache-{i}"] for i in range(10)} <= db_nodes  # required affinity
    # image locality and the soft taint steer the first web pod: nginx nodes, no "old" taint
    first = placed["web-0"]
    assert int(first[1:]) % 5 == 0 and int(first[1:]) % 10 != 1


def test_full_cluster_preempts_through_the_queue() -> None:
    nodes = [node(f"n{i}", cpu="2", labels={HOST: f"n{i}"}) for i in range(50)]
    fillers = [pod(f"f{i}", containers=[container(cpu="2")], priority=i % 7)
               for i in range(50)]
    c = Cluster(nodes)
    assert all(d.node for d in c.schedule(*fillers))

    clock = [0.0]
    q = SchedulingQueue(clock=lambda: clock[0])
    urgent = pod("urgent", containers=[container(cpu="2")], priority=100)
    q.add(urgent)
    qp = q.pop()
    assert qp is not None
    d = c.schedule(qp.pod)[0]
    assert d.node is None and d.status.code is Code.UNSCHEDULABLE
    assert d.message == "0/50 nodes are available: 50 Insufficient cpu."
    assert d.nominated is not None
    # the lowest-priority filler on the first such node, one victim
    assert [v["metadata"]["name"] for v in d.nominated.victims] == ["f0"]
    assert d.nominated.nominated_node == "n0"
    q.add_unschedulable(qp, {s.plugin for s in d.node_statuses.values()})
    assert q.where(urgent) == "unschedulable"

    # the caller evicts the victim: the snapshot loses it, the queue hears a pod delete
    victim = d.nominated.victims[0]
    n0 = c.snapshot.get("n0")
    assert n0 is not None
    c.snapshot = c.snapshot.replace(n0.without_pods({"default/" + victim["metadata"]["name"]}))
    assert q.on_event(Event.POD_DELETE) == 1
    clock[0] += 1
    retry = q.pop()
    assert retry is not None and retry.attempts == 2
    assert c.schedule(retry.pod)[0].node == "n0"
