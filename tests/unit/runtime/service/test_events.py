"""The event bus: subscribers get what is published after they subscribed, from any
thread; with no subscriber a publish schedules nothing on the loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from runtime.service.events import Event, EventBus, EventType


def event(cid: str, tenant: str = "k8s.io") -> Event:
    return Event(tenant, cid, "sb", EventType.STARTED, 1)


@pytest.mark.parametrize(("tenant", "want"), [
    pytest.param(None, ["a", "b", "c"], id="every-tenant"),
    pytest.param("k8s.io", ["a", "c"], id="one-tenant"),
])
def test_subscribers_get_events_published_from_threads(tenant: str | None,
                                                       want: list[str]) -> None:
    async def main() -> list[str]:
        bus = EventBus(asyncio.get_running_loop())
        bus.publish(event("before"))  # nobody listens yet: dropped
        got: list[str] = []

        async def listen() -> None:
            async for ev in bus.subscribe(tenant):
                got.append(ev.container_id)
        task = asyncio.create_task(listen())
        while not bus.subscribers:
            await asyncio.sleep(0)
        t = threading.Thread(target=lambda: [bus.publish(e) for e in (
            event("a"), event("b", tenant="other"), event("c"))])
        t.start()
        t.join()
        await asyncio.sleep(0.05)
        bus.close()
        await task
        return got
    assert asyncio.run(main()) == want


def test_no_subscriber_schedules_nothing() -> None:
    async def main() -> int:
        loop = asyncio.get_running_loop()
        scheduled = 0
        real = loop.call_soon_threadsafe

        def counting(*args: object) -> asyncio.Handle:
            nonlocal scheduled
            scheduled += 1
            return real(*args)  # type: ignore[arg-type]
        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        bus = EventBus(loop)
        for i in range(10):
            bus.publish(event(str(i)))
        return scheduled
    assert asyncio.run(main()) == 0
