"""A node writes only the status of pods bound to it, and deletes only those pods, however
it spells the call: with an empty target name (the body must not decide), through Apply on
a subresource (it would write the whole pod, or make one), or with the pod replaced
between the gate's read and the write's (the write checks the pod it reads itself)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from api import errors as e
from api.v1 import apiserver_pb2 as pb
from controlplane.apiserver.objects import ObjectService
from controlplane.apiserver.resources import RESOURCES
from controlplane.apiserver.service import APIServicer
from controlplane.storage import InMemoryStore
from controlplane.storage.forwarding import ForwardingStore
from tests.unit.controlplane.apiserver import test_gate_write_reads as W
from tests.unit.controlplane.apiserver.test_gate_write_reads import (
    MERGE,
    Aborted,
    Context,
    NodeGate,
)

pytestmark = pytest.mark.asyncio
api = W.api  # the servicer with a node gate, pods "mine" (n1) and "theirs" (n2)
PODS, NS = RESOURCES["pods"], RESOURCES["namespaces"]


def status_target(name: str) -> Any:
    return pb.Target(resource="pods", namespace="default", name=name, subresource="status")


async def test_an_update_of_status_without_a_name_is_refused(api: Any) -> None:
    servicer, admin, _ = api
    current = await admin.get(PODS, namespace="default", name="theirs")
    body = {**current, "status": {"phase": "Failed", "message": "by n1"},
            "spec": {**current["spec"], "nodeName": "n1"},  # what only the gate would see
            "metadata": {k: v for k, v in current["metadata"].items()
                         if k != "resourceVersion"}}
    with pytest.raises(Aborted) as err:
        await servicer.Update(pb.UpdateRequest(target=status_target(""),
                                               json=json.dumps(body).encode()), Context("n1"))
    assert err.value.code.name == "PERMISSION_DENIED"
    stored = await admin.get(PODS, namespace="default", name="theirs")
    assert (stored.get("status") or {}).get("message") != "by n1"


async def test_a_patch_of_status_without_a_name_is_refused(api: Any) -> None:
    servicer, _, _ = api
    with pytest.raises(Aborted) as err:
        await servicer.Patch(pb.PatchRequest(
            target=status_target(""), patch=json.dumps({"status": {"phase": "Failed"}}).encode(),
            patch_type=MERGE), Context("n1"))
    assert err.value.code.name in ("PERMISSION_DENIED", "INVALID_ARGUMENT")  # (no name)


@pytest.mark.parametrize(("name", "body"), [
    pytest.param("mine", {"metadata": {"name": "mine", "labels": {"app": "hijack"}}},
                 id="own-pods-labels"),
    pytest.param("", {"metadata": {"name": "made-by-node"},
                      "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x"}]}},
                 id="no-name-makes-a-pod"),
])
async def test_apply_to_a_subresource_is_refused(api: Any, name: str,
                                                 body: dict[str, Any]) -> None:
    servicer, admin, _ = api
    req = pb.ApplyRequest(target=status_target(name), force=True, json=json.dumps(
        {"apiVersion": "v1", "kind": "Pod", **body}).encode())
    req.options.field_manager = "evil"
    with pytest.raises(Aborted) as err:
        await servicer.Apply(req, Context("n1"))
    assert err.value.code.name in ("PERMISSION_DENIED", "INVALID_ARGUMENT")
    mine = await admin.get(PODS, namespace="default", name="mine")
    assert "app" not in (mine["metadata"].get("labels") or {})
    with pytest.raises(e.APIError):
        await admin.get(PODS, namespace="default", name="made-by-node")


def pod(node: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "mine"},
            "spec": {"containers": [{"name": "c", "image": "i"}], "nodeName": node}}


class RebindOnSecondRead(ForwardingStore):
    """The pod is made again, bound to n2, after the first read of it (a gate that read it
    first would have seen n1's)."""

    def __init__(self, inner: InMemoryStore, admin: ObjectService) -> None:
        super().__init__(inner)
        self.admin, self.reads = admin, 0

    async def get(self, key: str) -> tuple[bytes, int]:
        if key == "/registry/pods/default/mine":
            self.reads += 1
            if self.reads == 2:
                await self.admin.delete(PODS, namespace="default", name="mine",
                                        grace_period=0)
                await self.admin.create(PODS, pod("n2"), namespace="default")
        return await self.inner.get(key)


async def _delete_as_n1(*, rebind_at: int) -> tuple[RebindOnSecondRead, ObjectService,
                                                      Exception | None]:
    shared = InMemoryStore()
    admin = ObjectService(shared, watch_cache=False)
    await admin.create(NS, {"apiVersion": "v1", "kind": "Namespace",
                            "metadata": {"name": "default"}})
    await admin.create(PODS, pod("n1"), namespace="default")
    store = RebindOnSecondRead(shared, admin)
    store.reads = 2 - rebind_at  # the rebinding comes with read number REBIND_AT
    ours = ObjectService(store, watch_cache=False)
    refused: Exception | None = None
    try:
        await APIServicer(ours, gate=NodeGate(ours)).Delete(pb.DeleteRequest(
            target=pb.Target(resource="pods", namespace="default", name="mine"),
            grace_period_seconds=0), Context("n1"))
    except Aborted as err:
        refused = err
    finally:
        await ours.close()
    return store, admin, refused


async def test_a_nodes_delete_reads_the_pod_once_and_deletes_what_it_checked() -> None:
    """Before, the gate read the pod (n1's) and the delete read it again: a pod rebound
    to n2 in between was deleted by n1. Now the delete's one read is the one checked,
    and the compare-and-swap is at it: n1's own pod goes, nothing else is read."""
    store, admin, refused = await _delete_as_n1(rebind_at=2)
    assert refused is None and store.reads == 1  # one read of the pod
    assert (await admin.list(PODS, namespace="default"))["items"] == []
    await admin.close()


async def test_a_nodes_delete_of_a_pod_rebound_before_its_read_is_refused() -> None:
    _, admin, refused = await _delete_as_n1(rebind_at=1)
    assert isinstance(refused, Aborted) and refused.code.name == "PERMISSION_DENIED"
    left = await admin.get(PODS, namespace="default", name="mine")
    assert left["spec"]["nodeName"] == "n2"
    await admin.close()
