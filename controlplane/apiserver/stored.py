"""What an object is in storage, for the object service's paths (objects.py, deletion.py,
subresources.py):

    obj ─► encode: resourceVersion dropped (it is the key's mod revision) ─► etcd value
    etcd value, mod revision ─► decode ─► obj with metadata.resourceVersion set
    StorageError ─► storage_error ─► the APIError that names the object
    "123" ─► parse_rv ─► etcd revision 123; same(a, b): equal but for resourceVersion and
    managedFields (an update that changes nothing is not written)
"""

from __future__ import annotations

import datetime
from typing import Any

from api import errors as e
from api import jsoncodec
from controlplane.apiserver.resources import Resource
from controlplane.storage import errors as se

Obj = dict[str, Any]
Objs = list[Obj]  # (the name `list` is a method in ObjectService)
UPDATE_RETRIES = 20


def rfc3339(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def encode(obj: Obj) -> bytes:
    meta = obj.get("metadata")
    if isinstance(meta, dict) and "resourceVersion" in meta:
        obj = {**obj, "metadata": {k: v for k, v in meta.items() if k != "resourceVersion"}}
    return jsoncodec.dumps(obj)


def decode(value: bytes, revision: int) -> Obj:
    obj: Obj = jsoncodec.loads(value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(revision)
    return obj


def storage_error(err: se.StorageError, res: Resource, name: str, namespace: str = "",
                  ) -> e.APIError:
    """Storage's taxonomy in the API's words, naming the object."""
    if isinstance(err, se.NotFound):
        return e.not_found(res.kind, name, namespace)
    if isinstance(err, se.AlreadyExists):
        return e.already_exists(res.kind, name, namespace)
    if isinstance(err, se.Conflict):
        return e.conflict(res.kind, name, current=err.current_revision)
    if isinstance(err, se.TooLarge):
        return e.APIError(e.Reason.TOO_LARGE,
                          f"{res.kind} {name}: the object is {err.size} bytes encoded; "
                          f"the limit is {err.limit} bytes (etcd's request limit)")
    if isinstance(err, se.Gone):
        return e.APIError(e.Reason.GONE, str(err))
    if isinstance(err, se.Unavailable):
        return e.unavailable(f"storage is unavailable: {err}; retry shortly")
    return e.bad_request(str(err))


def parse_rv(rv: Any, who: str = "") -> int:
    """A resourceVersion as etcd's revision; errors name WHO ("ConfigMap cfg")."""
    prefix = f"{who}: metadata." if who else ""
    if rv is None or rv == "":
        return 0
    if not isinstance(rv, str):
        raise e.bad_request(f"{prefix}resourceVersion: must be a string, got "
                            f"{type(rv).__name__}")
    try:
        value = int(rv)
    except ValueError:
        raise e.bad_request(f"{prefix}resourceVersion {e.clip(rv, 64)!r}: must be a "
                            "decimal number") from None
    if value < 0:
        raise e.bad_request(f"{prefix}resourceVersion {rv!r}: must be >= 0")
    return value


def same(a: Obj, b: Obj) -> bool:
    strip = ("resourceVersion", "managedFields")
    def norm(o: Obj) -> Obj:
        return {**o, "metadata": {k: v for k, v in (o.get("metadata") or {}).items()
                                  if k not in strip}}
    return norm(a) == norm(b)
