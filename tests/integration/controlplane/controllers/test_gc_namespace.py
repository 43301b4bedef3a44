"""Garbage collection (background, foreground, orphan), adoption, and namespace deletion
over real etcd."""

from __future__ import annotations

from typing import Any

import pytest

from api import errors as e
from tests.integration.controlplane.controllers.conftest import Env, deployment, until

pytestmark = pytest.mark.asyncio
Obj = dict[str, Any]


async def count(env: Env, resource: str, namespace: str = "default") -> int:
    return len(await env.items(resource, namespace))


async def web_running(env: Env, n: int = 3, namespace: str = "default") -> None:
    async def ok() -> bool:
        return await count(env, "pods", namespace) == n and await count(
            env, "replicasets", namespace) == 1
    await until(ok, what=f"{n} pods and a ReplicaSet")


@pytest.mark.parametrize("policy", [
    pytest.param("Background", id="background"),
    pytest.param("Foreground", id="foreground"),
    pytest.param("", id="default-is-background"),
])
async def test_deleting_a_deployment_deletes_its_replicasets_and_pods(
        env: Env, policy: str) -> None:
    await env.client.create("deployments", deployment(), namespace="default")
    await web_running(env)
    await env.client.delete("deployments", "web", namespace="default", propagation=policy)

    async def all_gone() -> bool:
        try:
            d = await env.client.get("deployments", "web", namespace="default")
        except e.APIError as err:
            assert err.reason is e.Reason.NOT_FOUND
            d = None
        pods = await count(env, "pods")
        if policy == "Foreground":
            if d is not None:
                assert "foregroundDeletion" in d["metadata"]["finalizers"]
            else:  # the owner goes last
                assert pods == 0 and await count(env, "replicasets") == 0
        return d is None and pods == 0 and await count(env, "replicasets") == 0
    await until(all_gone, what="the deployment, its RS and pods to go")


async def test_orphan_deletion_keeps_the_replicaset_and_pods(env: Env) -> None:
    await env.client.create("deployments", deployment(), namespace="default")
    await web_running(env)
    await env.client.delete("deployments", "web", namespace="default", propagation="Orphan")

    async def deploy_gone() -> bool:
        try:
            await env.client.get("deployments", "web", namespace="default")
        except e.APIError as err:
            return err.reason is e.Reason.NOT_FOUND
        return False
    await until(deploy_gone, what="the orphaned deployment to go")
    (rs,) = await env.items("replicasets")
    assert not rs["metadata"].get("ownerReferences")
    pods = await env.items("pods")
    assert len(pods) == 3
    assert all(p["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]
               for p in pods)


async def test_foreground_deletion_removes_dependents_before_the_owner(env: Env) -> None:
    await env.client.create("deployments", deployment(replicas=2), namespace="default")
    await web_running(env, 2)
    (rs,) = await env.items("replicasets")
    await env.client.delete("replicasets", rs["metadata"]["name"], namespace="default",
                            propagation="Foreground")
    uid = rs["metadata"]["uid"]

    async def owned_pods() -> int:
        return len([p for p in await env.items("pods")
                    if p["metadata"]["ownerReferences"][0]["uid"] == uid])

    async def gone() -> bool:
        try:
            cur = await env.client.get("replicasets", rs["metadata"]["name"],
                                       namespace="default")
        except e.APIError as err:
            assert err.reason is e.Reason.NOT_FOUND
            cur = None
        if cur is None or cur["metadata"]["uid"] != uid:  # (the deployment makes another)
            assert await owned_pods() == 0  # its pods went first
            return True
        assert "foregroundDeletion" in cur["metadata"]["finalizers"]
        return False
    await until(gone, what="the RS to go")


async def test_replicaset_adopts_matching_orphans(env: Env) -> None:
    orphan = {"apiVersion": "v1", "kind": "Pod",
              "metadata": {"name": "stray", "labels": {"app": "db"}},
              "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}
    await env.client.create("pods", orphan, namespace="default")
    pods_cache = env.manager.informers.get("pods")

    async def cached() -> bool:  # the controller has seen the orphan before the RS
        return pods_cache.get("default/stray") is not None
    await until(cached, what="the orphan in the pod cache")
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "db"},
          "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "db"}},
                   "template": {"metadata": {"labels": {"app": "db"}},
                                "spec": {"containers": [{"name": "c",
                                                         "image": "busybox:1"}]}}}}
    created = await env.client.create("replicasets", rs, namespace="default")

    async def two_owned() -> bool:
        pods = await env.items("pods")
        return len(pods) == 2 and all(
            (p["metadata"].get("ownerReferences") or [{}])[0].get("uid")
            == created["metadata"]["uid"] for p in pods)
    await until(two_owned, what="the orphan adopted plus one new pod")
    names = {p["metadata"]["name"] for p in await env.items("pods")}
    assert "stray" in names
    # a pod relabelled out of the selector is released and replaced
    stray = await env.client.get("pods", "stray", namespace="default")
    stray["metadata"]["labels"] = {"app": "other"}
    await env.client.update("pods", stray, namespace="default")

    async def released() -> bool:
        cur = await env.client.get("pods", "stray", namespace="default")
        return not cur["metadata"].get("ownerReferences") and await count(
            env, "pods") == 3
    await until(released, what="the relabelled pod released and replaced")


async def test_deleting_a_namespace_removes_everything_then_the_namespace(env: Env) -> None:
    await env.client.create("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                           "metadata": {"name": "team"}})
    await env.client.create("deployments", deployment(), namespace="team")
    await env.client.create("configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                           "metadata": {"name": "cfg"}, "data": {"a": "1"}},
                            namespace="team")
    await web_running(env, 3, "team")
    await env.client.delete("namespaces", "team")
    ns = await env.client.get("namespaces", "team")
    assert ns["status"]["phase"] == "Terminating"

    async def ns_gone() -> bool:
        try:
            await env.client.get("namespaces", "team")
        except e.APIError as err:
            return err.reason is e.Reason.NOT_FOUND
        return False
    await until(ns_gone, what="the namespace to go")
    for res in ("pods", "replicasets", "deployments", "configmaps"):
        assert await count(env, res, "team") == 0, res
    assert await count(env, "pods", "default") == 0
