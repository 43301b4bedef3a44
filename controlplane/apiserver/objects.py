"""The object service: Kubernetes' REST semantics over a Store, transport-free.

    create  ─► defaults ─► validate ─► namespace exists and is not terminating
            ─► server metadata (uid, creationTimestamp, generation, generateName)
            ─► Store.create (fails if the key exists)
    update  ─► resourceVersion given: one compare-and-swap at it (Conflict names the
               current version; no read when this process wrote that very version);
               none: read-modify-write until it lands (starting from this process's
               last GET of the object, if it has not written it since); a guard (the
               auth gate's, for a node's pod status write) checks what was read
            ─► immutable fields, server-owned parts carried over, generation bumped;
               nothing but resourceVersion/managedFields changed: a no-op, not written
    patch / apply ─► read, compute the new object, then update at the read revision,
               retried on Conflict (a patch applies to whatever is current)
    delete  ─► finalizers (or foreground/orphan propagation) or a bound pod's grace period:
               mark deletionTimestamp and keep the object; otherwise remove it
               (deletion.py)
    subresources ─► scale (get/update as an autoscaling/v1 Scale), pods/binding
               (subresources.py)
    list / watch ─► label and field selectors applied here, pages filled across etcd pages

The gRPC edge (service.py) only decodes requests and maps APIError to status codes.
resourceVersion is never stored: it is the key's mod revision, set on every read;
stored.py has the encoding, the storage errors in API words and the small helpers.
"""

from __future__ import annotations

import collections
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from api import errors as e
from api import jsoncodec, kinds
from api import selectors as sel
from controlplane.apiserver import admission, deletion, subresources, watchcache
from controlplane.apiserver.nsview import NamespaceView
from controlplane.apiserver.resources import Resource
from controlplane.apiserver.stored import UPDATE_RETRIES, Obj, parse_rv, same
from controlplane.apiserver.stored import decode as decode  # re-exported: the scheduler
from controlplane.apiserver.stored import encode as encode  # and tests import these here
from controlplane.apiserver.stored import rfc3339 as rfc3339
from controlplane.apiserver.stored import storage_error as storage_error
from controlplane.apiserver.watchcache import WatchCache
from controlplane.storage import errors as se
from controlplane.storage import keys, pagination
from controlplane.storage.interface import Store

Guard = Callable[[Obj], None]  # checks the object a write read: raises APIError
WRITTEN_CACHE = 4096  # objects whose last write this process remembers
READ_CACHE = 1024  # objects whose last read this process remembers (for the next write)
_NS_PREFIX = keys.list_prefix("namespaces")


