"""Secrets at rest: AES-GCM round trips, refuses tampering, rotates keys."""

from __future__ import annotations

import asyncio

import pytest

from controlplane.storage import InMemoryStore
from controlplane.storage.encryption import (
    PREFIX,
    EncryptingStore,
    EncryptionConfig,
    reencrypt,
)
from controlplane.storage.errors import InvalidArgument, StorageError

K1 = ("k1", bytes(range(32)))
K2 = ("k2", bytes(range(1, 33)))
SECRET = "/registry/secrets/default/db"
CM = "/registry/configmaps/default/app"


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_secrets_are_ciphertext_inside_and_plain_outside() -> None:
    async def go() -> None:
        inner = InMemoryStore()
        s = EncryptingStore(inner, EncryptionConfig([K1]))
        await s.create(SECRET, b'{"data": {"password": "hunter2"}}')
        await s.create(CM, b"plain")
        raw, _ = await inner.get(SECRET)
        assert raw.startswith(PREFIX + b"k1:") and b"hunter2" not in raw
        assert (await inner.get(CM))[0] == b"plain"  # only secrets are encrypted
        assert (await s.get(SECRET))[0] == b'{"data": {"password": "hunter2"}}'
        page = await s.list("/registry/secrets/")
        assert [i.value for i in page.items] == [b'{"data": {"password": "hunter2"}}']
    run(go())


def test_ciphertext_is_bound_to_its_key_and_tamper_evident() -> None:
    async def go() -> None:
        inner = InMemoryStore()
        s = EncryptingStore(inner, EncryptionConfig([K1]))
        await s.create(SECRET, b"x")
        raw, _ = await inner.get(SECRET)
        await inner.create("/registry/secrets/default/copy", raw)
        with pytest.raises(StorageError, match="fails authentication"):
            await s.get("/registry/secrets/default/copy")
        tampered = raw[:-1] + bytes([raw[-1] ^ 1])
        await inner.update(SECRET, tampered, (await inner.get(SECRET))[1])
        with pytest.raises(StorageError, match="fails authentication"):
            await s.get(SECRET)
    run(go())


def test_rotation_rewrites_old_values_and_old_plaintext() -> None:
    async def go() -> None:
        inner = InMemoryStore()
        await inner.create("/registry/secrets/a/before", b"written before encryption")
        old = EncryptingStore(inner, EncryptionConfig([K1]))
        await old.create("/registry/secrets/a/s1", b"one")
        new = EncryptingStore(inner, EncryptionConfig([K2, K1]))
        assert (await new.get("/registry/secrets/a/s1"))[0] == b"one"  # old key still reads
        assert await reencrypt(new) == 2
        for key in ("/registry/secrets/a/s1", "/registry/secrets/a/before"):
            assert (await inner.get(key))[0].startswith(PREFIX + b"k2:")
        only_new = EncryptingStore(inner, EncryptionConfig([K2]))
        assert (await only_new.get("/registry/secrets/a/s1"))[0] == b"one"
        assert await reencrypt(only_new) == 0
        without = EncryptingStore(inner, EncryptionConfig([("k3", bytes(32))]))
        with pytest.raises(StorageError, match="key 'k2', which is not configured"):
            await without.get("/registry/secrets/a/s1")
    run(go())


@pytest.mark.parametrize("keys,words", [
    pytest.param([], "at least one key", id="none"),
    pytest.param([("k", b"short")], "16, 24 or 32 bytes, got 5", id="length"),
    pytest.param([("a:b", bytes(32))], "without ':'", id="name"),
])
def test_config_errors(keys: list[tuple[str, bytes]], words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        EncryptionConfig(keys)


def test_config_from_base64() -> None:
    with pytest.raises(InvalidArgument, match="not valid base64"):
        EncryptionConfig.from_base64([("k", "not base64!")])
    assert EncryptionConfig.from_base64([("k", "A" * 43 + "=")]).current == "k"  # 32 bytes
