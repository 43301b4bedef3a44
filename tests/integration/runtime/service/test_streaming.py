"""CRI streaming against a real corral-runtimed: exec (pipes and tty), attach, port-forward.

Each test starts its own daemon (test_runtimed.Runtimed) with a short token TTL, runs a
pod of busybox, gets URLs through CRI and opens them with our client (cri/stream.py).
The last test runs one exec through the same client against containerd 1.6's streaming
server too.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from runtime.service.cri import api_pb2 as pb
from runtime.service.cri import stream as W
from runtime.service.cri.client import (
    CRIClient,
    InvalidArgument,
)
from tests.integration.runtime.service.test_cri_compat import subnet_of
from tests.integration.runtime.service.test_cri_containerd import (
    container_config,
    sandbox_config,
    until,
)
from tests.integration.runtime.service.test_runtimed import Runtimed, need_root
from tests.support.containerd import Containerd
from tests.support.registry import Registry

pytestmark = pytest.mark.asyncio
TOKEN_TTL = 2.0


@pytest.fixture
def rtd(tag: str, leak_check: None, registry: Registry, busybox: str) -> Iterator[Runtimed]:
    need_root()
    with Runtimed(tag=tag, sandbox_image=busybox, registries=[registry.host]) as r:
        with open(r.config_path) as f:
            text = f.read()
        with open(r.config_path, "w") as f:  # top-level keys go before the first table
            f.write(f"stream_token_ttl = {TOKEN_TTL}\n{text}")
        r.write_cni_conflist()
        r.start()
        yield r


@pytest_asyncio.fixture
async def cri(rtd: Runtimed) -> AsyncIterator[CRIClient]:
    async with CRIClient(rtd.socket, timeout=60) as client:
        yield client


async def pod_with(cri: CRIClient, rt: Any, image: str, command: list[str], *,
                   name: str = "main") -> tuple[str, str]:
    """(sandbox id, container id) of a started container running COMMAND."""
    await cri.pull_image(pb.ImageSpec(image=image))
    sandbox = sandbox_config(rt, "web")
    pod = await cri.run_pod_sandbox(sandbox)
    cid = await cri.create_container(pod, container_config(image, name, command),
                                     sandbox_config=sandbox)
    await cri.start_container(cid)
    return pod, cid


async def collect(url: str, *, stdin: bytes | None = None) -> tuple[bytes, bytes, int, str]:
    return await asyncio.wait_for(W.run(await W.connect(url), stdin=stdin), timeout=30)


@pytest.mark.parametrize(("cmd", "stdin", "want"), [
    pytest.param(["cat"], b"hello\nworld\n", (b"hello\nworld\n", b"", 0), id="stdin-echo"),
    pytest.param(["sh", "-c", "echo out; echo err >&2; exit 3"], None,
                 (b"out\n", b"err\n", 3), id="exit-code-and-streams"),
    pytest.param(["sh", "-c", "kill -9 $$"], None, (b"", b"", 137), id="killed-by-signal"),
    pytest.param(["hostname"], None, (b"web\n", b"", 0), id="in-the-pod-uts"),
])
async def test_exec(cri: CRIClient, rtd: Runtimed, busybox: str, cmd: list[str],
                    stdin: bytes | None, want: tuple[bytes, bytes, int]) -> None:
    _, cid = await pod_with(cri, rtd, busybox, ["sleep", "60"])
    url = await cri.exec(cid, cmd, stdin=stdin is not None)
    assert url.startswith("http://127.0.0.1:") and "/exec/" in url
    out, err, code, message = await collect(url, stdin=stdin)
    assert (out, err, code) == want, message
    if code:
        assert f"exit code {code}" in message


async def test_exec_tty_resize(cri: CRIClient, rtd: Runtimed, busybox: str) -> None:
    _, cid = await pod_with(cri, rtd, busybox, ["sleep", "60"])
    url = await cri.exec(cid, ["sh", "-c", "read x; stty size; tty"], tty=True, stdin=True)
    s = await W.connect(url)
    assert s.protocol == W.V5
    await s.resize(100, 40)
    await s.send_stdin(b"go\r")
    out, err, code, message = await asyncio.wait_for(W.run(s), timeout=30)
    assert code == 0, message
    assert b"40 100\r\n" in out, out
    assert b"/dev/pts/" in out, out
    assert err == b""  # a tty merges stderr into stdout


async def test_client_leaving_ends_the_exec(cri: CRIClient, rtd: Runtimed,
                                            busybox: str) -> None:
    _, cid = await pod_with(cri, rtd, busybox, ["sleep", "60"])
    s = await W.connect(await cri.exec(cid, ["cat"], stdin=True))
    await s.send_stdin(b"x\n")
    assert await asyncio.wait_for(s.recv(), 10) == (W.STDOUT, b"x\n")
    await s.close()  # cat sees EOF and ends: no exec left in the container

    async def only_sleep_left() -> bool:
        r = await cri.exec_sync(cid, ["ps", "-o", "comm"], timeout=10)
        return b"cat" not in r.stdout
    await until("cat to end after its client left", only_sleep_left)


async def test_tokens_are_single_use_and_expire(cri: CRIClient, rtd: Runtimed,
                                                busybox: str) -> None:
    _, cid = await pod_with(cri, rtd, busybox, ["sleep", "60"])
    url = await cri.exec(cid, ["true"])
    assert (await collect(url))[2] == 0
    with pytest.raises(W.StreamError, match="404"):
        await W.connect(url)
    stale = await cri.exec(cid, ["true"])
    await asyncio.sleep(TOKEN_TTL + 0.5)
    with pytest.raises(W.StreamError, match="404"):
        await W.connect(stale)
    bad = url.rsplit("/", 1)[0] + "/not-a-token"
    with pytest.raises(W.StreamError, match="404"):
        await W.connect(bad)
    wrong_kind = (await cri.exec(cid, ["true"])).replace("/exec/", "/attach/")
    with pytest.raises(W.StreamError, match="404"):
        await W.connect(wrong_kind)


async def test_bad_requests_name_the_field(cri: CRIClient, rtd: Runtimed,
                                           busybox: str) -> None:
    pod, cid = await pod_with(cri, rtd, busybox, ["sleep", "60"])
    with pytest.raises(InvalidArgument, match=f"Container {cid[:13]}: cmd: must not be empty"):
        await cri.exec(cid, [])
    with pytest.raises(InvalidArgument, match="stdin, stdout, stderr: at least one"):
        await cri.exec(cid, ["true"], stdout=False, stderr=False)
    with pytest.raises(InvalidArgument,
                       match=f"Container {cid[:13]}: stdin: the container was created without"):
        await cri.attach(cid, stdin=True)
    with pytest.raises(InvalidArgument, match=r"port\[1\]: must be 1..65535, got 0"):
        await cri.port_forward(pod, [80, 0])
    await cri.stop_container(cid, timeout=0)
    with pytest.raises(InvalidArgument, match=f"Container {cid[:13]}: is stopped") as e:
        await cri.exec(cid, ["true"])
    assert e.value.code == "FAILED_PRECONDITION"


async def test_attach_follows_output_until_exit(cri: CRIClient, rtd: Runtimed,
                                                busybox: str) -> None:
    script = "sleep 2; for i in 1 2 3; do echo out$i; echo err$i >&2; sleep 0.2; done"
    _, cid = await pod_with(cri, rtd, busybox, ["sh", "-c", script])
    out, err, code, message = await collect(await cri.attach(cid))
    assert (out, err, code) == (b"out1\nout2\nout3\n", b"err1\nerr2\nerr3\n", 0), message


async def test_port_forward_into_the_pod(cri: CRIClient, rtd: Runtimed, busybox: str) -> None:
    script = "nc -l -p 8082 > /tmp/got & while true; do echo pong | nc -l -p 8080; done"
    pod, cid = await pod_with(cri, rtd, busybox, ["sh", "-c", script])

    async def listening() -> bool:
        r = await cri.exec_sync(cid, ["netstat", "-ltn"], timeout=10)
        return b":8080 " in r.stdout and b":8082 " in r.stdout
    await until("nc listening", listening)
    ports = [8080, 8081, 8082]
    s = await W.port_forward(await cri.port_forward(pod, ports), ports=ports)
    try:
        assert s.protocol == W.PORT_FORWARD
        await s.send(8082, b"ping\n")
        got: dict[tuple[int, bool], bytes] = {}
        while not (got.get((8080, False), b"").endswith(b"\n") and (8081, True) in got):
            frame = await asyncio.wait_for(s.recv(), 10)
            assert frame is not None, got
            got[(frame.port, frame.error)] = got.get((frame.port, frame.error), b"") + \
                frame.data
        assert got[(8080, False)] == b"pong\n"
        assert got[(8081, True)].endswith(b"port 8081: connect to 127.0.0.1:8081 in the pod: "
                                          b"Connection refused")
    finally:
        await s.close()

    async def received() -> bool:
        return (await cri.exec_sync(cid, ["cat", "/tmp/got"], timeout=10)).stdout == b"ping\n"
    await until("ping to reach the pod", received)
    # the pod's port is in the pod's network namespace only
    with pytest.raises(OSError):
        _, w = await asyncio.open_connection("127.0.0.1", 8080)
        w.close()


@pytest.fixture
def ctd(tag: str, leak_check: None, registry: Registry, busybox: str) -> Iterator[Containerd]:
    need_root()
    with Containerd(tag=tag, sandbox_image=busybox, registries=[registry.host]) as c:
        c.write_cni_conflist(subnet=subnet_of(c.tag))
        yield c


async def test_same_client_against_containerd(ctd: Containerd, busybox: str) -> None:
    async with CRIClient(ctd.socket, timeout=60) as cri:
        async def network_ready() -> bool:
            conds = {c.type: c.status for c in (await cri.status()).status.conditions}
            return conds.get("NetworkReady", False)
        await until("NetworkReady", network_ready)
        _, cid = await pod_with(cri, ctd, busybox, ["sleep", "60"])
        url = await cri.exec(cid, ["sh", "-c", "echo out; echo err >&2; exit 3"])
        s = await W.connect(url)
        assert s.protocol == W.V4  # containerd 1.6 knows no v5
        started = time.monotonic()
        out, err, code, message = await asyncio.wait_for(W.run(s), timeout=30)
        assert (out, err, code) == (b"out\n", b"err\n", 3), message
        assert time.monotonic() - started < 10
        ok = await collect(await cri.exec(cid, ["hostname"]))
        assert ok[:3] == (b"web\n", b"", 0)
        assert os.path.exists(ctd.socket)
