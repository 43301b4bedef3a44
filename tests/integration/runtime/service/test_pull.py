"""Pulls from a real docker-registry (distribution 2.8): formats, auth, errors, sharing.

Each test starts its own registry (and token server / fault proxy) on 127.0.0.1, pushes
images built from /bin/busybox, pulls them into a FileContentStore and stops everything.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.service.content import FileContentStore, MemoryContentStore
from runtime.service.images import (
    NoSpace,
    NotFound,
    Platform,
    PlatformNotFound,
    PullResult,
    RegistryClient,
    RetryPolicy,
    Unauthorized,
    UnsupportedMediaType,
    pull,
)
from tests.support import ociimage
from tests.support.faultproxy import FaultProxy
from tests.support.registry import Registry
from tests.support.tokenserver import TokenServer

pytestmark = pytest.mark.asyncio
FAST = RetryPolicy(attempts=4, base_delay=0.05, max_delay=0.2)


@pytest.fixture
def store(tmp_path: Path) -> FileContentStore:
    return FileContentStore(tmp_path / "content")


@pytest.fixture
def registry() -> Iterator[Registry]:
    with Registry() as reg:
        yield reg


def assert_stored(store: FileContentStore, result: PullResult, img: ociimage.Image) -> None:
    assert result.manifest_digest == img.manifest.digest
    assert result.config_digest == img.config.digest
    assert [(x.digest, x.media_type, x.size) for x in result.layers] == [
        (b.digest, b.media_type, b.size) for b in img.layers]
    for blob in (img.manifest, img.config, *img.layers):
        assert store.read(blob.digest) == blob.data
    labels = store.info(img.manifest.digest).labels
    assert labels["containerd.io/gc.ref.content.config"] == img.config.digest
    for i, layer in enumerate(img.layers):
        assert labels[f"containerd.io/gc.ref.content.l.{i}"] == layer.digest
    assert_no_ingest(store)


def assert_no_ingest(store: FileContentStore) -> None:
    assert store.ingests() == []
    assert os.listdir(os.path.join(store.root, "ingest")) == []


@pytest.mark.parametrize(
    ("compression", "media_type"),
    [pytest.param("gzip", ociimage.OCI_LAYER_GZIP, id="gzip"),
     pytest.param("none", ociimage.OCI_LAYER, id="uncompressed")],
)
async def test_anonymous_pull(registry: Registry, store: FileContentStore, compression: str,
                              media_type: str) -> None:
    img = ociimage.image(compression=compression)
    ociimage.push(registry.url, "lib/busybox", "1", img)
    async with RegistryClient() as client:
        result = await pull(f"{registry.host}/lib/busybox:1", store=store, client=client)
        assert result.name == f"{registry.host}/lib/busybox:1"
        assert result.layers[0].media_type == media_type
        assert result.digest == img.manifest.digest
        assert result.downloaded_bytes == img.config.size + img.layers[0].size
        assert result.total_bytes == sum(b.size for b in (img.manifest, *img.blobs))
        assert_stored(store, result, img)
        again = await pull(f"{registry.host}/lib/busybox@{img.manifest.digest}", store=store,
                           client=client)
        assert again.downloaded_bytes == 0 and again.manifest_digest == img.manifest.digest


async def test_docker_schema2_manifest(registry: Registry, store: FileContentStore) -> None:
    img = ociimage.image(docker=True)
    ociimage.push(registry.url, "docker", "v2", img)
    async with RegistryClient() as client:
        result = await pull(f"{registry.host}/docker:v2", store=store, client=client)
    assert result.media_type == ociimage.DOCKER_MANIFEST
    assert result.layers[0].media_type == ociimage.DOCKER_LAYER_GZIP
    assert_stored(store, result, img)


@pytest.mark.parametrize("platform", [pytest.param("linux/amd64", id="amd64"),
                                      pytest.param("linux/arm64", id="arm64")])
async def test_index_selects_the_platform(registry: Registry, store: FileContentStore,
                                          platform: str) -> None:
    idx = ociimage.index()
    ociimage.push(registry.url, "multi", "1", idx)
    async with RegistryClient() as client:
        result = await pull(f"{registry.host}/multi:1", store=store, client=client,
                            platform=Platform.parse(platform))
    img = idx.images[platform]
    assert result.digest == idx.index.digest and result.media_type == ociimage.OCI_INDEX
    assert_stored(store, result, img)
    position = list(idx.images).index(platform)
    assert store.info(idx.index.digest).labels == {
        f"containerd.io/gc.ref.content.m.{position}": img.manifest.digest}
    other = next(i for p, i in idx.images.items() if p != platform)
    assert not store.exists(other.manifest.digest) and not store.exists(other.config.digest)


async def test_index_without_the_platform(registry: Registry, store: FileContentStore) -> None:
    ociimage.push(registry.url, "multi", "1", ociimage.index(platforms=("linux/arm64",)))
    ref = f"{registry.host}/multi:1"
    async with RegistryClient() as client:
        with pytest.raises(PlatformNotFound) as e:
            await pull(ref, store=store, client=client)
    assert str(e.value).startswith(f"pull {ref}: no manifest for platform linux/amd64 in index")
    assert list(store.walk()) == []


async def test_unknown_manifest_is_404(registry: Registry, store: FileContentStore) -> None:
    ociimage.push(registry.url, "busybox", "1", ociimage.image())
    ref = f"{registry.host}/busybox:nope"
    async with RegistryClient(retry=FAST) as client:
        with pytest.raises(NotFound) as e:
            await pull(ref, store=store, client=client)
    assert str(e.value) == f"pull {ref}: manifest nope: manifest unknown (404)"


async def test_unknown_layer_media_type_is_refused_before_download(
        registry: Registry, store: FileContentStore) -> None:
    img = ociimage.image(layer_media_type="application/vnd.foo")
    ociimage.push(registry.url, "weird", "1", img)
    ref = f"{registry.host}/weird:1"
    with FaultProxy(registry.url) as proxy:
        async with RegistryClient() as client:
            with pytest.raises(UnsupportedMediaType) as e:
                await pull(f"{proxy.host}/weird:1", store=store, client=client)
        assert proxy.count("GET", "/blobs/") == 0
    assert "unsupported media type application/vnd.foo" in str(e.value)
    assert f"layer {img.layers[0].digest[:19]}…" in str(e.value)
    assert ref.split("/", 1)[1] in str(e.value)
    assert list(store.walk()) == []


async def test_unknown_manifest_media_type(registry: Registry, store: FileContentStore) -> None:
    ociimage.push(registry.url, "busybox", "1", ociimage.image())
    with FaultProxy(registry.url) as proxy:
        proxy.add("/manifests/", "content_type", method=None, content_type="application/vnd.foo")
        ref = f"{proxy.host}/busybox:1"
        async with RegistryClient() as client:
            with pytest.raises(UnsupportedMediaType) as e:
                await pull(ref, store=store, client=client)
    assert str(e.value).startswith(f"pull {ref}: manifest sha256:")
    assert str(e.value).endswith("unsupported media type application/vnd.foo")
    assert list(store.walk()) == []


# ---- auth ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "error"),
    [pytest.param("s3cret", None, id="right-password"),
     pytest.param("wrong", "401 Unauthorized: credentials rejected by {host}", id="wrong"),
     pytest.param(None, "401 Unauthorized: {host} requires credentials (none configured)",
                  id="none")],
)
async def test_htpasswd_basic_auth(store: FileContentStore, password: str | None,
                                   error: str | None) -> None:
    img = ociimage.image()
    with Registry(htpasswd={"alice": "s3cret"}) as reg:
        ociimage.push(reg.url, "private/busybox", "1", img, auth=("alice", "s3cret"))
        ref = f"{reg.host}/private/busybox:1"
        creds = {reg.host: ("alice", password)} if password else {}
        async with RegistryClient(credentials=creds, retry=FAST) as client:
            if error is None:
                assert_stored(store, await pull(ref, store=store, client=client), img)
                return
            with pytest.raises(Unauthorized) as e:
                await pull(ref, store=store, client=client)
    assert str(e.value) == f"pull {ref}: " + error.format(host=reg.host)
    assert list(store.walk()) == []


async def test_bearer_token_flow(store: FileContentStore) -> None:
    img = ociimage.image()
    with TokenServer(users={"alice": "s3cret"}) as ts, Registry(token_server=ts) as reg:
        ociimage.push(reg.url, "busybox", "1", img, auth=("alice", "s3cret"))
        ts.requests.clear()
        ref, realm = f"{reg.host}/busybox:1", ts.realm
        async with RegistryClient(credentials={reg.host: ("alice", "s3cret")}) as client:
            assert_stored(store, await pull(ref, store=store, client=client), img)
            assert ts.requests == [("alice", ["repository:busybox:pull"])]
            await pull(ref, store=store, client=client)
            assert len(ts.requests) == 1  # the token is cached for its scope
        async with RegistryClient(credentials={reg.host: ("alice", "wrong")}) as client:
            with pytest.raises(Unauthorized) as e:
                await pull(ref, store=store, client=client)
    assert str(e.value) == (f"pull {ref}: 401 Unauthorized: credentials rejected by token"
                            f" server {realm}")


# ---- sharing and local failures ------------------------------------------------------------


async def test_concurrent_pulls_share_each_download(registry: Registry,
                                                    store: FileContentStore) -> None:
    img = ociimage.image()
    ociimage.push(registry.url, "busybox", "1", img)
    ociimage.push(registry.url, "busybox", "2", img)
    with FaultProxy(registry.url) as proxy:
        # a slow layer: the second pull surely finds the first one's download in flight
        proxy.add(f"/blobs/{img.layers[0].digest}", "delay", seconds=0.5)
        async with RegistryClient() as client:
            a, b = await asyncio.gather(
                pull(f"{proxy.host}/busybox:1", store=store, client=client),
                pull(f"{proxy.host}/busybox:2", store=store, client=client))
        for blob in img.blobs:
            assert proxy.count("GET", f"/blobs/{blob.digest}") == 1
    assert a.manifest_digest == b.manifest_digest == img.manifest.digest
    assert a.downloaded_bytes + b.downloaded_bytes == img.config.size + img.layers[0].size
    assert sorted([a.downloaded_bytes, b.downloaded_bytes])[0] < img.layers[0].size
    assert_stored(store, a, img)


async def test_enospc_is_a_clear_error_and_leaves_nothing(registry: Registry) -> None:
    img = ociimage.image()
    ociimage.push(registry.url, "busybox", "1", img)
    store = MemoryContentStore(capacity=img.layers[0].size // 2)
    ref = f"{registry.host}/busybox:1"
    async with RegistryClient() as client:
        with pytest.raises(NoSpace) as e:
            await pull(ref, store=store, client=client)
    assert str(e.value) == (f"pull {ref}: layer {img.layers[0].digest[:19]}…: no space left on"
                            " device writing to the content store")
    assert store.ingests() == []
    assert not store.exists(img.layers[0].digest) and not store.exists(img.manifest.digest)
