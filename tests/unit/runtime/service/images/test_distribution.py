"""The registry client's retry policy and scheme choice, with the registry behind
httpx.MockTransport and sleeps recorded instead of slept."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from runtime.service.content import Digest, MemoryContentStore
from runtime.service.images import (
    BlobMismatch,
    NotFound,
    RegistryClient,
    RegistryError,
    RegistryUnavailable,
    RetryPolicy,
    parse_reference,
)
from runtime.service.images.mediatypes import OCI_LAYER, Descriptor

BLOB = b"x" * 200_000
DIGEST = Digest.from_bytes(BLOB)
REF = parse_reference("127.0.0.1:5000/busybox:1")


def fetch(handler: Callable[[httpx.Request], httpx.Response], *, attempts: int = 4,
          blob: bytes = BLOB) -> tuple[list[float], MemoryContentStore, BaseException | None]:
    sleeps: list[float] = []

    async def sleep(s: float) -> None:
        sleeps.append(s)

    store = MemoryContentStore()

    async def go() -> None:
        async with RegistryClient(transport=httpx.MockTransport(handler), sleep=sleep,
                                  retry=RetryPolicy(attempts=attempts, base_delay=0.1)) as c:
            await c.fetch_blob(REF, Descriptor(OCI_LAYER, Digest.from_bytes(blob), len(blob)),
                               store=store, what="layer x")

    try:
        asyncio.run(go())
    except Exception as e:
        return sleeps, store, e
    return sleeps, store, None


def answers(*responses: httpx.Response) -> Callable[[httpx.Request], httpx.Response]:
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.scheme == "http"  # loopback registry: plain http
        return queue.pop(0) if queue else httpx.Response(200, content=BLOB)
    return handler


def test_retry_after_seconds_is_honoured() -> None:
    sleeps, store, err = fetch(answers(httpx.Response(429, headers={"Retry-After": "3"})))
    assert err is None and sleeps == [3.0]
    assert store.exists(DIGEST)


def test_backoff_grows_with_jitter_then_gives_up() -> None:
    sleeps, store, err = fetch(answers(*[httpx.Response(503)] * 10), attempts=4)
    assert isinstance(err, RegistryUnavailable)
    assert "503 Service Unavailable" in str(err) and "gave up after 4 attempts" in str(err)
    assert len(sleeps) == 3
    for i, s in enumerate(sleeps):
        assert 0.1 * 2**i * 0.5 <= s <= 0.1 * 2**i
    assert store.ingests() == [] and not store.exists(DIGEST)


@pytest.mark.parametrize(
    ("status", "error"),
    [pytest.param(404, NotFound, id="404"), pytest.param(400, RegistryError, id="400"),
     pytest.param(405, RegistryError, id="405")],
)
def test_4xx_is_not_retried(status: int, error: type[Exception]) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(status, json={"errors": [{"code": "X", "message": "nope"}]})

    sleeps, store, err = fetch(handler)
    assert isinstance(err, error) and len(calls) == 1 and sleeps == []
    assert store.ingests() == []


def test_connection_error_is_retried() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, content=BLOB)

    sleeps, store, err = fetch(handler)
    assert err is None and len(calls) == 2 and len(sleeps) == 1
    assert store.read(DIGEST) == BLOB


def test_longer_body_than_descriptor_is_refused_while_streaming() -> None:
    _, store, err = fetch(answers(httpx.Response(200, content=BLOB + b"more")))
    assert isinstance(err, BlobMismatch) and "size mismatch" in str(err)
    assert store.ingests() == [] and not store.exists(DIGEST)


@pytest.mark.parametrize(
    ("ref", "plain_http", "scheme"),
    [
        pytest.param("127.0.0.1:5000/a", (), "http", id="loopback-ip"),
        pytest.param("localhost:5000/a", (), "http", id="localhost"),
        pytest.param("reg.test/a", (), "https", id="remote"),
        pytest.param("reg.test:5000/a", ("reg.test:5000",), "http", id="marked-plain"),
    ],
)
def test_scheme(ref: str, plain_http: tuple[str, ...], scheme: str) -> None:
    c = RegistryClient(plain_http=plain_http)
    assert c.base_url(parse_reference(ref)).startswith(f"{scheme}://")
