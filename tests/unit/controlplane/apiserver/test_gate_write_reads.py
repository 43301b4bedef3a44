"""A node's write of a pod's status is authorized on the pod the write itself reads (the
auth gate returns a guard instead of reading the pod first): one etcd read per status
write, and the node restriction holds, on a stale copy too (the compare-and-swap)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from api import errors as e
from api.v1 import apiserver_pb2 as pb
from controlplane.apiserver import authn, authz
from controlplane.apiserver.gate import AuthGate
from controlplane.apiserver.objects import ObjectService
from controlplane.apiserver.resources import RESOURCES
from controlplane.apiserver.service import APIServicer
from controlplane.storage import InMemoryStore
from tests.unit.controlplane.apiserver.test_write_after_read import CountingReads

pytestmark = pytest.mark.asyncio
PODS, NS = RESOURCES["pods"], RESOURCES["namespaces"]
MERGE = "application/merge-patch+json"


class Aborted(Exception):
    def __init__(self, code: Any, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class Context:
    """What the servicer asks of a gRPC context; the caller is NODE (see NodeGate)."""

    def __init__(self, node: str) -> None:
        self.node = node

    def set_trailing_metadata(self, _: Any) -> None:
        pass

    async def abort(self, code: Any, message: str) -> None:
        raise Aborted(code, message)


class NodeGate(AuthGate):
    """AuthGate with the certificate check replaced: the context names the node."""

    def user(self, context: Any) -> authn.User:
        return authn.User(f"{authz.NODE_USER_PREFIX}{context.node}",
                          (authz.NODES_GROUP, authn.AUTHENTICATED_GROUP))


@pytest_asyncio.fixture
async def api() -> AsyncIterator[tuple[APIServicer, ObjectService, CountingReads]]:
    shared = InMemoryStore()
    counted = CountingReads(shared)
    ours, admin = ObjectService(counted), ObjectService(shared)
    await admin.create(NS, {"apiVersion": "v1", "kind": "Namespace",
                            "metadata": {"name": "default"}})
    for name, node in (("mine", "n1"), ("theirs", "n2")):
        await admin.create(PODS, {"apiVersion": "v1", "kind": "Pod",
                                  "metadata": {"name": name},
                                  "spec": {"containers": [{"name": "c", "image": "i"}],
                                           "nodeName": node}}, namespace="default")
    try:
        yield APIServicer(ours, gate=NodeGate(ours)), admin, counted
    finally:
        await ours.close()
        await admin.close()


async def status_patch(api: APIServicer, name: str, status: dict[str, Any], *,
                       node: str = "n1", verb: str = "patch",
                       admin: ObjectService | None = None) -> dict[str, Any]:
    """A node's status patch, or (VERB update) update of what ADMIN reads, through the
    gRPC edge's servicer."""
    target = pb.Target(resource="pods", namespace="default", name=name,
                       subresource="status")
    if verb == "patch":
        out = await api.Patch(pb.PatchRequest(
            target=target, patch=json.dumps({"status": status}).encode(),
            patch_type=MERGE), Context(node))
    else:
        assert admin is not None  # (its read is not this process's: not counted)
        current = await admin.get(PODS, namespace="default", name=name)
        body = {**current, "status": status}
        body["metadata"] = {k: v for k, v in current["metadata"].items()
                            if k != "resourceVersion"}
        out = await api.Update(pb.UpdateRequest(target=target,
                                                json=json.dumps(body).encode()),
                               Context(node))
    result: dict[str, Any] = json.loads(out.json)
    return result


@pytest.mark.parametrize("verb", [pytest.param("patch", id="patch"),
                                  pytest.param("update", id="update")])
async def test_a_status_write_of_its_own_pod_reads_it_once(api: Any, verb: str) -> None:
    servicer, admin, counted = api
    before = counted.gets
    out = await status_patch(servicer, "mine", {"phase": "Running"}, verb=verb, admin=admin)
    assert out["status"]["phase"] == "Running"
    assert counted.gets - before == 1


async def test_reads_per_status_write_over_a_burst(api: Any) -> None:
    """The figure the brief asks for: etcd reads per pod-status write (the auth gate read
    the pod, then the write used that read: one per write; a no-op status write, the
    agent's common case, was decided again on a fresh read: two)."""
    servicer, _, counted = api
    start = counted.gets
    for n in range(10):
        await status_patch(servicer, "mine", {"phase": "Running", "message": str(n)})
        await status_patch(servicer, "mine", {"phase": "Running", "message": str(n)})  # no-op
    assert (counted.gets - start) / 20 == 1.0


