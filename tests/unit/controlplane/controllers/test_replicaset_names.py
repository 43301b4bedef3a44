"""Pod names from generateName: the prefix is cut to 58 so that names fit 63 characters,
in the API server and in the names the ReplicaSet controller chooses itself; and the
ReplicaSet controller over the real object service (in-memory store) with a long name."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from controlplane.apiserver.objects import ObjectService
from controlplane.apiserver.resources import RESOURCES
from controlplane.controllers import podutil as pu
from controlplane.controllers.controller import ControllerManager
from controlplane.controllers.replicaset import ReplicaSetController
from controlplane.local import LocalClient
from controlplane.storage import InMemoryStore

Obj = dict[str, Any]
SUFFIX = re.compile(r"^[bcdfghjklmnpqrstvwxz2456789]{5}$")
LONG = "a-deployment-whose-name-is-long-enough-to-matter-here-x"  # 55 characters


@pytest.mark.parametrize(("prefix", "kept"), [
    pytest.param("web-", "web-", id="short-prefix-kept"),
    pytest.param("p" * 58, "p" * 58, id="58-kept"),
    pytest.param("p" * 59, "p" * 58, id="59-cut-to-58"),
    pytest.param(LONG + "-7d9f8b6c5d-", (LONG + "-7d9f8b6c5d-")[:58], id="rs-of-long-deploy"),
])
def test_generate_name_cuts_the_prefix_to_fit_63(prefix: str, kept: str) -> None:
    name = pu.generate_name(prefix)
    assert name[:-5] == kept
    assert SUFFIX.match(name[-5:])
    assert len(name) <= 63


@pytest_asyncio.fixture
async def objects() -> AsyncIterator[ObjectService]:
    svc = ObjectService(InMemoryStore(), watch_cache=False)
    await svc.create(RESOURCES["namespaces"], {"apiVersion": "v1", "kind": "Namespace",
                                               "metadata": {"name": "default"}})
    yield svc


def pod(generate_name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": generate_name},
            "spec": {"containers": [{"name": "c", "image": "i"}]}}


@pytest.mark.asyncio
@pytest.mark.parametrize(("prefix", "length"), [
    pytest.param("web-", 9, id="short"),
    pytest.param("x" * 58, 63, id="58"),
    pytest.param("x" * 70 + "-", 63, id="70-cut"),
])
async def test_api_server_generate_name_fits_63(objects: ObjectService, prefix: str,
                                                length: int) -> None:
    made = await objects.create(RESOURCES["pods"], pod(prefix), namespace="default")
    name = made["metadata"]["name"]
    assert len(name) == length and name.startswith(prefix[:58])
    assert made["metadata"]["generateName"] == prefix  # kept as the user wrote it


def replica_set(name: str, replicas: int) -> Obj:
    labels = {"app": "long"}
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": "i"}]}}}}


@pytest.mark.asyncio
async def test_replica_set_of_a_long_deployment_makes_valid_pods(
        objects: ObjectService) -> None:
    client = LocalClient(objects, field_manager="test")
    rs_name = f"{LONG[:52]}-7d9f8b6c5d"  # 63: the longest valid name; +"-xxxxx" is not
    await client.create("replicasets", replica_set(rs_name, 3), namespace="default")
    async with ControllerManager(client, [ReplicaSetController]):
        for _ in range(200):
            pods = (await client.list("pods", namespace="default"))["items"]
            if len(pods) == 3:
                break
            await asyncio.sleep(0.02)
    names = sorted(p["metadata"]["name"] for p in pods)
    assert len(names) == 3
    for name in names:
        assert len(name) == 63 and name.startswith(f"{rs_name}-"[:58])
