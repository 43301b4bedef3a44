"""Deployments over real etcd: rollouts, scaling, history, Recreate, rollback, pause."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from typing import Any

import pytest

from controlplane.controllers import rollout as ro
from tests.integration.controlplane.controllers.conftest import Env, deployment, until

pytestmark = pytest.mark.asyncio
Obj = dict[str, Any]


def ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def image(obj: Obj) -> str:
    spec = obj["spec"]["template"]["spec"] if "template" in obj["spec"] else obj["spec"]
    return str(spec["containers"][0]["image"])


async def settled(env: Env, name: str, replicas: int, img: str) -> bool:
    d = await env.client.get("deployments", name, namespace="default")
    pods = await env.items("pods", label_selector=f"app={name}")
    st = d.get("status") or {}
    return (len(pods) == replicas and all(ready(p) and image(p) == img for p in pods)
            and st.get("observedGeneration") == d["metadata"]["generation"]
            and st.get("updatedReplicas") == replicas == st.get("availableReplicas")
            and st.get("replicas") == replicas)


async def set_image(env: Env, name: str, img: str) -> None:
    d = await env.client.get("deployments", name, namespace="default")
    d["spec"]["template"]["spec"]["containers"][0]["image"] = img
    await env.client.update("deployments", d, namespace="default")


async def test_deployment_of_five_reaches_five_ready_pods(env: Env) -> None:
    await env.client.create("deployments", deployment(replicas=5), namespace="default")
    await until(lambda: settled(env, "web", 5, "busybox:1"), what="5 ready pods")
    rses = await env.items("replicasets")
    assert len(rses) == 1
    rs = rses[0]
    h = rs["metadata"]["labels"][ro.HASH_LABEL]
    assert rs["metadata"]["name"] == f"web-{h}"
    assert rs["metadata"]["annotations"][ro.REVISION] == "1"
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", ro.HASH_LABEL: h}
    for pod in await env.items("pods"):
        assert pod["metadata"]["name"].startswith(f"web-{h}-")
        (ref,) = pod["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["uid"], ref["controller"], ref["blockOwnerDeletion"]) == (
            "ReplicaSet", rs["metadata"]["uid"], True, True)
    d = await env.client.get("deployments", "web", namespace="default")
    conds = {c["type"]: c for c in d["status"]["conditions"]}
    assert conds["Available"]["status"] == "True"
    assert conds["Available"]["reason"] == "MinimumReplicasAvailable"
    assert conds["Progressing"]["reason"] == "NewReplicaSetAvailable"
    assert d["metadata"]["annotations"][ro.REVISION] == "1"
    rs_status = (await env.client.get("replicasets", rs["metadata"]["name"],
                                      namespace="default"))["status"]
    assert rs_status["readyReplicas"] == rs_status["availableReplicas"] == 5
    assert rs_status["fullyLabeledReplicas"] == 5


@pytest.mark.parametrize(("replicas", "surge", "unavailable", "max_pods", "min_ready"), [
    pytest.param(4, "25%", "25%", 5, 3, id="defaults-of-4"),
    pytest.param(5, 2, 0, 7, 5, id="surge-only"),
    pytest.param(5, 0, 2, 5, 3, id="unavailable-only"),
])
async def test_rolling_update_stays_within_surge_and_unavailable(
        env: Env, replicas: int, surge: int | str, unavailable: int | str, max_pods: int,
        min_ready: int) -> None:
    strategy = {"type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}
    await env.client.create("deployments", deployment(replicas=replicas,
                                                      strategy=strategy),
                            namespace="default")
    await until(lambda: settled(env, "web", replicas, "busybox:1"))
    seen: dict[str, Obj] = {}
    worst = {"pods": 0, "ready": replicas}

    async def observe() -> None:
        listed = await env.client.list("pods", namespace="default")
        for p in listed["items"]:
            seen[p["metadata"]["name"]] = p
        async for ev in env.client.watch("pods", namespace="default",
                                         resource_version=listed["metadata"][
                                             "resourceVersion"]):
            pod = ev["object"]
            if ev["type"] == "DELETED" or pod["metadata"].get("deletionTimestamp"):
                seen.pop(pod["metadata"]["name"], None)
            else:
                seen[pod["metadata"]["name"]] = pod
            worst["pods"] = max(worst["pods"], len(seen))
            worst["ready"] = min(worst["ready"], sum(1 for p in seen.values() if ready(p)))

    watcher = asyncio.create_task(observe())
    await asyncio.sleep(0.1)
    await set_image(env, "web", "busybox:2")
    await until(lambda: settled(env, "web", replicas, "busybox:2"), what="the rollout")
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    assert worst["pods"] <= max_pods
    assert worst["ready"] >= min_ready
    assert worst["pods"] > replicas or worst["ready"] < replicas  # it did roll
    rses = {r["metadata"]["annotations"][ro.REVISION]: r for r in await env.items(
        "replicasets")}
    assert sorted(rses) == ["1", "2"]
    assert rses["1"]["spec"]["replicas"] == 0
    assert image(rses["2"]["spec"]["template"]) == "busybox:2"


async def test_scale_up_and_down(env: Env) -> None:
    await env.client.create("deployments", deployment(replicas=2), namespace="default")
    await until(lambda: settled(env, "web", 2, "busybox:1"))
    for n in (6, 1, 0, 3):
        d = await env.client.get("deployments", "web", namespace="default")
        d["spec"]["replicas"] = n
        await env.client.update("deployments", d, namespace="default")
        await until(lambda n=n: settled(env, "web", n, "busybox:1"),  # type: ignore[misc]
                    what=f"{n} replicas")
    assert len(await env.items("replicasets")) == 1


async def test_revision_history_limit_deletes_oldest(env: Env) -> None:
    await env.client.create("deployments", deployment(replicas=1, revisionHistoryLimit=1),
                            namespace="default")
    for v in range(2, 5):
        await until(lambda v=v: settled(env, "web", 1, f"busybox:{v - 1}"))  # type: ignore[misc]
        await set_image(env, "web", f"busybox:{v}")
    await until(lambda: settled(env, "web", 1, "busybox:4"))

    async def two_left() -> bool:
        return len(await env.items("replicasets")) == 2
    await until(two_left, what="history cleaned to 1 old RS")
    revs = sorted(r["metadata"]["annotations"][ro.REVISION]
                  for r in await env.items("replicasets"))
    assert revs == ["3", "4"]


async def test_recreate_never_mixes_old_and_new_pods(env: Env) -> None:
    await env.client.create("deployments", deployment(replicas=3,
                                                      strategy={"type": "Recreate"}),
                            namespace="default")
    await until(lambda: settled(env, "web", 3, "busybox:1"))
    mixed = []

    async def observe() -> None:
        live: dict[str, str] = {}
        async for ev in env.client.watch("pods", namespace="default"):
            pod = ev["object"]
            if ev["type"] == "DELETED":
                live.pop(pod["metadata"]["name"], None)
            else:
                live[pod["metadata"]["name"]] = image(pod)
            if len(set(live.values())) > 1:
                mixed.append(dict(live))

    watcher = asyncio.create_task(observe())
    await asyncio.sleep(0.05)
    await set_image(env, "web", "busybox:2")
    await until(lambda: settled(env, "web", 3, "busybox:2"))
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    assert mixed == []


async def test_rollback_by_copying_the_old_template(env: Env) -> None:
    await env.client.create("deployments", deployment(replicas=2), namespace="default")
    await until(lambda: settled(env, "web", 2, "busybox:1"))
    await set_image(env, "web", "busybox:2")
    await until(lambda: settled(env, "web", 2, "busybox:2"))
    old = next(r for r in await env.items("replicasets")
               if r["metadata"]["annotations"][ro.REVISION] == "1")
    d = await env.client.get("deployments", "web", namespace="default")
    template = copy.deepcopy(old["spec"]["template"])
    del template["metadata"]["labels"][ro.HASH_LABEL]
    d["spec"]["template"] = template  # what `clusterctl rollout undo` does
    await env.client.update("deployments", d, namespace="default")
    await until(lambda: settled(env, "web", 2, "busybox:1"), what="the rollback")
    rses = await env.items("replicasets")
    assert len(rses) == 2  # the old RS came back; no third one
    back = next(r for r in rses if r["metadata"]["uid"] == old["metadata"]["uid"])
    assert back["metadata"]["annotations"][ro.REVISION] == "3"
    assert back["spec"]["replicas"] == 2
    d = await env.client.get("deployments", "web", namespace="default")
    assert d["metadata"]["annotations"][ro.REVISION] == "3"


async def test_pause_holds_template_changes_until_resume(env: Env) -> None:
    await env.client.create("deployments", deployment(replicas=2), namespace="default")
    await until(lambda: settled(env, "web", 2, "busybox:1"))
    d = await env.client.get("deployments", "web", namespace="default")
    d["spec"]["paused"] = True
    d["spec"]["template"]["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/restartedAt": "2030-01-01T00:00:00Z"}
    await env.client.update("deployments", d, namespace="default")

    async def paused_seen() -> bool:
        d = await env.client.get("deployments", "web", namespace="default")
        conds = {c["type"]: c for c in (d.get("status") or {}).get("conditions") or []}
        return bool(conds.get("Progressing", {}).get("reason") == "DeploymentPaused")
    await until(paused_seen, what="the DeploymentPaused condition")
    await asyncio.sleep(0.2)
    assert len(await env.items("replicasets")) == 1
    d = await env.client.get("deployments", "web", namespace="default")
    d["spec"]["paused"] = False
    await env.client.update("deployments", d, namespace="default")

    async def restarted() -> bool:
        pods = await env.items("pods")
        return len(pods) == 2 and all(
            (p["metadata"].get("annotations") or {}).get("kubectl.kubernetes.io/restartedAt")
            and ready(p) for p in pods)
    await until(restarted, what="the restart to roll out")
    assert len(await env.items("replicasets")) == 2
