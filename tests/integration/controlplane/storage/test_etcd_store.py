"""EtcdStore behaviour that only a real etcd shows: outages, recovery, several members.

These tests run their own etcd (they kill it), not the shared session one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import aclosing

import pytest

from controlplane.storage import EtcdStore, EventType, Unavailable
from tests.support.etcd import EtcdCluster, EtcdServer

pytestmark = pytest.mark.asyncio

KEY = "/registry/pods/ns1/a"


@pytest.fixture
def own_etcd(request: pytest.FixtureRequest) -> Iterator[EtcdServer]:
    server = EtcdServer()
    request.addfinalizer(server.cleanup)
    yield server.start()


async def test_dead_etcd_is_unavailable_quickly_and_the_store_recovers(
        own_etcd: EtcdServer) -> None:
    async with EtcdStore([own_etcd.endpoint], timeout=2) as store:
        rev = await store.create(KEY, b"v1")
        own_etcd.kill()
        for call in (store.get(KEY), store.create("/registry/pods/ns1/b", b"x"),
                     store.list("/registry/pods/")):
            started = time.monotonic()
            with pytest.raises(Unavailable, match="retry") as info:
                await call
            assert time.monotonic() - started < 3
            assert own_etcd.endpoint.removeprefix("http://") in str(info.value)
        own_etcd.start()  # same ports, same data
        deadline = time.monotonic() + 10
        while True:  # the same store object, no reconnect by the caller
            try:
                assert await store.get(KEY) == (b"v1", rev)
                break
            except Unavailable:
                assert time.monotonic() < deadline, "store did not recover within 10 s"
                await asyncio.sleep(0.2)


async def test_watch_reports_unavailable_when_etcd_dies(own_etcd: EtcdServer) -> None:
    async with EtcdStore([own_etcd.endpoint]) as store:
        rev = await store.create(KEY, b"v1")
        async with aclosing(store.watch("/registry/pods/", from_revision=rev - 1)) as events:
            assert (await anext(events)).type is EventType.ADDED
            own_etcd.kill()
            with pytest.raises(Unavailable, match="retry"):
                async with asyncio.timeout(15):
                    await anext(events)


async def test_three_member_cluster_survives_one_member() -> None:
    with EtcdCluster(3) as cluster:
        async with EtcdStore(cluster.endpoints) as store:
            rev = await store.create(KEY, b"v1")
            cluster.members[0].stop()
            deadline = time.monotonic() + 10
            while True:  # a leader election may be in progress
                try:
                    rev = await store.update(KEY, b"v2", rev)
                    break
                except Unavailable:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.2)
            assert await store.get(KEY) == (b"v2", rev)
