"""Node agents played by a test, through one API client: bound pods become Running and
Ready, pods whose graceful deletion started are removed, and the nodes' Leases are
renewed. For controlplane tests that need pods to progress without real nodes.

    with FakeAgents(client, nodes=["node-0", "node-1"]):
        ...   # a Deployment's pods become ready as soon as they are bound
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Sequence
from typing import Any

from api import errors as e
from api.client import Client

Obj = dict[str, Any]


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeAgents:
    """Every node's agent, through one client: ready pods, finished deletions, leases."""

    def __init__(self, client: Client, *, nodes: Sequence[str] = (),
                 namespace: str = "default") -> None:
        self.client = client
        self.nodes = list(nodes)
        self.namespace = namespace
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._pods, daemon=True),
                        threading.Thread(target=self._leases, daemon=True)]
        self.errors: list[str] = []

    def __enter__(self) -> FakeAgents:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(10)

    def _leases(self) -> None:
        while not self.stop.is_set():
            for name in self.nodes:
                lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                         "metadata": {"name": name, "namespace": "corral-node-lease"},
                         "spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
                                  "renewTime": now()}}
                try:
                    self.client.apply("leases", lease, namespace="corral-node-lease",
                                      field_manager="agent", force=True)
                except e.APIError:
                    pass
            self.stop.wait(2)

    def _act(self, pod: Obj) -> None:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        if not spec.get("nodeName"):
            return
        if meta.get("deletionTimestamp"):
            try:
                self.client.delete("pods", meta["name"], namespace=meta["namespace"],
                                   grace_period=0, uid=meta["uid"])
            except e.APIError:
                pass
            return
        conds = (pod.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds):
            return
        status = {"phase": "Running", "podIP": "10.88.0.1", "startTime": now(),
                  "conditions": [*[c for c in conds if c.get("type") != "Ready"],
                                 {"type": "Ready", "status": "True",
                                  "lastTransitionTime": now()}]}
        for _ in range(5):
            try:
                self.client.update("pods", {**pod, "status": status},
                                   namespace=meta["namespace"], subresource="status")
                return
            except e.APIError as err:
                if err.reason is not e.Reason.CONFLICT:
                    return
                try:
                    pod = self.client.get("pods", meta["name"], namespace=meta["namespace"])
                except e.APIError:
                    return

    def _pods(self) -> None:
        rv = ""
        while not self.stop.is_set():
            try:
                listed = self.client.list("pods", namespace=self.namespace)
                for p in listed["items"]:
                    self._act(p)
                rv = listed["metadata"]["resourceVersion"]
                for ev in self.client.watch("pods", namespace=self.namespace, resource_version=rv,
                                            timeout=5):
                    if self.stop.is_set():
                        return
                    if ev["type"] in ("ADDED", "MODIFIED"):
                        self._act(ev["object"])
            except e.APIError as err:
                self.errors.append(str(err))
                self.stop.wait(0.2)
