"""A write without a resourceVersion that follows a read of the same object (a client's
GET, then its PATCH) starts from that read instead of reading again; whatever changed in
between, the outcome is what a fresh read would give."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from api import errors as e
from controlplane.apiserver.objects import ObjectService
from controlplane.apiserver.resources import RESOURCES
from controlplane.storage import InMemoryStore
from controlplane.storage.forwarding import ForwardingStore

pytestmark = pytest.mark.asyncio
PODS, NS = RESOURCES["pods"], RESOURCES["namespaces"]
MERGE = "application/merge-patch+json"


class CountingReads(ForwardingStore):
    def __init__(self, inner: InMemoryStore) -> None:
        super().__init__(inner)
        self.gets = 0

    async def get(self, key: str) -> tuple[bytes, int]:
        self.gets += 1
        return await self.inner.get(key)


@pytest_asyncio.fixture
async def two() -> AsyncIterator[tuple[ObjectService, ObjectService, CountingReads]]:
    """This process's object service (reads counted) and another one on the same store
    (another controlplane process)."""
    shared = InMemoryStore()
    counted = CountingReads(shared)
    ours, theirs = ObjectService(counted), ObjectService(shared)
    await theirs.create(NS, {"apiVersion": "v1", "kind": "Namespace",
                             "metadata": {"name": "default"}})
    await theirs.create(PODS, {"apiVersion": "v1", "kind": "Pod",
                               "metadata": {"name": "p", "labels": {"app": "a"}},
                               "spec": {"containers": [{"name": "c", "image": "i"}]}},
                        namespace="default")
    try:
        yield ours, theirs, counted
    finally:
        await ours.close()
        await theirs.close()


async def patch(svc: ObjectService, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return await svc.patch(PODS, namespace="default", name="p",
                           patch=json.dumps(body).encode(), patch_type=MERGE, **kw)


async def stored(svc: ObjectService) -> dict[str, Any]:
    return await svc.get(PODS, namespace="default", name="p")


async def test_a_patch_after_a_read_reads_nothing_more(two: Any) -> None:
    ours, _, counted = two
    seen = await stored(ours)
    reads = counted.gets
    out = await patch(ours, {"status": {"phase": "Running"}}, subresource="status")
    assert counted.gets == reads  # the read before served the write
    assert out["status"]["phase"] == "Running"
    assert int(out["metadata"]["resourceVersion"]) > int(seen["metadata"]["resourceVersion"])
    await patch(ours, {"status": {"podIP": "10.0.0.1"}}, subresource="status")
    assert counted.gets == reads + 1  # used once: the next write reads


async def test_a_change_in_between_is_kept(two: Any) -> None:
    ours, theirs, _ = two
    await stored(ours)
    await patch(theirs, {"metadata": {"labels": {"tier": "web"}}})
    out = await patch(ours, {"status": {"phase": "Running"}}, subresource="status")
    assert out["metadata"]["labels"] == {"app": "a", "tier": "web"}
    assert (await stored(theirs))["metadata"]["labels"] == {"app": "a", "tier": "web"}


async def test_a_write_that_looks_like_a_no_op_on_the_old_read_is_still_made(two: Any
                                                                            ) -> None:
    ours, theirs, _ = two
    await patch(theirs, {"status": {"phase": "Running"}}, subresource="status")
    await stored(ours)  # sees Running
    await patch(theirs, {"status": {"phase": "Pending"}}, subresource="status")
    out = await patch(ours, {"status": {"phase": "Running"}}, subresource="status")
    assert out["status"]["phase"] == "Running"
    assert (await stored(theirs))["status"]["phase"] == "Running"


async def test_a_refusal_on_the_old_read_is_decided_again_on_what_is_stored(two: Any
                                                                           ) -> None:
    ours, theirs, _ = two
    await stored(ours)
    now = await patch(theirs, {"metadata": {"labels": {"tier": "web"}}})
    rv = now["metadata"]["resourceVersion"]  # a patch pinned to the current version
    out = await patch(ours, {"metadata": {"resourceVersion": rv, "labels": {"x": "1"}}})
    assert out["metadata"]["labels"] == {"app": "a", "tier": "web", "x": "1"}


async def test_a_pinned_patch_on_a_version_gone_by_is_still_a_conflict(two: Any) -> None:
    ours, theirs, _ = two
    seen = await stored(ours)
    await patch(theirs, {"metadata": {"labels": {"tier": "web"}}})
    with pytest.raises(e.APIError) as err:
        await patch(ours, {"metadata": {"resourceVersion": seen["metadata"][
            "resourceVersion"], "labels": {"x": "1"}}})
    assert err.value.reason is e.Reason.CONFLICT


async def test_a_deleted_object_is_not_found(two: Any) -> None:
    ours, theirs, _ = two
    await stored(ours)
    await theirs.delete(PODS, namespace="default", name="p", grace_period=0)
    with pytest.raises(e.APIError) as err:
        await patch(ours, {"status": {"phase": "Running"}}, subresource="status")
    assert err.value.reason is e.Reason.NOT_FOUND


async def test_a_dry_run_is_decided_on_what_is_stored(two: Any) -> None:
    ours, theirs, counted = two
    await stored(ours)
    await patch(theirs, {"metadata": {"labels": {"tier": "web"}}})
    reads = counted.gets
    out = await patch(ours, {"status": {"phase": "Running"}}, subresource="status",
                      dry_run=True)
    assert counted.gets == reads + 1
    assert out["metadata"]["labels"] == {"app": "a", "tier": "web"}
