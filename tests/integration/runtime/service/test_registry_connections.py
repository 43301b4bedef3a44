"""What a pull from a real docker-registry leaves open: its registry's client is closed once
idle (not while a download is in progress), the next pull opens a new one, and a plain-http
registry never loads the CA bundle. Registry and fault proxy on 127.0.0.1, per test."""

from __future__ import annotations

import asyncio
import gc
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runtime.service.content import FileContentStore
from runtime.service.images import RegistryClient, pull
from runtime.service.images import connections as conn
from tests.support import ociimage
from tests.support.faultproxy import FaultProxy
from tests.support.registry import Registry

pytestmark = pytest.mark.asyncio
IDLE = 0.3


@pytest.fixture
def registry() -> Iterator[Registry]:
    with Registry() as reg:
        yield reg


async def wait_for(cond: Callable[[], bool], *, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_idle_client_closed_then_a_new_pull_works(registry: Registry, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    img = ociimage.image()
    ociimage.push(registry.url, "busybox", "1", img)
    gc.collect()
    tls_asked: list[bool] = []
    real = conn.tls_context

    def spy(*, verify: bool) -> ssl.SSLContext:  # a context built and freed within the
        tls_asked.append(verify)                 # pull would not show in live_tls_contexts
        return real(verify=verify)

    monkeypatch.setattr(conn, "tls_context", spy)
    async with RegistryClient(idle_timeout=IDLE) as client:
        first = await pull(f"{registry.host}/busybox:1", client=client,
                           store=FileContentStore(tmp_path / "a"))
        assert first.downloaded_bytes > 0
        assert client.connections.open() == [registry.host]
        await wait_for(lambda: client.connections.open() == [])
        assert client.connections.closed_idle == 1
        again = await pull(f"{registry.host}/busybox:1", client=client,
                           store=FileContentStore(tmp_path / "b"))
        assert again.manifest_digest == first.manifest_digest
        assert again.downloaded_bytes == first.downloaded_bytes
        assert conn.live_tls_contexts() == 0  # http: no SSL context, no CA bundle
    assert tls_asked == []
    assert client.connections.open() == []


async def test_client_in_use_is_not_closed(registry: Registry, tmp_path: Path) -> None:
    img = ociimage.image()
    ociimage.push(registry.url, "busybox", "1", img)
    with FaultProxy(registry.url) as proxy:
        proxy.add(f"/blobs/{img.layers[0].digest}", "delay", seconds=6 * IDLE, times=1)
        async with RegistryClient(idle_timeout=IDLE) as client:
            task = asyncio.ensure_future(pull(f"{proxy.host}/busybox:1", client=client,
                                              store=FileContentStore(tmp_path / "c")))
            await wait_for(lambda: proxy.count("GET", "/blobs/") >= 2)  # config, layer
            await asyncio.sleep(3 * IDLE)  # the layer's answer is still delayed
            assert not task.done()
            assert client.connections.open() == [proxy.host]
            assert client.connections.in_use(proxy.host)
            assert client.connections.closed_idle == 0
            result = await task
            assert result.layers[0].digest == img.layers[0].digest
            await wait_for(lambda: client.connections.open() == [])
