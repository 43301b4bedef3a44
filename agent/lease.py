"""The node's heartbeat: the Lease corral-node-lease/<node>, renewed every 10 s.

    renew(api, lease)  get or create once, then update spec.renewTime (microseconds);
                       a conflict or a vanished lease is read again and retried

The node lifecycle controller marks the node NotReady when renewTime is older than its
grace period, so a failed renewal is logged and retried at the next tick, never fatal.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from typing import Any, Protocol

from api import errors

log = logging.getLogger("corral.agent.lease")
NAMESPACE = "corral-node-lease"
DURATION = 40
PERIOD = 10.0


class LeaseAPI(Protocol):
    async def get(self, resource: str, name: str, *, namespace: str = "",
                  subresource: str = "") -> dict[str, Any]: ...

    async def create(self, resource: str, obj: dict[str, Any], *, namespace: str = "",
                     **kw: Any) -> dict[str, Any]: ...

    async def update(self, resource: str, obj: dict[str, Any], *, namespace: str = "",
                     **kw: Any) -> dict[str, Any]: ...


def micro_time(now: datetime.datetime | None = None) -> str:
    """RFC 3339 with microseconds, as Kubernetes' MicroTime: 2026-11-30T02:17:16.123456Z."""
    t = now or datetime.datetime.now(datetime.UTC)
    return t.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class NodeLease:
    def __init__(self, api: LeaseAPI, node_name: str, *, node_uid: str = "",
                 duration: int = DURATION) -> None:
        self.api = api
        self.node_name = node_name
        self.node_uid = node_uid
        self.duration = duration
        self._lease: dict[str, Any] | None = None
        self.renewals = 0

    def _new(self) -> dict[str, Any]:
        now = micro_time()
        meta: dict[str, Any] = {"name": self.node_name, "namespace": NAMESPACE}
        if self.node_uid:
            meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node",
                                        "name": self.node_name, "uid": self.node_uid}]
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
                "spec": {"holderIdentity": self.node_name,
                         "leaseDurationSeconds": self.duration, "acquireTime": now,
                         "renewTime": now}}

    async def renew(self) -> dict[str, Any]:
        """One renewal; raises APIError when the API refuses it twice."""
        for attempt in range(2):
            if self._lease is None:
                try:
                    self._lease = await self.api.get("leases", self.node_name,
                                                     namespace=NAMESPACE)
                except errors.APIError as err:
                    if err.reason is not errors.Reason.NOT_FOUND:
                        raise
                    self._lease = await self.api.create("leases", self._new(),
                                                        namespace=NAMESPACE)
                    self.renewals += 1
                    return self._lease
            lease = dict(self._lease)
            lease["spec"] = {**(lease.get("spec") or {}), "holderIdentity": self.node_name,
                             "leaseDurationSeconds": self.duration,
                             "renewTime": micro_time()}
            try:
                self._lease = await self.api.update("leases", lease, namespace=NAMESPACE)
                self.renewals += 1
                return self._lease
            except errors.APIError as err:
                self._lease = None
                if attempt or err.reason not in (errors.Reason.CONFLICT,
                                                 errors.Reason.NOT_FOUND):
                    raise
        raise AssertionError("unreachable")

    async def run(self, *, period: float = PERIOD) -> None:
        while True:
            try:
                await self.renew()
            except errors.APIError as err:
                log.warning("lease %s/%s: renew failed: %s", NAMESPACE, self.node_name, err)
            await asyncio.sleep(period)
