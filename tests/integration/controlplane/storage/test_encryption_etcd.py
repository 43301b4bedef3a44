"""On a real etcd, `etcdctl get` of a Secret shows ciphertext."""

from __future__ import annotations

import subprocess

import pytest

from controlplane.storage import EtcdStore
from controlplane.storage.encryption import EncryptingStore, EncryptionConfig

pytestmark = pytest.mark.asyncio


async def test_etcdctl_sees_ciphertext(etcd_endpoint: str) -> None:
    store = EncryptingStore(EtcdStore([etcd_endpoint]),
                            EncryptionConfig([("k1", bytes(range(32)))]))
    try:
        await store.create("/registry/secrets/default/db", b'{"password": "hunter2"}')
        assert (await store.get("/registry/secrets/default/db"))[0] == \
            b'{"password": "hunter2"}'
    finally:
        await store.close()
    out = subprocess.run(["etcdctl", "--endpoints", etcd_endpoint, "get",
                          "/registry/secrets/default/db", "--print-value-only"],
                         capture_output=True, env={"ETCDCTL_API": "3"}, check=True).stdout
    assert out.startswith(b"corral:enc:aesgcm:v1:k1:") and b"hunter2" not in out
