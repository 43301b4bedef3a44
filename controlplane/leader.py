"""Leader election on an etcd lease, and the fence every leader write carries.

    run_when_leader(store, component="controlplane", identity="host-1", work=run_all)

        campaign ─► key /corral/leader/<component> absent?
            │         yes: grant a lease (ttl 5 s), create the key on it (a txn: only if
            │              still absent) ─► lead
            │         no:  watch it until it is deleted (or the lease behind it expires),
            │              re-checking every ttl ─► campaign
        lead ───► work(Fence(key, create revision)) ║ keep the lease alive every ttl/3
            │      work returns      ─► revoke the lease (a standby leads at once), return
            │      lease lost (etcd says expired, or no renewal for a whole ttl)
            │                        ─► cancel work, campaign again
            └──── cancelled          ─► cancel work, revoke the lease, re-raise

A standby leads within one ttl of the leader's last renewal (plus a watch round trip), so
with the 5 s ttl a `kill -9` costs at most ~5 s. Work gets the Fence: writes made through
`FencedStore(store, fence)` carry a compare on the key's create revision, so a deposed
leader that has not noticed yet (paused, partitioned) cannot land a late write: it gets
`Fenced`. Leadership is never assumed from the clock alone: only the fence is authoritative.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from controlplane.storage import (
    EventType,
    Fence,
    NotFound,
    StorageError,
    Store,
    TxnFailed,
    Unavailable,
    Write,
)

LEADER_PREFIX = "/corral/leader/"
DEFAULT_TTL = 5
RETRY_SECONDS = 0.5

log = logging.getLogger(__name__)
Work = Callable[[Fence], Coroutine[Any, Any, None]]


def leader_key(component: str) -> str:
    if not component or "/" in component:
        raise ValueError(f"leader election: component {component!r}: must be non-empty "
                         "without '/'")
    return LEADER_PREFIX + component


async def current_leader(store: Store, component: str) -> str | None:
    """The identity leading COMPONENT, or None."""
    try:
        value, _ = await store.get(leader_key(component))
    except NotFound:
        return None
    return value.decode()


async def run_when_leader(store: Store, *, component: str, identity: str, work: Work,
                          ttl: int = DEFAULT_TTL,
                          on_change: Callable[[bool], None] | None = None) -> None:
    """Campaign for COMPONENT and run WORK(fence) while leading; see the module docstring.

    Returns when WORK returns; WORK's exception propagates (after stepping down).
    ON_CHANGE(True/False) is told when this process starts and stops leading."""
    key = leader_key(component)
    while True:
        fence, lease = await campaign(store, key=key, identity=identity, ttl=ttl)
        log.info("%s: %s leads (revision %d)", key, identity, fence.revision)
        if on_change is not None:
            on_change(True)
        try:
            finished = await _lead(store, fence=fence, lease=lease, ttl=ttl, work=work)
        finally:
            if on_change is not None:
                on_change(False)
        if finished:
            return
        log.warning("%s: %s lost its lease; campaigning again", key, identity)


async def campaign(store: Store, *, key: str, identity: str, ttl: int) -> tuple[Fence, int]:
    """Wait until KEY can be created on a new lease; return the fence and the lease."""
    while True:
        try:
            _, rev = await store.get(key)
        except NotFound:
            lease = await _retrying(lambda: store.grant_lease(ttl))
            try:
                created = await store.commit([Write(key, identity.encode(), 0, lease=lease)])
            except (TxnFailed, StorageError):  # another candidate won the race, or etcd hiccup
                with contextlib.suppress(StorageError):
                    await store.revoke_lease(lease)
                continue
            return Fence(key, created), lease
        except Unavailable:
            await asyncio.sleep(RETRY_SECONDS)
            continue
        await _until_deleted(store, key=key, after=rev, recheck=float(ttl))


async def _until_deleted(store: Store, *, key: str, after: int, recheck: float) -> None:
    """Return when KEY is deleted after revision AFTER, or after RECHECK seconds (so a
    missed event or a broken watch costs at most that much)."""
    with contextlib.suppress(TimeoutError, StorageError):
        async with asyncio.timeout(recheck):
            stream = store.watch(LEADER_PREFIX, from_revision=after)
            async with contextlib.aclosing(stream):  # type: ignore[type-var]
                async for ev in stream:
                    if ev.key == key and ev.type is EventType.DELETED:
                        return


async def _lead(store: Store, *, fence: Fence, lease: int, ttl: int, work: Work) -> bool:
    """Run WORK while the lease lives. True: WORK finished; False: the lease was lost."""
    worker = asyncio.create_task(work(fence), name=f"leader:{fence.key}")
    keeper = asyncio.create_task(_keep_alive(store, lease=lease, ttl=ttl))
    try:
        await asyncio.wait({worker, keeper}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # cancelled: stop working and hand over at once
        await _stop(worker, keeper)
        with contextlib.suppress(StorageError):
            await store.revoke_lease(lease)
        raise
    finished = worker.done()
    await _stop(worker, keeper)
    if not finished:
        return False
    with contextlib.suppress(StorageError):
        await store.revoke_lease(lease)  # step down at once: a standby leads now
    worker.result()  # WORK's exception, if it raised
    return True


async def _stop(*tasks: asyncio.Task[None]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _keep_alive(store: Store, *, lease: int, ttl: int) -> None:
    """Renew every ttl/3; return when the lease is gone or unrenewed for a whole ttl."""
    last_renewed = time.monotonic()
    while True:
        await asyncio.sleep(ttl / 3)
        try:
            await store.keep_alive(lease)
            last_renewed = time.monotonic()
        except NotFound:
            return
        except StorageError as err:
            if time.monotonic() - last_renewed >= ttl:
                log.warning("lease %x: not renewed for %d s (%s): stepping down",
                            lease, ttl, err)
                return


async def _retrying(op: Callable[[], Awaitable[int]]) -> int:
    while True:
        try:
            return await op()
        except Unavailable:
            await asyncio.sleep(RETRY_SECONDS)
