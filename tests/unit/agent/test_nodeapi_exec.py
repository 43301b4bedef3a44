"""agent/nodeapi.py's Exec against a fake CRI and a fake streaming session: how the
session ends when the caller half-closes, cancels, or goes away while an output is being
written (grpc then closes the handler's generator instead of cancelling it)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agent import cri as C
from agent import nodeapi as NA
from api.v1 import node_pb2 as npb
from controlplane.apiserver.pki import create_ca, issue
from tests.support.execinputs import ExecInputs

CA = create_ca()
ADMIN = issue(CA, common_name="apiserver", organizations=["system:masters"],
              client=True).cert_pem


class FakeSession:
    """A CRI streaming session: RECV answers come from a queue; records what it was told."""

    def __init__(self) -> None:
        self.frames: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        self.stdin: list[bytes] = []
        self.stdin_closed = 0
        self.closed = asyncio.Event()

    async def send_stdin(self, data: bytes) -> None:
        self.stdin.append(data)

    async def close_stdin(self) -> None:
        self.stdin_closed += 1

    async def resize(self, width: int, height: int) -> None:
        pass

    async def recv(self) -> tuple[int, bytes] | None:
        return await self.frames.get()

    async def close(self) -> None:
        self.closed.set()


class FakeCRI:
    async def exec(self, cid: str, command: list[str], *, tty: bool, stdin: bool) -> str:
        return f"http://127.0.0.1:1/exec/{cid}"


class FakePods:
    async def get(self, namespace: str, name: str) -> NA.BoundPod | None:
        pod = {"metadata": {"name": name, "namespace": namespace, "uid": "u1"},
               "spec": {"containers": [{"name": "app"}]}}
        rt = C.PodRuntime("u1", sandboxes=[C.SandboxInfo("s1", 0, True)],
                          containers=[C.ContainerInfo(id="c1", name="app", attempt=0,
                                                      state="running", sandbox_id="s1")])
        return NA.BoundPod(pod, rt)

    async def all(self) -> list[NA.BoundPod]:
        return []


class FakeContext:
    def auth_context(self) -> dict[str, list[bytes]]:
        return {"x509_pem_cert": [ADMIN]}

    async def abort(self, code: Any, details: str) -> None:
        raise AssertionError(f"aborted: {code}: {details}")


def exec_inputs(*, stdin: bool) -> ExecInputs:
    """The caller's request stream: a start of `cat`, then what feed() puts."""
    return ExecInputs(npb.ExecStart(ref=npb.ContainerRef(namespace="default", pod="web"),
                                    command=["cat"], stdin=stdin))


def servicer(session: FakeSession) -> NA.NodeServicer:
    async def connect(url: str) -> FakeSession:
        return session

    return NA.NodeServicer(node="n1", pods=FakePods(), cri=FakeCRI(),  # type: ignore[arg-type]
                           log_root="/nonexistent", inventory=None,  # type: ignore[arg-type]
                           sampler=None, machine=None,  # type: ignore[arg-type]
                           connect=connect, exit_code=lambda data: (int(data or b"0"), ""))


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.mark.asyncio
@pytest.mark.parametrize(("stdin", "close_first", "want_closes"), [
    pytest.param(True, False, 1, id="half-close-is-stdin-eof"),
    pytest.param(True, True, 1, id="stdin-close-then-half-close-closes-once"),
    pytest.param(False, False, 0, id="no-stdin-nothing-to-close"),
])
async def test_the_end_of_the_requests_closes_stdin_but_not_the_session(
        stdin: bool, close_first: bool, want_closes: int) -> None:
    session, inputs = FakeSession(), exec_inputs(stdin=stdin)
    outs = servicer(session).Exec(inputs, FakeContext())
    inputs.feed(stdin=b"ping")
    if close_first:
        inputs.feed(stdin_close=True)
    inputs.end()
    session.frames.put_nowait((NA.STDOUT, b"pong"))
    assert await anext(outs) == npb.ExecOutput(stdout=b"pong")
    await settle()
    assert session.stdin == ([b"ping"] if stdin else [])
    assert session.stdin_closed == want_closes
    assert not session.closed.is_set()  # the command runs on until it exits
    session.frames.put_nowait((NA.STATUS, b"4"))
    session.frames.put_nowait(None)
    assert [o async for o in outs] == [npb.ExecOutput(exit=npb.ExecExit(exit_code=4))]
    assert session.closed.is_set()


@pytest.mark.asyncio
async def test_a_cancelled_call_ends_the_session() -> None:
    session, inputs = FakeSession(), exec_inputs(stdin=False)

    async def consume() -> list[Any]:
        return [o async for o in servicer(session).Exec(inputs, FakeContext())]

    task = asyncio.create_task(consume())  # grpc runs the handler in the call's task
    await settle()
    task.cancel()  # what grpc does when the caller cancels (RST_STREAM)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert session.closed.is_set()


@pytest.mark.asyncio
async def test_a_call_that_ends_while_an_output_is_written_ends_the_session() -> None:
    session, inputs = FakeSession(), exec_inputs(stdin=True)
    outs = servicer(session).Exec(inputs, FakeContext())
    session.frames.put_nowait((NA.STDOUT, b"a"))
    assert await anext(outs) == npb.ExecOutput(stdout=b"a")
    # the write of that output failed (the caller is gone): grpc drops the generator at
    # its yield and the asyncio loop closes it; the session must end with that close
    await outs.aclose()  # type: ignore[attr-defined]
    assert session.closed.is_set()
