"""Registry connections: a client is closed once idle (never while in use) and reopened by
the next request; TLS is set up only for https, once. The pool's clock and sleeps are fake;
the RegistryClient tests use httpx.MockTransport and short real idle times."""

from __future__ import annotations

import asyncio
import gc
import ssl
from collections.abc import Callable

import httpx
import pytest

from runtime.service.content import Digest
from runtime.service.images import (
    ProxySettings,
    RegistryClient,
    RegistryUnavailable,
    RetryPolicy,
    parse_reference,
)
from runtime.service.images import connections as conn
from runtime.service.images.connections import ClientPool
from runtime.service.images.mediatypes import OCI_MANIFEST
from runtime.service.images.transport import H11Transport

MANIFEST = b'{"schemaVersion": 2, "mediaType": "%s"}' % OCI_MANIFEST.encode()
DIGEST = Digest.from_bytes(MANIFEST)
REF = parse_reference("127.0.0.1:5000/busybox:1")


class FakeTime:
    """A clock that only moves when the pool sleeps; the sleeps are recorded."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s
        await asyncio.sleep(0)


def pool_with(t: FakeTime, made: list[str]) -> ClientPool:
    def make(registry: str) -> httpx.AsyncClient:
        made.append(registry)
        return httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    return ClientPool(make, idle=60.0, clock=t.clock, sleep=t.sleep)


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def test_idle_client_is_closed_after_the_idle_time_and_reopened_by_the_next_use() -> None:
    t, made = FakeTime(), []

    async def go() -> None:
        pool = pool_with(t, made)
        async with pool.use("reg:5000") as first:
            assert (await first.get("http://reg:5000/v2/")).status_code == 200
        assert pool.open() == ["reg:5000"]
        await settle()
        assert first.is_closed and pool.open() == [] and pool.closed_idle == 1
        assert t.sleeps == [60.0]  # closed exactly IDLE s after the last use ended
        async with pool.use("reg:5000") as second:
            assert second is not first and not second.is_closed
            assert (await second.get("http://reg:5000/v2/")).status_code == 200
        await pool.aclose()
        assert second.is_closed

    asyncio.run(go())
    assert made == ["reg:5000", "reg:5000"]


def test_client_in_use_is_not_closed() -> None:
    t, made = FakeTime(), []

    async def go() -> None:
        pool = pool_with(t, made)
        async with pool.use("a:1") as a:
            async with pool.use("b:1") as b:
                pass  # b idle from now
            await settle()  # the reaper runs: 60 s pass on its clock
            assert b.is_closed and not a.is_closed and pool.open() == ["a:1"]
            assert pool.in_use("a:1") and not pool.in_use("b:1")
            t.now += 3600  # an hour-long pull still holds its client
            await settle()
            assert not a.is_closed
        assert pool.open() == ["a:1"]  # idle from its last use's end, not from its start
        await settle()
        assert a.is_closed and pool.open() == [] and pool.closed_idle == 2
        await pool.aclose()

    asyncio.run(go())


def test_nested_uses_keep_the_client_until_the_last_ends() -> None:
    t, made = FakeTime(), []

    async def go() -> None:
        pool = pool_with(t, made)
        async with pool.use("r:1") as outer:
            async with pool.use("r:1") as inner:
                assert inner is outer
            await settle()
            assert not outer.is_closed
        await settle()
        assert outer.is_closed
        await pool.aclose()

    asyncio.run(go())
    assert made == ["r:1"]


@pytest.mark.parametrize("idle", [pytest.param(0.0, id="zero"), pytest.param(-1.0, id="negative")])
def test_idle_must_be_positive(idle: float) -> None:
    with pytest.raises(ValueError,
                       match=f"RegistryClient: idle_timeout: must be > 0 seconds, got {idle}"):
        RegistryClient(idle_timeout=idle)


def manifests(delay: asyncio.Event | None = None) -> Callable[[httpx.Request], object]:
    async def handler(request: httpx.Request) -> httpx.Response:
        if delay is not None:
            await delay.wait()
        return httpx.Response(200, content=MANIFEST, headers={"Content-Type": OCI_MANIFEST})
    return handler


async def wait_for(cond: Callable[[], bool], *, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def test_registry_client_closes_idle_clients_and_pulls_again() -> None:
    async def go() -> None:
        async with RegistryClient(transport=httpx.MockTransport(manifests()),
                                  idle_timeout=0.05) as c:
            assert (await c.get_manifest(REF, DIGEST))[2] == DIGEST
            assert c.connections.open() == ["127.0.0.1:5000"]
            await wait_for(lambda: c.connections.open() == [])
            assert c.connections.closed_idle == 1
            assert (await c.get_manifest(REF, DIGEST))[2] == DIGEST  # reopened
            assert c.connections.open() == ["127.0.0.1:5000"]
        assert c.connections.open() == []

    asyncio.run(go())


def test_registry_client_keeps_a_client_while_a_request_waits() -> None:
    async def go() -> None:
        gate = asyncio.Event()
        async with RegistryClient(transport=httpx.MockTransport(manifests(gate)),
                                  idle_timeout=0.05) as c:
            slow = asyncio.ensure_future(c.get_manifest(REF, DIGEST))
            await wait_for(lambda: c.connections.in_use("127.0.0.1:5000"))
            await asyncio.sleep(0.3)  # six idle times
            assert c.connections.open() == ["127.0.0.1:5000"] and c.connections.closed_idle == 0
            gate.set()
            assert (await slow)[2] == DIGEST
            await wait_for(lambda: c.connections.open() == [])

    asyncio.run(go())


@pytest.mark.parametrize(
    ("url", "builds_tls"),
    [pytest.param("http://127.0.0.1:9/v2/", False, id="http"),
     pytest.param("https://127.0.0.1:9/v2/", True, id="https")],
)
def test_ssl_context_only_for_https(url: str, builds_tls: bool) -> None:
    """Port 9 (discard) is not served here: the connection is refused after the transport
    chose plain TCP or TLS, which is what is looked at."""
    async def go() -> None:
        gc.collect()  # no context left alive by an earlier test
        built: list[ssl.SSLContext] = []

        def context() -> ssl.SSLContext:
            built.append(conn.tls_context(verify=True))
            return built[-1]

        transport = H11Transport(tls_context=context)
        async with httpx.AsyncClient(transport=transport) as client:
            with pytest.raises(httpx.ConnectError, match="ConnectionRefusedError"):
                await client.get(url)
            assert transport.uses_tls is builds_tls and len(built) == int(builds_tls)
            assert conn.live_tls_contexts() == int(builds_tls)
        built.clear()
        gc.collect()  # the refused connection's traceback held it in a cycle
        assert conn.live_tls_contexts() == 0  # nothing keeps the CA bundle after the pull

    asyncio.run(go())


@pytest.fixture
def tls_asked(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """The verify argument of every connections.tls_context call (the real one still runs):
    a context built during a request is freed with its connection, so live_tls_contexts()
    afterwards cannot tell whether one was built."""
    asked: list[bool] = []
    real = conn.tls_context

    def spy(*, verify: bool) -> ssl.SSLContext:
        asked.append(verify)
        return real(verify=verify)

    monkeypatch.setattr(conn, "tls_context", spy)
    return asked


@pytest.mark.parametrize(
    ("ref", "insecure", "asked"),
    [pytest.param("127.0.0.1:9/x:1", (), [], id="http-loads-no-ca-bundle"),
     pytest.param("localhost:9/x:1", (), [], id="localhost-is-http"),
     pytest.param("registry.test:9/x:1", (), [True], id="https-verified"),
     pytest.param("registry.test:9/x:1", ("registry.test",), [False],
                  id="insecure-host-not-verified"),
     pytest.param("registry.test:9/x:1", ("registry.test:9",), [False],
                  id="insecure-registry-not-verified"),
     pytest.param("registry.test:9/x:1", ("other.test",), [True],
                  id="insecure-elsewhere-still-verified")],
)
def test_registry_client_tls_decision(tls_asked: list[bool], ref: str,
                                      insecure: tuple[str, ...], asked: list[bool]) -> None:
    """The RegistryClient's own transport: http for loopback, https verified unless the
    registry is insecure_tls. Every request fails on a loopback port nobody serves (https
    ones at a proxy there, so no name is looked up), after the transport asked for its
    SSL context or not."""
    async def go() -> None:
        gc.collect()
        async with RegistryClient(retry=RetryPolicy(attempts=1), insecure_tls=insecure,
                                  proxies=ProxySettings.of(https="http://127.0.0.1:9")) as c:
            with pytest.raises(RegistryUnavailable,
                               match="ProxyError: proxy" if asked else "ConnectError"):
                await c.get_manifest(parse_reference(ref), DIGEST)
        assert tls_asked == asked

    asyncio.run(go())


def test_https_context_is_shared_while_alive() -> None:
    gc.collect()
    first = conn.tls_context(verify=True)
    assert conn.tls_context(verify=True) is first
    assert conn.live_tls_contexts() == 1
    insecure = conn.tls_context(verify=False)
    assert insecure is not first and insecure.verify_mode == ssl.CERT_NONE
    assert first.verify_mode == ssl.CERT_REQUIRED and first.check_hostname
    del first, insecure
    assert conn.live_tls_contexts() == 0  # nothing holds them: freed, not cached forever
