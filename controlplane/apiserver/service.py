"""The gRPC edge: decode a request, authenticate and authorize it, call the object service,
map APIError to a status code. No REST semantics live here (objects.py has them).

    request ─► who (client certificate or bearer token) ─► may they (roles) ─► ObjectService
       ▲                                                                         │
       └──── status code + Status JSON in the `corral-status-bin` trailer ◄──────┘
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import grpc  # type: ignore[import-untyped]

from api import errors as e
from api import jsoncodec
from api.v1 import apiserver_pb2 as pb
from api.v1 import apiserver_pb2_grpc as pb_grpc
from controlplane.apiserver import metrics
from controlplane.apiserver.objects import Guard, ObjectService
from controlplane.apiserver.resources import RESOURCES, Resource

STATUS_TRAILER = "corral-status-bin"
VERSION = "corral v0.1.0"


@dataclass(frozen=True)
class Allowed:
    """A gate's yes: the user's name (for the audit trail) and, when the decision rests on
    the stored object and the caller offered to check it (DEFER), the GUARD to call on
    the object the write reads (it raises Forbidden; the write is a compare-and-swap at
    that read, so a stale read cannot pass)."""

    user: str
    guard: Guard | None = None


class Gate(Protocol):
    """Authentication and authorization of one call (gate.py). Raises APIError
    (Unauthorized or Forbidden) or says Allowed. DEFER: the call is a write that checks
    a guard on the object it reads (update, patch), so the gate need not read it."""

    async def check(self, context: Any, *, verb: str, resource: Resource, namespace: str,
                    name: str, subresource: str, obj: dict[str, Any] | None,
                    field_selector: str = "", defer: bool = False) -> Allowed: ...


class AllowAll:
    """No authentication: for tests of the object semantics over a local socket."""

    async def check(self, context: Any, **_: Any) -> Allowed:
        return Allowed("anonymous")


def _resource(target: Any) -> Resource:
    res = RESOURCES.get(target.resource)
    if res is None:
        raise e.APIError(e.Reason.NOT_FOUND, f"the server doesn't have a resource type "
                         f"{target.resource!r}")
    return res


def _json(data: bytes, what: str) -> Any:
    try:
        return jsoncodec.loads(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise e.bad_request(f"{what}: the body is not valid JSON: {err}") from None
    except RecursionError:
        raise e.bad_request(f"{what}: the body is nested too deeply") from None


def _dump(obj: Any) -> bytes:
    return jsoncodec.dumps(obj)


# gRPC refuses trailers over 8 KiB now and then and over 16 KiB always (the client then
# sees only "Stream removed"). Both the Status (base64 on the wire: a third larger) and
# the status message (percent-encoded: up to 6 bytes per character) count.
MAX_TRAILER = 4 * 1024
MAX_STATUS_MESSAGE = 256


def status_bytes(err: e.APIError) -> bytes:
    """ERR's Status as UTF-8 JSON that fits the trailer: echoed values are cut shorter
    until it does (a message clipped by characters may still be long in bytes). A message
    keeps its head and its tail: the object's kind and name, and the field and problem
    that follow an echoed value."""
    data = jsoncodec.dumps(err.status())
    limit = 1024
    while len(data) > MAX_TRAILER and limit >= 16:
        short = e.APIError(
            err.reason, _clip_middle(err.message, limit), retry_after=err.retry_after,
            causes=[{k: e.clip(str(v), limit // 4) for k, v in c.items()}
                    for c in err.causes],
            **{k: e.clip(v, limit) if isinstance(v, str) else v
               for k, v in err.details.items()})
        data = jsoncodec.dumps(short.status())
        limit //= 4
    return data


def _clip_middle(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}... ({len(text) - 2 * half} characters left out) ...{text[-half:]}"


async def abort(context: Any, err: e.APIError) -> None:
    code = getattr(grpc.StatusCode, err.reason.grpc_code)
    context.set_trailing_metadata(((STATUS_TRAILER, status_bytes(err)),))
    await context.abort(code, _clip_middle(err.message, MAX_STATUS_MESSAGE))


class APIServicer(pb_grpc.APIServicer):
    def __init__(self, objects: ObjectService, *, gate: Gate | None = None) -> None:
        self.objects = objects
        self.gate: Gate = gate or AllowAll()

    async def _run(self, context: Any, verb: str, target: Any,
                   call: Callable[[Resource, Any, Guard | None], Awaitable[Any]], *,
                   body: bytes | None = None, field_selector: str = "",
                   guarded: bool = False) -> Any:
        """Decode BODY (JSON), check who may do VERB, then CALL(resource, body, guard);
        GUARDED: CALL checks the gate's guard (if any) on the object it reads."""
        start = time.perf_counter()
        code = "OK"
        resource = target.resource
        try:
            res = _resource(target)
            obj = None if body is None else _json(body, f"{verb} {target.resource} "
                                                        f"{target.name}".rstrip())
            allowed = await self.gate.check(context, verb=verb, resource=res,
                                            namespace=target.namespace, name=target.name,
                                            subresource=target.subresource,
                                            obj=obj if isinstance(obj, dict) else None,
                                            field_selector=field_selector, defer=guarded)
            if allowed.guard is not None and not guarded:  # (a gate's bug: fail closed)
                raise e.forbidden(f"{verb} {target.resource}: the decision needs the "
                                  "stored object, which this call does not check")
            return await call(res, obj, allowed.guard)
        except e.APIError as err:
            code = err.reason.grpc_code
            await abort(context, err)
        except Exception as err:  # a bug: report it as such, keep serving
            code = "INTERNAL"
            await abort(context, e.APIError(e.Reason.INTERNAL,
                                            f"internal error: {type(err).__name__}: {err}"))
        finally:
            metrics.observe_request(verb=verb, resource=resource, code=code,
                                    seconds=time.perf_counter() - start)

    async def Discovery(self, request: Any, context: Any) -> Any:
        out = pb.DiscoveryResponse(server_version=VERSION)
        for r in RESOURCES.values():
            subs = [s for s, has in (("status", r.status), ("scale", r.scale)) if has]
            if r.name == "pods":
                subs.append("binding")
            out.resources.add(name=r.name, kind=r.kind, api_version=r.api_version,
                              namespaced=r.namespaced, short_names=list(r.short_names),
                              subresources=subs)
        return out

    async def Get(self, request: Any, context: Any) -> Any:
        t = request.target

        async def call(res: Resource, body: Any, guard: Guard | None) -> Any:
            obj = await self.objects.get(res, namespace=t.namespace, name=t.name,
                                         subresource=t.subresource)
            return pb.Object(json=_dump(obj))
        return await self._run(context, "get", t, call)

    async def List(self, request: Any, context: Any) -> Any:
        t = request.target

        async def call(res: Resource, body: Any, guard: Guard | None) -> Any:
            out = await self.objects.list(
                res, namespace=t.namespace, label_selector=request.label_selector,
                field_selector=request.field_selector, limit=request.limit,
                continue_token=getattr(request, "continue"),
                resource_version=request.resource_version)
            return pb.ObjectList(json=_dump(out))
        return await self._run(context, "list", t, call,
                               field_selector=request.field_selector)

    async def Watch(self, request: Any, context: Any) -> AsyncIterator[Any]:
        t = request.target
        start = time.perf_counter()
        code = "OK"
        try:
            res = _resource(t)
            await self.gate.check(context, verb="watch", resource=res, namespace=t.namespace,
                                  name=t.name, subresource="", obj=None,
                                  field_selector=request.field_selector)
            stream = self.objects.watch(
                res, namespace=t.namespace, label_selector=request.label_selector,
                field_selector=request.field_selector,
                resource_version=request.resource_version,
                bookmarks=5.0 if request.allow_bookmarks else None)
            async for ev in stream:
                yield pb.WatchEvent(type=ev["type"], object=ev.get("raw") or
                                    _dump(ev["object"]))
        except e.APIError as err:
            code = err.reason.grpc_code
            await abort(context, err)
        finally:
            metrics.observe_request(verb="watch", resource=t.resource, code=code,
                                    seconds=time.perf_counter() - start)

    async def Create(self, request: Any, context: Any) -> Any:
        t = request.target

        async def call(res: Resource, body: Any, guard: Guard | None) -> Any:
            obj = await self.objects.create(
                res, body, namespace=t.namespace, subresource=t.subresource,
                dry_run=request.options.dry_run, field_manager=request.options.field_manager)
            return pb.Object(json=_dump(obj))
        return await self._run(context, "create", t, call,
                               body=request.json)

    async def Update(self, request: Any, context: Any) -> Any:
        t = request.target

        async def call(res: Resource, body: Any, guard: Guard | None) -> Any:
            obj = await self.objects.update(
                res, body, namespace=t.namespace, name=t.name, subresource=t.subresource,
                dry_run=request.options.dry_run, field_manager=request.options.field_manager,
                guard=guard)
            return pb.Object(json=_dump(obj))
        return await self._run(context, "update", t, call,
                               body=request.json, guarded=True)

    async def Patch(self, request: Any, context: Any) -> Any:
        t = request.target

        async def call(res: Resource, body: Any, guard: Guard | None) -> Any:
            obj = await self.objects.patch(
                res, namespace=t.namespace, name=t.name, patch=request.patch,
                patch_type=request.patch_type, subresource=t.subresource,
                dry_run=request.options.dry_run, field_manager=request.options.field_manager,
                guard=guard)
            return pb.Object(json=_dump(obj))
        return await self._run(context, "patch", t, call, guarded=True)

    async def Apply(self, request: Any, context: Any) -> Any:
        t = request.target

        async def call(res: Resource, body: Any, guard: Guard | None) -> Any:
            if t.subresource:
                raise e.bad_request(f"{res.name}/{t.subresource}: apply to a subresource "
                                    "is not supported")
            obj = await self.objects.apply(
                res, body, namespace=t.namespace, name=t.name,
                field_manager=request.options.field_manager, force=request.force,
                dry_run=request.options.dry_run)
            return pb.Object(json=_dump(obj))
        return await self._run(context, "patch", t, call,
                               body=request.json)

    async def Delete(self, request: Any, context: Any) -> Any:
        t = request.target

        async def call(res: Resource, body: Any, guard: Guard | None) -> Any:
            pre = {"uid": request.precondition_uid,
                   "resourceVersion": request.precondition_resource_version}
            grace = request.grace_period_seconds if request.HasField(
                "grace_period_seconds") else None
            obj = await self.objects.delete(
                res, namespace=t.namespace, name=t.name, grace_period=grace,
                propagation=request.propagation_policy,
                preconditions={k: v for k, v in pre.items() if v}, dry_run=request.dry_run,
                guard=guard)
            return pb.Object(json=_dump(obj))
        return await self._run(context, "delete", t, call, guarded=True)

    async def DeleteCollection(self, request: Any, context: Any) -> Any:
        t = request.target

        async def call(res: Resource, body: Any, guard: Guard | None) -> Any:
            items = await self.objects.delete_collection(
                res, namespace=t.namespace, label_selector=request.label_selector,
                field_selector=request.field_selector,
                propagation=request.propagation_policy)
            return pb.ObjectList(json=_dump({"apiVersion": res.api_version,
                                             "kind": f"{res.kind}List", "metadata": {},
                                             "items": items}))
        return await self._run(context, "deletecollection", t, call,
                               field_selector=request.field_selector)
