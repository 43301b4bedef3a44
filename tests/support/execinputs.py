"""An exec caller's request stream for unit tests of the node API and the controlplane's
relay: ExecStart first, then what feed() puts; end() ends it (a half-close, or what grpc's
servers report for a cancelled call: the request iterator simply ends)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from api.v1 import node_pb2 as npb


class ExecInputs:
    def __init__(self, start: Any) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.queue.put_nowait(npb.ExecInput(start=start))

    def feed(self, **kw: Any) -> None:
        self.queue.put_nowait(npb.ExecInput(**kw))

    def end(self) -> None:
        self.queue.put_nowait(None)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        item = await self.queue.get()
        if item is None:
            raise StopAsyncIteration
        return item