@pytest.mark.parametrize("verb", [pytest.param("patch", id="patch"),
                                  pytest.param("update", id="update")])
async def test_another_nodes_pod_is_forbidden_and_unchanged(api: Any, verb: str) -> None:
    servicer, admin, _ = api
    with pytest.raises(Aborted) as err:
        await status_patch(servicer, "theirs", {"phase": "Failed"}, verb=verb, admin=admin)
    assert 'pod "theirs" is bound to node "n2"' in err.value.message
    assert err.value.code.name == "PERMISSION_DENIED"
    stored = await admin.get(PODS, namespace="default", name="theirs")
    assert "status" not in stored or stored["status"].get("phase") != "Failed"


async def test_a_missing_pod_is_not_found(api: Any) -> None:
    servicer, _, _ = api
    with pytest.raises(Aborted) as err:
        await status_patch(servicer, "nobody", {"phase": "Running"})
    assert err.value.code.name == "NOT_FOUND"


async def test_a_refusal_on_a_stale_copy_is_decided_on_what_is_stored(api: Any) -> None:
    """The write starts from this process's last read (a GET); the pod was deleted and
    made again, bound to this node, by another process since: the refusal the old copy
    gives is not the answer, what is stored is."""
    servicer, admin, _ = api
    await admin.delete(PODS, namespace="default", name="mine", grace_period=0)
    await admin.create(PODS, {"apiVersion": "v1", "kind": "Pod",
                              "metadata": {"name": "mine"},
                              "spec": {"containers": [{"name": "c", "image": "i"}],
                                       "nodeName": "n2"}}, namespace="default")
    await servicer.objects.get(PODS, namespace="default", name="mine")  # n2's: remembered
    await admin.delete(PODS, namespace="default", name="mine", grace_period=0)
    await admin.create(PODS, {"apiVersion": "v1", "kind": "Pod",
                              "metadata": {"name": "mine"},
                              "spec": {"containers": [{"name": "c", "image": "i"}],
                                       "nodeName": "n1"}}, namespace="default")
    out = await status_patch(servicer, "mine", {"phase": "Running"})
    assert out["spec"]["nodeName"] == "n1" and out["status"]["phase"] == "Running"


async def test_an_allowed_check_on_a_stale_copy_cannot_land(api: Any) -> None:
    """Checked on this process's old copy (bound to n1), but the pod is now another one
    bound to n2: the compare-and-swap fails, the write is made again on a fresh read,
    and that one is refused."""
    servicer, admin, _ = api
    await servicer.objects.get(PODS, namespace="default", name="mine")  # n1's: remembered
    await admin.delete(PODS, namespace="default", name="mine", grace_period=0)
    await admin.create(PODS, {"apiVersion": "v1", "kind": "Pod",
                              "metadata": {"name": "mine"},
                              "spec": {"containers": [{"name": "c", "image": "i"}],
                                       "nodeName": "n2"}}, namespace="default")
    with pytest.raises(Aborted) as err:
        await status_patch(servicer, "mine", {"phase": "Failed"})
    assert err.value.code.name == "PERMISSION_DENIED"
    stored = await admin.get(PODS, namespace="default", name="mine")
    assert (stored.get("status") or {}).get("phase") != "Failed"


async def test_a_guard_is_only_given_to_a_caller_that_checks_it(api: Any) -> None:
    servicer, _, counted = api
    gate: AuthGate = servicer.gate  # type: ignore[assignment]
    kw: dict[str, Any] = {"verb": "patch", "resource": PODS, "namespace": "default",
                          "name": "mine", "subresource": "status", "obj": None}
    reads = counted.gets
    deferred = await gate.check(Context("n1"), defer=True, **kw)
    assert deferred.guard is not None and counted.gets == reads
    with pytest.raises(e.APIError) as err:
        deferred.guard({"metadata": {"name": "mine"}, "spec": {"nodeName": "n2"}})
    assert err.value.reason is e.Reason.FORBIDDEN
    plain = await gate.check(Context("n1"), **kw)  # (nodeproxy, apply: the gate reads)
    assert plain.guard is None and counted.gets == reads + 1
    with pytest.raises(e.APIError):
        await gate.check(Context("n2"), **kw)
