"""Pods straight from the store, decoded only when their bytes are news.

    list:  Store.list(/registry/pods/) ─► each value decoded as the API server decodes it
           (JSON; metadata.resourceVersion = its mod revision) ─► (pods, revision)
    watch: Store.watch(/registry/pods/, from revision) ─► per event:
             BOOKMARK                       ─► ("BOOKMARK", None, revision)
             the bytes this scheduler wrote ─► the bound pod it encoded (no JSON decode)
               for that key (Binder, expect)   with the event's resourceVersion
             anything else                  ─► decode(value, revision)

The scheduler binds through the store (binder.Binder) and sees every one of its binds come
back on the pod watch: at thousands of pods per second, decoding them again was a fifth
of its time. `expect` remembers what a bind wrote (before the commit, since the watch event
may arrive before the commit's answer); an event whose value is exactly those bytes is that
object. The memory is only a shortcut: an event it does not hold is decoded, so forgetting
(a full memory, a failed bind, a relist) never changes what the scheduler sees.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from api import jsoncodec
from controlplane.storage import EventType, Store, list_prefix

Obj = dict[str, Any]
PODS_PREFIX = list_prefix("pods")
EXPECT_LIMIT = 200_000  # binds remembered before the memory starts afresh


def decode(value: bytes, revision: int) -> Obj:
    """VALUE as the API server returns it (objects.decode): resourceVersion filled in."""
    obj: Obj = jsoncodec.loads(value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(revision)
    return obj


def with_revision(obj: Mapping[str, Any], revision: int) -> Obj:
    """A copy of OBJ (top level and metadata only) at REVISION."""
    return {**obj, "metadata": {**(obj.get("metadata") or {}),
                                "resourceVersion": str(revision)}}


class PodFeed:
    """List and watch pods through STORE; `expect` the scheduler's own writes."""

    def __init__(self, store: Store, *, limit: int = EXPECT_LIMIT) -> None:
        self.store = store
        self.limit = limit
        self._expected: dict[str, tuple[bytes, Mapping[str, Any]]] = {}
        self.decoded = 0  # watch events decoded (for benchmarks and tests)
        self.recognised = 0  # watch events that were our own writes

    def expect(self, key: str, value: bytes, obj: Mapping[str, Any]) -> None:
        """KEY is being written as VALUE, the encoding of OBJ (without resourceVersion)."""
        if len(self._expected) >= self.limit:
            self._expected.clear()
        self._expected[key] = (value, obj)

    def forget(self, key: str) -> None:
        """The write of KEY failed (or is no longer worth remembering)."""
        self._expected.pop(key, None)

    def expecting(self) -> int:
        return len(self._expected)

    async def list(self) -> tuple[list[Obj], int]:
        """Every pod, and the revision they were read at (to watch from)."""
        listed = await self.store.list(PODS_PREFIX)
        return [decode(i.value, i.mod_revision) for i in listed.items], listed.revision

    async def watch(self, from_revision: int) -> AsyncIterator[tuple[str, Obj | None, int]]:
        """(type, pod, revision) after FROM_REVISION; StorageError (Gone: relist) ends it."""
        stream = self.store.watch(PODS_PREFIX, from_revision=from_revision,
                                  bookmark_interval=5.0)
        expected = self._expected
        try:
            async for ev in stream:
                if ev.type is EventType.BOOKMARK:
                    yield "BOOKMARK", None, ev.revision
                    continue
                mine = expected.pop(ev.key, None)
                if mine is not None and ev.type is not EventType.DELETED and \
                        mine[0] == ev.value:
                    self.recognised += 1
                    yield ev.type.value, with_revision(mine[1], ev.revision), ev.revision
                    continue
                self.decoded += 1
                yield ev.type.value, decode(ev.value, ev.revision), ev.revision
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
