"""A real corral-controlplane (leader: scheduler and controllers) runs a CronJob on the
real clock: the next minute boundary brings a Job, the scheduler binds its pod, the fake
node agent runs it, and when the pod succeeds the CronJob records the success. Up to ~70 s:
the first run waits for the next whole minute."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from api import errors as e
from api.client import Client
from tests.support.controlplane import ControlPlane
from tests.support.fakeagents import FakeAgents

Obj = dict[str, Any]
NS = "default"


def wait(what: str, check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def owned_jobs(client: Client, uid: str) -> list[Obj]:
    return [j for j in client.list("jobs", namespace=NS)["items"]
            if any(r.get("uid") == uid for r in j["metadata"].get("ownerReferences") or ())]


def test_controlplane_runs_a_cronjob_on_the_minute(etcd_endpoint: str) -> None:
    with ControlPlane(etcd_endpoint, leader=True) as cp, cp.client() as client:
        try:
            client.create("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                         "metadata": {"name": NS}})
        except e.APIError as err:
            if err.reason is not e.Reason.ALREADY_EXISTS:
                raise
        client.create("nodes", {
            "apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-0"},
            "status": {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                       "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True"}]}})
        with FakeAgents(client, nodes=["node-0"]):
            cj = client.create("cronjobs", {
                "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick"},
                "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {
                    "spec": {"restartPolicy": "Never", "containers": [
                        {"name": "c", "image": "busybox:1", "command": ["date"]}]}}}}}},
                namespace=NS)
            uid = cj["metadata"]["uid"]
            jobs = wait("the first run's Job", lambda: owned_jobs(client, uid), 70)
            job = jobs[0]
            minute = int(job["metadata"]["name"].rsplit("-", 1)[1])
            assert minute * 60 > time.time() - 70
            selector = f"controller-uid={job['metadata']['uid']}"

            def running_pod() -> Obj | None:
                for p in client.list("pods", namespace=NS, label_selector=selector)["items"]:
                    if (p.get("status") or {}).get("phase") == "Running":
                        return p
                return None
            pod = wait("its pod bound and running", running_pod, 20)
            assert pod["spec"]["nodeName"] == "node-0"
            status = client.get("cronjobs", "tick", namespace=NS)["status"]
            assert [r["name"] for r in status["active"]] == [job["metadata"]["name"]]
            client.update("pods", {**pod, "status": {**pod["status"], "phase": "Succeeded"}},
                          namespace=NS, subresource="status")

            def succeeded() -> Obj | None:
                st = client.get("cronjobs", "tick", namespace=NS).get("status") or {}
                return st if st.get("lastSuccessfulTime") and not st.get("active") else None
            wait("the CronJob to record the success", succeeded, 20)
            client.delete("cronjobs", "tick", namespace=NS)
