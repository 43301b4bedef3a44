"""The node proxy's exec relay against a fake agent call: the caller's end of requests is
never passed on as a half-close (grpc reports a cancelled caller the same way), and every
way the caller's RPC can end cancels the agent's call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from api.v1 import node_pb2 as npb
from controlplane.apiserver import nodeproxy as np
from tests.support.execinputs import ExecInputs

_CANCEL = object()


class FakeAgentCall:
    """A grpc.aio stream-stream call: consumes REQUESTS in a task as grpc does (its end is
    the half-close); outputs come from put(); cancel() ends both ways."""

    def __init__(self, requests: AsyncIterator[Any]) -> None:
        self.sent: list[Any] = []
        self.half_closed = False
        self.cancelled = False
        self.outputs: asyncio.Queue[Any] = asyncio.Queue()
        self._consumer = asyncio.create_task(self._consume(requests))

    async def _consume(self, requests: AsyncIterator[Any]) -> None:
        async for item in requests:
            self.sent.append(item)
        self.half_closed = True

    def put(self, out: Any) -> None:
        self.outputs.put_nowait(out)

    def cancel(self) -> bool:
        if self.cancelled:
            return False
        self.cancelled = True
        self._consumer.cancel()
        self.outputs.put_nowait(_CANCEL)
        return True

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        out = await self.outputs.get()
        if out is None:
            raise StopAsyncIteration
        if out is _CANCEL:
            raise asyncio.CancelledError
        return out


class FakeStub:
    def __init__(self) -> None:
        self.calls: list[FakeAgentCall] = []

    def Exec(self, requests: AsyncIterator[Any]) -> FakeAgentCall:
        self.calls.append(FakeAgentCall(requests))
        return self.calls[-1]


class FakeDialer:
    async def connected(self, node: str, endpoint: np.Endpoint) -> object:
        return object()


class Servicer(np.NodeProxyServicer):
    """The proxy with its lookups answered: pod default/web on node n1."""

    def __init__(self) -> None:
        super().__init__(None, dialer=FakeDialer())  # type: ignore[arg-type]
        self.stub = FakeStub()

    async def _target(self, context: Any, ref: Any, *, verb: str, subresource: str
                      ) -> np.Target:
        return np.Target("n1", np.Endpoint("127.0.0.1", 1),
                         npb.ContainerRef(namespace="default", pod="web", container="app"))

    def _stub(self, channel: Any) -> FakeStub:
        return self.stub


class FakeContext:
    def __init__(self) -> None:
        self.callbacks: list[Callable[[Any], None]] = []

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        self.callbacks.append(callback)

    def rpc_done(self) -> None:
        for cb in self.callbacks:
            cb(self)


def new_caller() -> ExecInputs:
    """The caller's request stream: a start of `cat` with stdin, then what feed() puts."""
    return ExecInputs(npb.ExecStart(ref=npb.ContainerRef(pod="web"), command=["cat"],
                                    stdin=True))


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def started() -> tuple[Servicer, FakeContext, ExecInputs, Any, FakeAgentCall]:
    """An exec relayed to the agent, its first output read by the caller."""
    svc, ctx, caller = Servicer(), FakeContext(), new_caller()
    outs = svc.PodExec(caller, ctx)
    caller.feed(stdin=b"ping")
    first = asyncio.ensure_future(anext(outs))
    await settle()
    call = svc.stub.calls[0]
    call.put(npb.ExecOutput(stdout=b"ping"))
    assert await first == npb.ExecOutput(stdout=b"ping")
    return svc, ctx, caller, outs, call


@pytest.mark.asyncio
async def test_the_callers_end_of_requests_is_not_passed_on() -> None:
    _, _, caller, outs, call = await started()
    caller.end()  # a half-close, or what grpc's server shows of a cancelled caller
    await settle()
    assert [m.WhichOneof("input") for m in call.sent] == ["start", "stdin"]
    assert call.sent[0].start.ref.container == "app"  # the resolved container
    assert not call.half_closed and not call.cancelled  # the exec runs on
    call.put(npb.ExecOutput(exit=npb.ExecExit(exit_code=0)))
    call.put(None)  # the agent ends the call
    assert [o async for o in outs] == [npb.ExecOutput(exit=npb.ExecExit(exit_code=0))]
    assert not call.half_closed  # ended by the agent: nothing to pass on either


async def _task_cancelled(ctx: FakeContext, outs: Any) -> None:
    task = asyncio.ensure_future(anext(outs))  # the handler parked on the agent's output
    await settle()
    task.cancel()  # grpc cancels the RPC's task when the caller's RST_STREAM arrives
    with pytest.raises(asyncio.CancelledError):
        await task


async def _rpc_done(ctx: FakeContext, outs: Any) -> None:
    ctx.rpc_done()  # the RPC ended while the handler was not resumed


async def _generator_closed(ctx: FakeContext, outs: Any) -> None:
    await outs.aclose()  # a write to the caller failed: grpc drops the handler at its yield


@pytest.mark.asyncio
@pytest.mark.parametrize("caller_goes", [
    pytest.param(_task_cancelled, id="rpc-task-cancelled"),
    pytest.param(_rpc_done, id="rpc-done-handler-parked"),
    pytest.param(_generator_closed, id="handler-closed-at-a-yield"),
])
async def test_the_caller_going_away_cancels_the_agents_call(caller_goes: Any) -> None:
    _, ctx, _, outs, call = await started()
    await caller_goes(ctx, outs)
    assert call.cancelled
    await settle()
    assert not call.half_closed  # cancelled, never half-closed first
