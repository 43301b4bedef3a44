from __future__ import annotations

from typing import Any

import pytest

from controlplane.scheduler.snapshot import Resource, Snapshot, both_requests, pod_requests

from .harness import container, info, node, pod, sized

GI = 1024 ** 3
MI = 1024 ** 2


@pytest.mark.parametrize(("p", "want"), [
    pytest.param(sized(cpu="250m", memory="64Mi"), Resource(250, 64 * MI), id="one-container"),
    pytest.param(pod(containers=[container("a", cpu="100m"), container("b", cpu="1.5")]),
                 Resource(1600, 0), id="containers-sum"),
    pytest.param(pod(containers=[container("a", cpu="100m", memory="1Gi")],
                     init=[container("i", cpu="2", memory="10Mi")]),
                 Resource(2000, GI), id="init-larger-cpu-wins-per-resource"),
    pytest.param(pod(containers=[container("a", cpu="1"), container("b", cpu="1")],
                     init=[container("i1", cpu="1500m"), container("i2", cpu="500m")]),
                 Resource(2000, 0), id="init-max-not-sum"),
    pytest.param(pod(containers=[container("a", cpu="100m")],
                     init=[container("i1", cpu="300m"), container("i2", cpu="700m")]),
                 Resource(700, 0), id="largest-init-beats-containers"),
    pytest.param(pod(containers=[container("a", example_com__gpu="1"),
                                 container("b", example_com__gpu="2")],
                     init=[container("i", example_com__gpu="1")]),
                 Resource(0, 0, 0, {"example.com/gpu": 3}), id="extended-summed"),
    pytest.param(pod(), Resource(), id="no-requests"),
])
def test_pod_requests(p: dict[str, Any], want: Resource) -> None:
    assert pod_requests(p) == want


def test_non_zero_requests_fill_defaults_per_container() -> None:
    p = pod(containers=[container("a"), container("b", cpu="1", memory="1Gi")])
    assert pod_requests(p, non_zero=True) == Resource(1100, GI + 200 * MI)


def test_node_info_sums_bound_pods() -> None:
    n = info(node("n1", cpu="4", memory="8Gi", pods=10, example_com__gpu="4"),
             sized("a", cpu="1", memory="1Gi"),
             pod("b", containers=[container(cpu="500m", example_com__gpu="1")]))
    assert n.name == "n1"
    assert n.allocatable == Resource(4000, 8 * GI, 10, {"example.com/gpu": 4})
    assert n.requested == Resource(1500, GI, 2, {"example.com/gpu": 1})
    assert n.non_zero_requested == Resource(1500, GI + 200 * MI, 2, {"example.com/gpu": 1})


def test_allocatable_falls_back_to_capacity() -> None:
    n = node("n1", cpu="2")
    del n["status"]["allocatable"]
    assert info(n).allocatable.milli_cpu == 2000


def test_snapshot_binds_only_running_pods_of_known_nodes() -> None:
    snap = Snapshot.from_objects(
        [node("n1"), node("n2")],
        [sized("a", cpu="1", node_name="n1"),
         sized("done", cpu="1", node_name="n1", phase="Succeeded"),
         sized("failed", cpu="1", node_name="n2", phase="Failed"),
         sized("pending", cpu="1"),
         sized("elsewhere", cpu="1", node_name="gone")])
    assert [i.name for i in snap] == ["n1", "n2"]
    n1, n2 = snap.get("n1"), snap.get("n2")
    assert n1 is not None and n2 is not None
    assert [p["metadata"]["name"] for p in n1.pods] == ["a"]
    assert n1.requested.milli_cpu == 1000
    assert n2.pods == ()
    assert snap.get("gone") is None


def test_assume_returns_a_new_snapshot() -> None:
    snap = Snapshot.from_objects([node("n1"), node("n2")])
    after = snap.assume(sized("a", cpu="1"), "n2")
    n2_before, n2_after = snap.get("n2"), after.get("n2")
    assert n2_before is not None and n2_after is not None
    assert n2_before.requested == Resource()
    assert n2_after.requested == Resource(1000, 0, 1)


def test_duplicate_node_names_rejected() -> None:
    with pytest.raises(ValueError, match="two nodes"):
        Snapshot.from_objects([node("n1"), node("n1")])


@pytest.mark.parametrize(("first", "second", "want"), [
    pytest.param({"cpu": "2", "memory": "1Gi"}, {"cpu": "2", "memory": "1Gi"},
                 Resource(2000, GI), id="same-list-same-amounts"),
    pytest.param({"cpu": "2"}, {"cpu": 2}, Resource(2000), id="int-not-confused-with-text"),
    pytest.param({"cpu": "1"}, {"cpu": True}, None, id="bool-not-taken-for-1"),
    pytest.param({"pods": "110", "example.com/gpu": "4"},
                 {"pods": "110", "example.com/gpu": "4"}, Resource(0, 0, 110,
                                                           {"example.com/gpu": 4}),
                 id="scalar-and-pods"),
])
def test_resource_lists_parsed_once_per_shape_same_answer(
        first: dict[str, Any], second: dict[str, Any], want: Resource | None) -> None:
    assert Resource.from_list(first) == Resource._parse_list(first)
    if want is None:  # a value quantity parsing refuses is still refused, cache or not
        with pytest.raises(Exception):  # noqa: B017 - quantity's own error
            Resource.from_list(second)
        return
    assert Resource.from_list(second) == want


def test_both_requests_is_each_request() -> None:
    p = pod(containers=[container("a", cpu="100m")], init=[container("i", memory="1Gi")])
    assert both_requests(p) == (pod_requests(p), pod_requests(p, non_zero=True))
