"""Pulls through a fault proxy in front of a real docker-registry: retries, resumes,
timeouts and verification against real faults on a real connection."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from runtime.service.content import FileContentStore
from runtime.service.images import (
    BlobMismatch,
    PullTimeout,
    RegistryClient,
    RegistryError,
    RegistryUnavailable,
    RetryPolicy,
    pull,
)
from tests.support import ociimage
from tests.support.faultproxy import FaultProxy
from tests.support.registry import Registry

pytestmark = pytest.mark.asyncio
FAST = RetryPolicy(attempts=4, base_delay=0.05, max_delay=0.2)


@dataclass
class Env:
    registry: Registry
    proxy: FaultProxy
    store: FileContentStore
    img: ociimage.Image

    @property
    def ref(self) -> str:
        return f"{self.proxy.host}/busybox:1"

    @property
    def layer(self) -> ociimage.Blob:
        return self.img.layers[0]

    def layer_gets(self) -> int:
        return self.proxy.count("GET", f"/blobs/{self.layer.digest}")

    def assert_clean_failure(self) -> None:
        """No ingest left, and nothing of the image committed but the verified config."""
        assert self.store.ingests() == []
        assert os.listdir(os.path.join(self.store.root, "ingest")) == []
        committed = {i.digest for i in self.store.walk()}
        assert committed <= {self.img.config.digest}
        for d in committed:
            assert self.store.read(d) == self.img.config.data


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    img = ociimage.image()
    with Registry() as reg, FaultProxy(reg.url) as proxy:
        ociimage.push(reg.url, "busybox", "1", img)
        yield Env(reg, proxy, FileContentStore(tmp_path / "content"), img)


async def test_429_with_retry_after_then_success(env: Env) -> None:
    env.proxy.add("/blobs/sha256", "status", status=429, retry_after=1, times=1)
    t0 = time.monotonic()
    async with RegistryClient(retry=FAST) as client:
        result = await pull(env.ref, store=env.store, client=client)
    assert time.monotonic() - t0 >= 0.9  # Retry-After: 1 was honoured, not the 50 ms backoff
    assert result.manifest_digest == env.img.manifest.digest
    assert env.store.read(env.layer.digest) == env.layer.data


@pytest.mark.parametrize("target", [pytest.param("/blobs/", id="blob"),
                                    pytest.param("/manifests/", id="manifest")])
async def test_500_then_success(env: Env, target: str) -> None:
    env.proxy.add(target, "status", method=None, status=500, times=2)
    async with RegistryClient(retry=FAST) as client:
        result = await pull(env.ref, store=env.store, client=client)
    assert result.manifest_digest == env.img.manifest.digest
    assert env.store.read(env.layer.digest) == env.layer.data
    assert env.store.ingests() == []


async def test_500_every_time_gives_up(env: Env) -> None:
    env.proxy.add(f"/blobs/{env.layer.digest}", "status", status=503)
    async with RegistryClient(retry=FAST) as client:
        with pytest.raises(RegistryUnavailable) as e:
            await pull(env.ref, store=env.store, client=client)
    assert str(e.value) == (f"pull {env.ref}: layer {env.layer.digest[:19]}…: 503 Service"
                            f" Unavailable from {env.proxy.host} (gave up after 4 attempts)")
    assert env.layer_gets() == 4
    env.assert_clean_failure()


async def test_4xx_is_not_retried(env: Env) -> None:
    env.proxy.add(f"/blobs/{env.layer.digest}", "status", status=400)
    async with RegistryClient(retry=FAST) as client:
        with pytest.raises(RegistryError, match="400 Bad Request: injected fault"):
            await pull(env.ref, store=env.store, client=client)
    assert env.layer_gets() == 1
    env.assert_clean_failure()


async def test_reset_mid_blob_resumes_with_range(env: Env) -> None:
    env.proxy.add(f"/blobs/{env.layer.digest}", "reset", after_bytes=300_000, times=1)
    async with RegistryClient(retry=FAST) as client:
        result = await pull(env.ref, store=env.store, client=client)
    assert env.layer_gets() == 2
    assert env.store.read(env.layer.digest) == env.layer.data
    # resumed at the offset it had reached: no byte of the layer was fetched twice
    assert result.downloaded_bytes == env.img.config.size + env.layer.size
    assert env.store.ingests() == []


async def test_stall_times_out(env: Env) -> None:
    env.proxy.add(f"/blobs/{env.layer.digest}", "stall", after_bytes=100_000, seconds=10)
    t0 = time.monotonic()
    async with RegistryClient(retry=RetryPolicy(attempts=2, base_delay=0.05),
                              stall_timeout=0.3) as client:
        with pytest.raises(PullTimeout) as e:
            await pull(env.ref, store=env.store, client=client)
    assert time.monotonic() - t0 < 5
    assert str(e.value) == (f"pull {env.ref}: layer {env.layer.digest[:19]}…: stalled: no data"
                            " for 0.3 s (gave up after 2 attempts)")
    env.assert_clean_failure()


async def test_corrupted_blob_is_a_digest_mismatch_and_not_committed(env: Env) -> None:
    env.proxy.add(f"/blobs/{env.layer.digest}", "corrupt")
    async with RegistryClient(retry=FAST) as client:
        with pytest.raises(BlobMismatch) as e:
            await pull(env.ref, store=env.store, client=client)
    msg = str(e.value)
    assert msg.startswith(f"pull {env.ref}: layer {env.layer.digest[:19]}…: digest mismatch"
                          " (got sha256:")
    assert not env.store.exists(env.layer.digest)
    assert not env.store.exists(env.img.manifest.digest)
    env.assert_clean_failure()


async def test_truncated_blob_is_a_size_mismatch(env: Env) -> None:
    env.proxy.add(f"/blobs/{env.layer.digest}", "truncate", after_bytes=1000)
    async with RegistryClient(retry=FAST) as client:
        with pytest.raises(BlobMismatch) as e:
            await pull(env.ref, store=env.store, client=client)
    assert str(e.value) == (f"pull {env.ref}: layer {env.layer.digest[:19]}…: size mismatch:"
                            f" expected {env.layer.size} bytes, got 1000")
    env.assert_clean_failure()


async def test_corrupted_manifest_by_digest_is_refused(env: Env) -> None:
    env.proxy.add("/manifests/sha256:", "corrupt")
    ref = f"{env.proxy.host}/busybox@{env.img.manifest.digest}"
    async with RegistryClient(retry=FAST) as client:
        with pytest.raises(BlobMismatch, match=r"manifest sha256:\w{12}…: digest mismatch"):
            await pull(ref, store=env.store, client=client)
    assert list(env.store.walk()) == []
