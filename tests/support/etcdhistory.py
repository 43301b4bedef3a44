"""etcd's own history, read back by tests that must prove what was written: every change
under a prefix since a revision, and the nodes each pod was bound to (a pod bound twice
shows two)."""

from __future__ import annotations

import asyncio
import json

from controlplane.storage import EtcdStore, Event, EventType


def history(endpoint: str, prefix: str, from_revision: int) -> list[Event]:
    """Every change under PREFIX since FROM_REVISION, from etcd's own history. The watch
    covers the whole keyspace, so it always reaches the current revision (the revision of
    some write), even when nothing under PREFIX changed."""
    async def read() -> list[Event]:
        store = EtcdStore([endpoint])
        out: list[Event] = []
        try:
            end = await store.current_revision()
            if end < from_revision:
                return out
            stream = store.watch("/", from_revision=from_revision - 1)
            try:
                async with asyncio.timeout(30):
                    async for ev in stream:
                        if ev.type is not EventType.BOOKMARK and ev.key.startswith(prefix):
                            out.append(ev)
                        if ev.revision >= end:
                            break
            finally:
                await stream.aclose()  # type: ignore[attr-defined]
        finally:
            await store.close()
        return out
    return asyncio.run(read())


def binds_per_pod(endpoint: str, from_revision: int) -> dict[str, list[str]]:
    """Every node each pod key was bound to, in order (a pod key reused after deletion
    would start over; generated names are not reused here)."""
    out: dict[str, list[str]] = {}
    for ev in history(endpoint, "/registry/pods/", from_revision):
        if ev.type is EventType.DELETED:
            continue
        bound = (json.loads(ev.value).get("spec") or {}).get("nodeName")
        seen = out.setdefault(ev.key, [])
        if bound and (not seen or seen[-1] != bound):
            seen.append(bound)
    return out
