"""Key layout and the checks every Store applies before touching data (pure functions).

Objects live at ``/registry/<resource>/<namespace>/<name>``; cluster-scoped ones at
``/registry/<resource>/<name>``. Listing uses prefixes that end with '/', so namespace
``ns1`` never matches ``ns10``.
"""

from __future__ import annotations

from collections.abc import Sequence

from controlplane.storage.errors import InvalidArgument, TooLarge
from controlplane.storage.interface import MAX_TXN_OPS, Write

REGISTRY = "/registry"

# etcd refuses requests over --max-request-bytes (1.5 MiB by default). A write carries the
# key twice (compare and put) plus a small envelope, so the object itself gets a little less.
MAX_REQUEST_BYTES = 3 * 512 * 1024
ENVELOPE_BYTES = 1024
MAX_OBJECT_BYTES = MAX_REQUEST_BYTES - ENVELOPE_BYTES


def object_key(resource: str, name: str, namespace: str | None = None) -> str:
    """The key of one object; namespace None means a cluster-scoped object."""
    parts = [resource, name] if namespace is None else [resource, namespace, name]
    for part in parts:
        if not part or "/" in part:
            raise InvalidArgument(f"key segment {part!r}: must be non-empty without '/'")
    return "/".join([REGISTRY, *parts])


def list_prefix(resource: str, namespace: str | None = None) -> str:
    """The prefix listing every object of a resource (in one namespace, if given)."""
    parts = [resource] if namespace is None else [resource, namespace]
    return "/".join([REGISTRY, *parts]) + "/"


def check_prefix(prefix: str) -> None:
    if not prefix.endswith("/"):
        raise InvalidArgument(
            f"prefix {prefix!r}: must end with '/' (otherwise 'ns1' would also match 'ns10')")


def check_size(key: str, value: bytes) -> None:
    size = 2 * len(key.encode()) + len(value)
    if size > MAX_OBJECT_BYTES:
        raise TooLarge(key, size=size, limit=MAX_OBJECT_BYTES)


def prefix_range_end(prefix: bytes) -> bytes:
    """etcd's range_end for "every key starting with prefix": the prefix plus one."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"  # prefix of all 0xff bytes (or empty): every key from prefix on


def check_writes(writes: Sequence[Write], *, fenced: bool) -> None:
    """A commit's writes: within etcd's op limit, one write per key, each within size."""
    limit = MAX_TXN_OPS - (1 if fenced else 0)
    if not writes:
        raise InvalidArgument("commit: no writes given")
    if len(writes) > limit:
        raise InvalidArgument(f"commit: {len(writes)} writes; at most {limit} fit one "
                              f"transaction (etcd's --max-txn-ops is {MAX_TXN_OPS})")
    seen: set[str] = set()
    for w in writes:
        if w.key in seen:
            raise InvalidArgument(f"commit: key {w.key} is written twice")
        seen.add(w.key)
        if w.value is not None:
            check_size(w.key, w.value)