class ObjectService:
    """Create, read, update, patch, apply, delete, list and watch objects of any kind."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time,
                 watch_cache: bool = True) -> None:
        self.store = store
        self.clock = clock
        self._watch_cache = watch_cache
        self._ns_view: NamespaceView | None = None  # namespace_usable's, on the watch cache
        self._ns_written = 0  # the revision of this process's last namespace write
        self._caches: dict[str, WatchCache] = {}
        # key -> (mod revision, stored bytes) of the objects this process wrote last: an
        # update at exactly that resourceVersion needs no read (a key's value at one mod
        # revision never changes, so this cannot be stale, only absent)
        self._written: collections.OrderedDict[str, tuple[int, bytes]] = \
            collections.OrderedDict()
        # key -> (mod revision, value) of objects this process read (GET) and has not
        # written since: the next write without a resourceVersion starts from it, once
        self._read_last: collections.OrderedDict[str, tuple[int, bytes]] = \
            collections.OrderedDict()

    def _remember(self, key: str, revision: int, value: bytes) -> None:
        self._read_last.pop(key, None)  # older than what was just written
        self._written[key] = (revision, value)
        self._written.move_to_end(key)
        if key.startswith(_NS_PREFIX):
            self._ns_written = max(self._ns_written, revision)
        if len(self._written) > WRITTEN_CACHE:
            self._written.popitem(last=False)

    async def close(self) -> None:
        if self._ns_view is not None:
            await self._ns_view.stop()
            self._ns_view = None
        for cache in self._caches.values():
            await cache.stop()
        self._caches.clear()

    async def _cache(self, res: Resource) -> WatchCache | None:
        if not self._watch_cache:
            return None
        cache = self._caches.get(res.name)
        if cache is None:
            cache = self._caches[res.name] = WatchCache(self.store, res)
        await cache.start()
        return cache

    # -- helpers -------------------------------------------------------------------------

    def _key(self, res: Resource, namespace: str, name: str) -> str:
        try:
            return keys.object_key(res.name, name, namespace if res.namespaced else None)
        except se.InvalidArgument:
            raise e.bad_request(f"{res.kind}: invalid name {name!r} or namespace "
                                f"{namespace!r}") from None

    def _scope(self, res: Resource, namespace: str) -> str:
        if res.namespaced and not namespace:
            raise e.bad_request(f"{res.kind} is namespaced: a namespace is required")
        return namespace if res.namespaced else ""

    async def _call(self, res: Resource, name: str, namespace: str,
                    op: Awaitable[Any]) -> Any:
        try:
            return await op
        except se.StorageError as err:
            raise storage_error(err, res, name, namespace) from None

    async def _read(self, res: Resource, namespace: str, name: str, *,
                    remember: bool = False) -> tuple[Obj, int]:
        """The stored object and its revision; REMEMBER (a GET's read) keeps the bytes for
        the next write without a resourceVersion."""
        key = self._key(res, namespace, name)
        value, rev = await self._call(res, name, namespace, self.store.get(key))
        if remember:
            self._read_last[key] = (rev, value)
            self._read_last.move_to_end(key)
            if len(self._read_last) > READ_CACHE:
                self._read_last.popitem(last=False)
        return decode(value, rev), rev

    async def namespace_usable(self, namespace: str) -> None:
        """NotFound unless the namespace exists; Forbidden while it is being deleted. Asks
        the watch cache's view (nsview.py), and the store when the view does not know."""
        ns: Obj | None = None
        if self._watch_cache:
            if self._ns_view is None:
                cache = await self._cache(_NS)
                assert cache is not None
                self._ns_view = NamespaceView(self.store, cache)
            await self._ns_view.start()
            ns = await self._ns_view.lookup(namespace, written=self._ns_written)
        if ns is None:
            try:
                value, _ = await self.store.get(keys.object_key("namespaces", namespace))
            except se.NotFound:
                raise e.APIError(e.Reason.NOT_FOUND, f"namespaces {namespace!r} not found",
                                 kind="Namespace", name=namespace) from None
            except se.StorageError as err:
                raise storage_error(err, _NS, namespace) from None
            ns = jsoncodec.loads(value)
        if (ns.get("metadata") or {}).get("deletionTimestamp"):
            raise e.forbidden(f"unable to create new content in namespace {namespace} "
                              "because it is being terminated")

    def _admit(self, res: Resource, obj: Any, *, namespace: str) -> Obj:
        """Defaults then validation; the object's kind and namespace must match the path."""
        if not isinstance(obj, dict):
            raise e.bad_request(f"{res.kind}: the body must be a JSON object")
        name = str((obj.get("metadata") or {}).get("name") or "") if isinstance(
            obj.get("metadata"), dict) else ""
        if (obj.get("apiVersion"), obj.get("kind")) != (res.api_version, res.kind):
            raise e.bad_request(
                f"{res.kind} {name}: apiVersion/kind {obj.get('apiVersion')}/"
                f"{obj.get('kind')} does not match resource {res.name} "
                f"({res.api_version}/{res.kind})".replace(" :", ":"))
        meta = obj.get("metadata")
        if isinstance(meta, dict) and res.namespaced:
            given = meta.get("namespace")
            if given and given != namespace:
                raise e.bad_request(f"{res.kind} {name}: metadata.namespace {given!r} does "
                                    f"not match the request's namespace {namespace!r}")
            obj = {**obj, "metadata": {**meta, "namespace": namespace}}
        obj = kinds.defaults(obj)
        try:
            kinds.validate(obj)
        except kinds.Invalid as err:
            raise e.invalid(err.kind, err.name,
                            [(fe.path, fe.problem) for fe in err.errors]) from None
        return obj  # type: ignore[no-any-return]

    # -- reads ---------------------------------------------------------------------------

    async def get(self, res: Resource, *, namespace: str, name: str,
                  subresource: str = "") -> Obj:
        obj, _ = await self._read(res, self._scope(res, namespace), name, remember=True)
        if subresource == "scale":
            return subresources.scale_of(res, obj)
        if subresource not in ("", "status"):
            raise e.bad_request(f"{res.name}: no subresource {subresource!r}")
        return obj

    async def list(self, res: Resource, *, namespace: str = "", label_selector: str = "",
                   field_selector: str = "", limit: int = 0, continue_token: str = "",
                   resource_version: str = "") -> Obj:
        labels, fields = self._selectors(res, label_selector, field_selector)
        prefix = keys.list_prefix(res.name, namespace if res.namespaced and namespace
                                  else None)
        revision = parse_rv(resource_version) or None
        items: list[Obj] = []
        token: str | None = continue_token or None
        while True:
            page_limit = 0 if not limit else max(limit - len(items), 1) * (
                1 if labels.empty() and not fields.requirements else 4)
            try:
                page = await self.store.list(prefix, limit=page_limit,
                                             continue_token=token,
                                             revision=None if token else revision)
            except se.StorageError as err:
                raise storage_error(err, res, "", namespace) from None
            for item in page.items:
                obj = decode(item.value, item.mod_revision)
                if watchcache.matches(obj, labels, fields):
                    items.append(obj)
                    if limit and len(items) == limit:
                        break
            else:
                token = page.continue_token
                if token is None or (limit and len(items) >= limit):
                    break
                continue
            # the page filled up part way through a store page: continue after this item
            last = items[-1]
            token = pagination.encode(prefix=prefix, last_key=self._key(
                res, last["metadata"].get("namespace", ""), last["metadata"]["name"]),
                revision=page.revision)
            break
        meta: Obj = {"resourceVersion": str(page.revision)}
        if token:
            meta["continue"] = token
        return {"apiVersion": res.api_version, "kind": f"{res.kind}List", "metadata": meta,
                "items": items}

    def _selectors(self, res: Resource, label_selector: str, field_selector: str,
                   ) -> tuple[sel.Selector, sel.FieldSelector]:
        try:
            labels = sel.parse(label_selector)
        except sel.SelectorError as err:
            raise e.bad_request(f"{res.name}: labelSelector: {err}") from None
        try:
            fields = sel.parse_fields(field_selector, res.allowed_fields)
        except sel.SelectorError as err:
            raise e.bad_request(f"{res.name}: fieldSelector: {err}") from None
        return labels, fields

    async def watch(self, res: Resource, *, namespace: str = "", label_selector: str = "",
                    field_selector: str = "", resource_version: str = "",
                    bookmarks: float | None = None) -> AsyncIterator[Obj]:
        """Events {"type", "object"} after resource_version ("" or "0": from now).

        An object that stops matching the selectors arrives as DELETED, one that starts
        matching as ADDED, as Kubernetes' filtered watches do."""
        labels, fields = self._selectors(res, label_selector, field_selector)
        prefix = keys.list_prefix(res.name, namespace if res.namespaced and namespace
                                  else None)
        rev = parse_rv(resource_version)
        cache = await self._cache(res)
        if cache is not None and (not rev or cache.covers(rev)):
            async for event in cache.watch(namespace=namespace, labels=labels, fields=fields,
                                           from_revision=rev, bookmarks=bool(bookmarks)):
                yield event
            return
        if not rev:
            rev = await self._call(res, "", namespace, self.store.current_revision())
        stream = self.store.watch(prefix, from_revision=rev, bookmark_interval=bookmarks)
        selection = watchcache.Selection(prefix, labels, fields, bookmarks=True)
        try:
            async for ev in stream:
                seen = watchcache.view(watchcache.cached(ev, res), selection)
                if seen is not None:
                    yield {"type": seen[0], "object": seen[1], "raw": seen[2]}
        except se.StorageError as err:
            raise storage_error(err, res, "", namespace) from None
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    # -- writes --------------------------------------------------------------------------

    async def create(self, res: Resource, body: Any, *, namespace: str = "",
                     dry_run: bool = False, field_manager: str = "",
                     subresource: str = "") -> Obj:
        if subresource == "binding":
            return await self.bind(res, body, namespace=namespace)
        if subresource:
            raise e.bad_request(f"{res.name}: cannot create subresource {subresource!r}")
        namespace = self._scope(res, namespace)
        obj: Obj = self._admit(res, body, namespace=namespace)
        meta = obj["metadata"]
        if meta.get("resourceVersion"):
            raise e.bad_request(f"{res.kind} {meta.get('name', '')}: metadata."
                                "resourceVersion must not be set on create")
        if res.namespaced:
            await self.namespace_usable(namespace)
        now = self.clock()
        meta = {k: v for k, v in meta.items()
                if k not in ("deletionTimestamp", "deletionGracePeriodSeconds")}
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=rfc3339(now), generation=1)
        obj["metadata"] = meta
        if res.name == "namespaces":  # emptied by the namespace controller before removal
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            obj["status"] = {"phase": "Active"}
        if res.name == "pods":
            admission.default_tolerations(obj)
        if field_manager:
            obj = _track(None, obj, manager=field_manager, now=rfc3339(now))
            meta = obj["metadata"]
        generate = not meta.get("name")
        # Kubernetes cuts the prefix to 58 so that prefix + 5-character suffix fits 63
        prefix = str(meta.get("generateName") or "")[:63 - 5]
        if generate:  # every generated name is valid if one is (the suffix is [a-z0-9])
            try:
                kinds.validate({**obj, "metadata": {**meta, "name": prefix + "bcdfg"}})
            except kinds.Invalid as err:
                raise e.invalid(res.kind, str(meta.get("generateName")), [
                    ("metadata.generateName" if fe.path == "metadata.name" else fe.path,
                     fe.problem) for fe in err.errors]) from None
        for _ in range(8 if generate else 1):
            if generate:
                meta["name"] = prefix + _suffix()
            if dry_run:
                return obj
            key = self._key(res, namespace, meta["name"])
            try:
                value = encode(obj)
                rev = await self.store.create(key, value)
                self._remember(key, rev, value)
            except se.AlreadyExists:
                if generate:
                    continue
                raise e.already_exists(res.kind, meta["name"], namespace) from None
            except se.StorageError as err:
                raise storage_error(err, res, meta["name"], namespace) from None
            meta["resourceVersion"] = str(rev)
            return obj
        raise e.APIError(e.Reason.ALREADY_EXISTS, f"{res.kind}: could not generate a "
                         f"unique name from {meta['generateName']!r}; retry")

    async def update(self, res: Resource, obj: Any, *, namespace: str = "", name: str = "",
                     subresource: str = "", dry_run: bool = False,
                     field_manager: str = "", guard: Guard | None = None) -> Obj:
        namespace = self._scope(res, namespace)
        if subresource == "scale" and guard is not None:  # (no gate asks: fail closed)
            raise e.forbidden(f"{res.kind} {name}: scale: a guarded update is not supported")
        if subresource == "scale":
            return await self._update_scale(res, obj, namespace=namespace, name=name,
                                            dry_run=dry_run)
        if subresource not in ("", "status"):
            raise e.bad_request(f"{res.name}: cannot update subresource {subresource!r}")
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
            raise e.bad_request(f"{res.kind} {name}: the body must be an object with "
                                "metadata")
        body_name = obj["metadata"].get("name") or name
        if name and body_name != name:
            raise e.bad_request(f"{res.kind} {name}: metadata.name {body_name!r} does not "
                                "match the name in the request")
        name = body_name
        expected = parse_rv(obj["metadata"].get("resourceVersion"), f"{res.kind} {name}")

        def change(current: Obj) -> Obj:
            return jsoncodec.copy(obj)

        return await self._write(res, namespace=namespace, name=name, change=change,
                                 expected=expected, subresource=subresource,
                                 dry_run=dry_run, field_manager=field_manager, guard=guard)

    async def _write(self, res: Resource, *, namespace: str, name: str,
                     change: Callable[[Obj], Obj], expected: int = 0, subresource: str = "",
                     dry_run: bool = False, field_manager: str = "",
                     tracked: bool = True, guard: Guard | None = None) -> Obj:
        """Read, GUARD (may the caller change what was read?), CHANGE, admit,
        compare-and-swap; retried on Conflict unless EXPECTED (the client's
        resourceVersion) pins the version it may change."""
        key = self._key(res, namespace, name)
        for attempt in range(UPDATE_RETRIES):
            guessed = cached = False
            if attempt:
                current, rev = await self._read(res, namespace, name)
            elif expected:
                known = self._written.get(key)
                if known is not None and known[0] == expected:
                    # this process wrote the version the client read: skip the etcd read
                    # (the compare-and-swap below still fails if the key has moved on)
                    rev, cached = expected, True
                    current = decode(known[1], rev)
                else:
                    current, rev = await self._read(res, namespace, name)
            else:
                guess = None if dry_run else self._read_last.pop(key, None)
                if guess is not None:  # decided on a guess: what is stored decides
                    rev, current, guessed = guess[0], decode(guess[1], guess[0]), True
                else:  # (refusals, no-ops and dry runs are decided on a fresh read)
                    current, rev = await self._read(res, namespace, name)
            if guard is not None:
                try:
                    guard(current)
                except e.APIError:
                    if guessed or cached:
                        continue  # refused on a copy: decided again on what is stored
                    raise
            if expected and rev != expected:
                raise e.conflict(res.kind, name, current=rev)
            try:
                desired = self._changed(res, current, change, namespace=namespace,
                                        name=name, subresource=subresource,
                                        field_manager=field_manager if tracked else "",
                                        managed_by_change=not tracked)
            except Exception:
                if guessed:
                    continue
                raise
            if desired is None:  # a no-op: nothing is written
                if guessed:
                    continue
                return current
            if dry_run:
                return desired
            try:
                if deletion.finalized(res, desired):
                    self._written.pop(key, None)
                    await self.store.delete(key, expected_revision=rev)
                    return desired
                value = encode(desired)
                new_rev = await self.store.update(key, value, rev)
                self._remember(key, new_rev, value)
            except se.Conflict as err:
                if expected:
                    raise e.conflict(res.kind, name, current=err.current_revision) from None
                continue
            except se.StorageError as err:
                if guessed and not isinstance(err, se.Unavailable):
                    continue  # (gone, too large...: as what is stored says)
                raise storage_error(err, res, name, namespace) from None
            desired["metadata"]["resourceVersion"] = str(new_rev)  # (_track made a copy)
            return desired
        raise e.conflict(res.kind, name, current=0,
                         problem=f"gave up after {UPDATE_RETRIES} conflicting writes")

    def _changed(self, res: Resource, current: Obj, change: Callable[[Obj], Obj], *,
                 namespace: str, name: str, subresource: str, field_manager: str,
                 managed_by_change: bool = False) -> Obj | None:
        """CHANGE applied to (a copy of) CURRENT, admitted as an update of it; None if it
        changes nothing but resourceVersion and managedFields (stored.same: the one test
        of a no-op write, made before field ownership is tracked)."""
        desired = change(jsoncodec.copy(current))
        if not isinstance(desired, dict) or not isinstance(desired.get("metadata"), dict):
            raise e.invalid(res.kind, name, [("metadata", "must be an object")])
        new_name = desired["metadata"].setdefault("name", name)
        if new_name != name:
            raise e.invalid(res.kind, name, [("metadata.name", admission.IMMUTABLE)])
        desired = admission.carry_over(res, current, desired, subresource=subresource)
        desired = self._admit(res, desired, namespace=namespace)
        problems = admission.check_update(res, current, desired, subresource=subresource)
        if problems:
            raise e.invalid(res.kind, name, problems)
        deletion.check_no_new_finalizers(res, name, current, desired)
        if same(current, desired) and (not managed_by_change or _managed(current)
                                       == _managed(desired)):
            return None
        if field_manager:
            desired = _track(current, desired, manager=field_manager,
                             now=rfc3339(self.clock()))
        return desired

    async def patch(self, res: Resource, *, namespace: str = "", name: str,
                    patch: bytes, patch_type: str, subresource: str = "",
                    dry_run: bool = False, field_manager: str = "",
                    guard: Guard | None = None) -> Obj:
        from controlplane.apiserver import patch as patches
        namespace = self._scope(res, namespace)
        if subresource not in ("", "status"):
            raise e.bad_request(f"{res.name}: cannot patch subresource {subresource!r}")

        def change(current: Obj) -> Obj:
            try:
                out = patches.apply_patch(current, patch, patch_type=patch_type,
                                          kind=res.kind)
            except patches.PatchError as err:
                raise e.bad_request(f"{res.kind} {name}: {err}") from None
            if not isinstance(out, dict) or not isinstance(out.get("metadata"), dict):
                raise e.invalid(res.kind, name, [("metadata", "must be an object")])
            rv = out["metadata"].get("resourceVersion")
            if rv and rv != current["metadata"]["resourceVersion"]:
                raise e.conflict(res.kind, name,
                                 current=int(current["metadata"]["resourceVersion"]))
            return out

        return await self._write(res, namespace=namespace, name=name, change=change,
                                 subresource=subresource, dry_run=dry_run,
                                 field_manager=field_manager, guard=guard)

    async def apply(self, res: Resource, body: Any, *, namespace: str = "", name: str = "",
                    field_manager: str, force: bool = False, dry_run: bool = False) -> Obj:
        """Server-side apply: create if missing, else merge with field ownership."""
        from controlplane.apiserver import apply as ssa
        namespace = self._scope(res, namespace)
        if not field_manager:
            raise e.bad_request(f"{res.kind} {name}: apply needs a field manager")
        if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
            raise e.bad_request(f"{res.kind} {name}: the body must be an object with "
                                "metadata")
        name = name or str(body["metadata"].get("name") or "")
        if not name:
            raise e.bad_request(f"{res.kind}: apply needs metadata.name")
        now = rfc3339(self.clock())

        def change(cur: Obj) -> Obj:
            try:
                return ssa.apply(cur, body, manager=field_manager, force=force, now=now)
            except ssa.ApplyConflict as err:
                raise e.APIError(e.Reason.CONFLICT, f"{res.kind} {name}: {err}",
                                 kind=res.kind, name=name,
                                 causes=[{"field": c.path, "message":
                                          f"conflict with {c.manager!r}"}
                                         for c in err.conflicts]) from None

        for _ in range(UPDATE_RETRIES):
            try:  # the common case: the object exists (one read, in _write)
                return await self._write(res, namespace=namespace, name=name,
                                         change=change, dry_run=dry_run,
                                         field_manager=field_manager, tracked=False)
            except e.APIError as err:
                if err.reason is not e.Reason.NOT_FOUND:
                    raise
            try:
                merged = ssa.apply(None, body, manager=field_manager, force=force, now=now)
            except ssa.ApplyConflict as err2:
                raise e.conflict(res.kind, name, current=0, problem=str(err2)) from None
            try:
                return await self.create(res, merged, namespace=namespace, dry_run=dry_run)
            except e.APIError as err2:
                if err2.reason is not e.Reason.ALREADY_EXISTS:
                    raise
        raise e.conflict(res.kind, name, current=0, problem="apply kept conflicting")

    # -- deletes (deletion.py) and subresources (subresources.py) ------------------------

    delete = deletion.delete
    delete_collection = deletion.delete_collection
    bind = subresources.bind
    _update_scale = subresources.update_scale


_NS = Resource(name="namespaces", kind="Namespace", api_version="v1", namespaced=False)


def _suffix() -> str:
    alphabet = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' generateName alphabet
    return "".join(secrets.choice(alphabet) for _ in range(5))


def _track(old: Obj | None, new: Obj, *, manager: str, now: str) -> Obj:
    """NEW with metadata.managedFields updated for an ordinary write by MANAGER."""
    from controlplane.apiserver import apply as ssa
    return ssa.track_update(old, new, manager=manager, now=now)


def _managed(obj: Obj) -> Any:
    """OBJ's managedFields: what an apply changes even when no value moves."""
    return (obj.get("metadata") or {}).get("managedFields")
