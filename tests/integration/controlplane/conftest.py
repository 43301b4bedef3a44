"""A real etcd for the controlplane integration tests: one per session (~0.4 s to start),
emptied before each test that asks for it; stopped and its data dir removed at the end."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
import pytest_asyncio
from pyetcd import etcdrpc as rpc

from controlplane.storage import EtcdStore, InMemoryStore, Store
from tests.support.etcd import EtcdServer


@pytest.fixture(scope="session")
def etcd_server(request: pytest.FixtureRequest) -> EtcdServer:
    server = EtcdServer()
    request.addfinalizer(server.cleanup)  # runs even if start() fails half way
    return server.start()


@pytest.fixture
def etcd_endpoint(etcd_server: EtcdServer) -> Iterator[str]:
    """The session etcd with every key deleted, so tests do not see each other's data."""
    if etcd_server.proc is None:  # a test stopped it: bring it back
        etcd_server.start()
    with grpc.insecure_channel(etcd_server.endpoint.removeprefix("http://")) as channel:
        rpc.KVStub(channel).DeleteRange(rpc.DeleteRangeRequest(key=b"\0", range_end=b"\0"),
                                        timeout=5)
    yield etcd_server.endpoint


@pytest_asyncio.fixture(params=["memory", "etcd"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """Each Store implementation in turn: the conformance suite runs once per kind."""
    s: Store
    if request.param == "memory":
        s = InMemoryStore()
    else:
        s = EtcdStore([request.getfixturevalue("etcd_endpoint")])
    try:
        yield s
    finally:
        await s.close()
