"""Secrets encrypted at rest: AES-GCM between the API and etcd, with key rotation.

    EncryptingStore(inner, EncryptionConfig([...]))      a Store that wraps another

Values under the encrypted prefixes (Secrets by default) are stored as

    corral:enc:aesgcm:v1:<key name>:<12-byte nonce><ciphertext + 16-byte tag>

with the etcd key as authenticated data, so a ciphertext copied to another key does not
decrypt. Writes use the first configured key; reads accept any configured key, and plain
values written before encryption was turned on. `reencrypt()` rewrites every value not
yet under the first key (compare-and-swap, so a concurrent write is never lost): add the
new key first in the list, restart, reencrypt, then drop the old key.
"""

from __future__ import annotations

import base64
import dataclasses
import os
from collections.abc import AsyncIterator, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from controlplane.storage.errors import Conflict, InvalidArgument, NotFound, StorageError
from controlplane.storage.forwarding import ForwardingStore
from controlplane.storage.interface import Event, Fence, ListResult, Store, Write

PREFIX = b"corral:enc:aesgcm:v1:"
SECRETS = "/registry/secrets/"


class EncryptionConfig:
    """Named AES keys (16, 24 or 32 bytes); the first one encrypts new writes."""

    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        if not keys:
            raise InvalidArgument("encryption: at least one key is needed")
        for name, secret in keys:
            if not name or ":" in name or not name.isprintable():
                raise InvalidArgument(f"encryption key name {name!r}: must be non-empty, "
                                      "printable and without ':'")
            if len(secret) not in (16, 24, 32):
                raise InvalidArgument(f"encryption key {name!r}: must be 16, 24 or 32 bytes, "
                                      f"got {len(secret)}")
        self.keys = {name: AESGCM(secret) for name, secret in keys}
        self.current = keys[0][0]

    @classmethod
    def from_base64(cls, keys: list[tuple[str, str]]) -> EncryptionConfig:
        """Keys as a config file holds them: (name, base64 secret)."""
        decoded = []
        for name, text in keys:
            try:
                decoded.append((name, base64.b64decode(text, validate=True)))
            except ValueError:
                raise InvalidArgument(f"encryption key {name!r}: not valid base64") from None
        return cls(decoded)

    def encrypt(self, key: str, plaintext: bytes) -> bytes:
        nonce = os.urandom(12)
        sealed = self.keys[self.current].encrypt(nonce, plaintext, key.encode())
        return PREFIX + self.current.encode() + b":" + nonce + sealed

    def decrypt(self, key: str, stored: bytes) -> bytes:
        if not stored.startswith(PREFIX):
            return stored  # written before encryption was enabled
        name, sep, rest = stored[len(PREFIX):].partition(b":")
        aead = self.keys.get(name.decode(errors="replace"))
        if not sep or aead is None:
            raise StorageError(f"{key}: encrypted with key {name.decode(errors='replace')!r}, "
                               "which is not configured")
        try:
            return aead.decrypt(rest[:12], rest[12:], key.encode())
        except InvalidTag:
            raise StorageError(f"{key}: stored value fails authentication (tampered, or "
                               "moved from another key)") from None

    def is_current(self, stored: bytes) -> bool:
        return stored.startswith(PREFIX + self.current.encode() + b":")


class EncryptingStore(ForwardingStore):
    """A Store that encrypts values under PREFIXES on their way into INNER."""

    def __init__(self, inner: Store, config: EncryptionConfig,
                 prefixes: tuple[str, ...] = (SECRETS,)) -> None:
        super().__init__(inner)
        self.config = config
        self.prefixes = prefixes

    def _covered(self, key: str) -> bool:
        return key.startswith(self.prefixes)

    def _seal(self, key: str, value: bytes) -> bytes:
        return self.config.encrypt(key, value) if self._covered(key) else value

    def _open(self, key: str, value: bytes) -> bytes:
        return self.config.decrypt(key, value) if self._covered(key) else value

    async def create(self, key: str, value: bytes) -> int:
        return await self.inner.create(key, self._seal(key, value))

    async def get(self, key: str) -> tuple[bytes, int]:
        value, rev = await self.inner.get(key)
        return self._open(key, value), rev

    async def update(self, key: str, value: bytes, expected_revision: int) -> int:
        return await self.inner.update(key, self._seal(key, value), expected_revision)

    async def delete(self, key: str, expected_revision: int | None = None) -> int:
        return await self.inner.delete(key, expected_revision)

    async def list(self, prefix: str, *, limit: int = 0, continue_token: str | None = None,
                   revision: int | None = None) -> ListResult:
        page = await self.inner.list(prefix, limit=limit, continue_token=continue_token,
                                     revision=revision)
        items = [type(i)(i.key, self._open(i.key, i.value), i.mod_revision)
                 for i in page.items]
        return ListResult(items, page.revision, page.continue_token)

    async def watch(self, prefix: str, *, from_revision: int,
                    bookmark_interval: float | None = None) -> AsyncIterator[Event]:
        async for ev in self.inner.watch(prefix, from_revision=from_revision,
                                         bookmark_interval=bookmark_interval):
            if ev.key and self._covered(ev.key):
                ev = Event(ev.type, ev.key, self._open(ev.key, ev.value), ev.revision,
                           None if ev.prev_value is None else self._open(ev.key,
                                                                          ev.prev_value))
            yield ev

    async def commit(self, writes: Sequence[Write], *, fence: Fence | None = None) -> int:
        sealed = [w if w.value is None else dataclasses.replace(w, value=self._seal(w.key,
                                                                                    w.value))
                  for w in writes]
        return await self.inner.commit(sealed, fence=fence)



async def reencrypt(store: EncryptingStore, prefix: str = SECRETS, *,
                    page: int = 100) -> int:
    """Rewrite every value under PREFIX that is not under the current key; returns how
    many were rewritten. A value changed meanwhile is left to the writer that changed
    it (its write used the current key)."""
    rewritten = 0
    token: str | None = None
    while True:
        result = await store.inner.list(prefix, limit=page, continue_token=token)
        for item in result.items:
            if store.config.is_current(item.value):
                continue
            plain = store.config.decrypt(item.key, item.value)
            try:
                await store.inner.update(item.key, store.config.encrypt(item.key, plain),
                                         item.mod_revision)
                rewritten += 1
            except (Conflict, NotFound):  # changed or deleted meanwhile
                pass
        token = result.continue_token
        if token is None:
            return rewritten
