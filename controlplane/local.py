"""LocalClient: api.client.AsyncClient's verbs, served in-process by the ObjectService.

The scheduler and the controllers run inside a corral-controlplane process (the leader's)
and talk to the cluster through this: same method names, arguments, results and errors
(APIError) as the gRPC client, without a network hop. Code written against it runs
unchanged against AsyncClient (e.g. in a separate process, or in tests).

    Cluster            the Protocol both clients satisfy
    LocalClient(objs)  in-process
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from api import errors as e
from controlplane.apiserver.objects import ObjectService
from controlplane.apiserver.resources import RESOURCES, Resource

Obj = dict[str, Any]


class Cluster(Protocol):
    """The verbs the scheduler and controllers use (AsyncClient's and LocalClient's)."""

    async def get(self, resource: str, name: str, *, namespace: str = "",
                  subresource: str = "") -> Obj: ...

    async def list(self, resource: str, *, namespace: str = "", label_selector: str = "",
                   field_selector: str = "", limit: int = 0, continue_token: str = "",
                   resource_version: str = "") -> Obj: ...

    async def create(self, resource: str, obj: Obj, *, namespace: str = "",
                     subresource: str = "", dry_run: bool = False,
                     field_manager: str = "") -> Obj: ...

    async def update(self, resource: str, obj: Obj, *, namespace: str = "",
                     subresource: str = "", dry_run: bool = False,
                     field_manager: str = "") -> Obj: ...

    async def patch(self, resource: str, name: str, patch: bytes, *, patch_type: str,
                    namespace: str = "", subresource: str = "", dry_run: bool = False,
                    field_manager: str = "") -> Obj: ...

    async def delete(self, resource: str, name: str, *, namespace: str = "",
                     grace_period: int | None = None, propagation: str = "",
                     uid: str = "", resource_version: str = "",
                     dry_run: bool = False) -> Obj: ...

    def watch(self, resource: str, *, namespace: str = "", label_selector: str = "",
              field_selector: str = "", resource_version: str = "",
              bookmarks: bool = False) -> AsyncIterator[Obj]: ...


def _res(name: str) -> Resource:
    res = RESOURCES.get(name)
    if res is None:
        raise e.APIError(e.Reason.NOT_FOUND, f"the server doesn't have a resource type "
                         f"{name!r}")
    return res


class LocalClient:
    """Cluster over an ObjectService; FIELD_MANAGER names this component's writes."""

    def __init__(self, objects: ObjectService, *, field_manager: str = "") -> None:
        self.objects = objects
        self.field_manager = field_manager

    async def get(self, resource: str, name: str, *, namespace: str = "",
                  subresource: str = "") -> Obj:
        return await self.objects.get(_res(resource), namespace=namespace, name=name,
                                      subresource=subresource)

    async def list(self, resource: str, *, namespace: str = "", label_selector: str = "",
                   field_selector: str = "", limit: int = 0, continue_token: str = "",
                   resource_version: str = "") -> Obj:
        return await self.objects.list(
            _res(resource), namespace=namespace, label_selector=label_selector,
            field_selector=field_selector, limit=limit, continue_token=continue_token,
            resource_version=resource_version)

    async def create(self, resource: str, obj: Obj, *, namespace: str = "",
                     subresource: str = "", dry_run: bool = False,
                     field_manager: str = "") -> Obj:
        return await self.objects.create(
            _res(resource), obj, namespace=namespace, subresource=subresource,
            dry_run=dry_run, field_manager=field_manager or self.field_manager)

    async def update(self, resource: str, obj: Obj, *, namespace: str = "",
                     subresource: str = "", dry_run: bool = False,
                     field_manager: str = "") -> Obj:
        return await self.objects.update(
            _res(resource), obj, namespace=namespace, name=obj["metadata"]["name"],
            subresource=subresource, dry_run=dry_run,
            field_manager=field_manager or self.field_manager)

    async def patch(self, resource: str, name: str, patch: bytes, *, patch_type: str,
                    namespace: str = "", subresource: str = "", dry_run: bool = False,
                    field_manager: str = "") -> Obj:
        return await self.objects.patch(
            _res(resource), namespace=namespace, name=name, patch=patch,
            patch_type=patch_type, subresource=subresource, dry_run=dry_run,
            field_manager=field_manager or self.field_manager)

    async def delete(self, resource: str, name: str, *, namespace: str = "",
                     grace_period: int | None = None, propagation: str = "",
                     uid: str = "", resource_version: str = "",
                     dry_run: bool = False) -> Obj:
        pre = {k: v for k, v in (("uid", uid), ("resourceVersion", resource_version)) if v}
        return await self.objects.delete(
            _res(resource), namespace=namespace, name=name, grace_period=grace_period,
            propagation=propagation, preconditions=pre, dry_run=dry_run)

    async def watch(self, resource: str, *, namespace: str = "", label_selector: str = "",
                    field_selector: str = "", resource_version: str = "",
                    bookmarks: bool = False) -> AsyncIterator[Obj]:
        async for ev in self.objects.watch(
                _res(resource), namespace=namespace, label_selector=label_selector,
                field_selector=field_selector, resource_version=resource_version,
                bookmarks=5.0 if bookmarks else None):
            yield {"type": ev["type"], "object": ev["object"]}
