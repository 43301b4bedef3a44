"""Pod status from what the runtime reports, and the batched writer that sends it.

    pod_status(pod, runtime, view)  -> status dict      pure: phase, conditions, podIP,
                                                         (init)containerStatuses, qosClass
    StatusWriter.set(pod, status)   remembers it; flush() merge-patches pods/status for the
                                    pods whose status changed, several at once
    pod_event(pod, ...)             -> an Event on the pod (probe failures, kills)

Phase follows kubelet: Pending while init containers or never-started containers remain;
Running while any container runs or will be restarted; Succeeded when every container
exited 0 and none will restart; Failed when one failed and will not restart.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from agent.cri import ContainerInfo, PodRuntime
from api import errors, quantity

log = logging.getLogger("corral.agent.status")
MERGE_PATCH = "application/merge-patch+json"
TERMINAL = ("Succeeded", "Failed")


def rfc3339(ns: int) -> str:
    t = datetime.datetime.fromtimestamp(ns / 1e9, tz=datetime.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class StatusView:
    """What the worker knows beyond the runtime: why a container waits, readiness, when
    the pod started, the node's IP, the runtime's name for container IDs."""

    now_ns: int
    waiting: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # name -> why
    ready: Callable[[str], bool] = lambda name: True     # the readiness probe (if any)
    started: Callable[[str], bool] = lambda name: True   # the startup probe (if any)
    host_ip: str = ""
    runtime_name: str = "corral"
    phase_override: str = ""  # Failed/Succeeded decided by the worker


def will_restart(policy: str, c: ContainerInfo) -> bool:
    return policy == "Always" or (policy == "OnFailure" and c.exit_code != 0)


def terminated_reason(c: ContainerInfo) -> str:
    if c.reason in ("OOMKilled", "Completed", "Error", "ContainerCannotRun"):
        return c.reason
    return "Completed" if c.exit_code == 0 else "Error"


def _terminated(c: ContainerInfo, runtime_name: str) -> dict[str, Any]:
    out: dict[str, Any] = {"exitCode": c.exit_code, "reason": terminated_reason(c),
                           "containerID": f"{runtime_name}://{c.id}"}
    if c.started_at:
        out["startedAt"] = rfc3339(c.started_at)
    if c.finished_at:
        out["finishedAt"] = rfc3339(c.finished_at)
    if c.message:
        out["message"] = c.message
    return out


def container_status(spec: Mapping[str, Any], latest: ContainerInfo | None,
                     previous: ContainerInfo | None, view: StatusView) -> dict[str, Any]:
    name = str(spec["name"])
    out: dict[str, Any] = {"name": name, "image": spec.get("image", ""), "imageID": "",
                           "ready": False, "started": False, "restartCount": 0,
                           "lastState": {}}
    waiting = view.waiting.get(name)
    if latest is None:
        reason, message = waiting or ("ContainerCreating", "")
        out["state"] = {"waiting": {"reason": reason, **({"message": message} if message
                                                         else {})}}
        return out
    out["containerID"] = f"{view.runtime_name}://{latest.id}"
    out["imageID"] = latest.image_ref
    out["restartCount"] = latest.attempt
    if previous is not None and previous.state == "exited":
        out["lastState"] = {"terminated": _terminated(previous, view.runtime_name)}
    if latest.state == "running":
        out["state"] = {"running": {"startedAt": rfc3339(latest.started_at)}}
        out["started"] = bool(view.started(name))
        out["ready"] = out["started"] and bool(view.ready(name))
    elif latest.state == "exited" and waiting is not None:
        out["state"] = {"waiting": {"reason": waiting[0], "message": waiting[1]}}
        out["lastState"] = {"terminated": _terminated(latest, view.runtime_name)}
    elif latest.state == "exited":
        out["state"] = {"terminated": _terminated(latest, view.runtime_name)}
    else:
        reason, message = waiting or ("ContainerCreating", "")
        out["state"] = {"waiting": {"reason": reason, **({"message": message} if message
                                                         else {})}}
    return out


def qos_class(spec: Mapping[str, Any]) -> str:
    """Guaranteed: every container limits cpu and memory with requests equal to limits;
    BestEffort: no requests or limits anywhere; else Burstable."""
    containers = list(spec.get("initContainers") or []) + list(spec.get("containers") or [])
    any_set, guaranteed = False, True
    for c in containers:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        if req or lim:
            any_set = True
        for r in ("cpu", "memory"):
            if r not in lim or quantity.parse(req.get(r, lim[r])) != quantity.parse(lim[r]):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def init_done(spec: Mapping[str, Any], rt: PodRuntime) -> bool:
    """Every init container exited 0 (or a main container already exists: adopted)."""
    mains = [c["name"] for c in spec.get("containers") or []]
    if any(rt.latest(n) is not None for n in mains):
        return True
    for c in spec.get("initContainers") or []:
        latest = rt.latest(c["name"])
        if latest is None or latest.state != "exited" or latest.exit_code != 0:
            return False
    return True


def phase(spec: Mapping[str, Any], rt: PodRuntime) -> str:
    policy = str(spec.get("restartPolicy") or "Always")
    if not init_done(spec, rt):
        for c in spec.get("initContainers") or []:
            latest = rt.latest(c["name"])
            if latest is not None and latest.state == "exited" and latest.exit_code != 0 \
                    and policy == "Never":
                return "Failed"
        return "Pending"
    waiting = running = succeeded = failed = 0
    for c in spec.get("containers") or []:
        latest = rt.latest(c["name"])
        if latest is None or latest.state in ("created", "unknown"):
            waiting += 1
        elif latest.state == "running" or will_restart(policy, latest):
            running += 1
        elif latest.exit_code == 0:
            succeeded += 1
        else:
            failed += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    return "Failed" if failed else "Succeeded"


def _condition(kind: str, ok: bool, reason: str = "", message: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind, "status": "True" if ok else "False"}
    if not ok and reason:
        out["reason"] = reason
    if not ok and message:
        out["message"] = message
    return out


def pod_status(pod: Mapping[str, Any], rt: PodRuntime, view: StatusView) -> dict[str, Any]:
    spec = pod.get("spec") or {}
    old = pod.get("status") or {}
    sb = rt.sandbox()
    inits = [container_status(c, rt.latest(c["name"]), rt.previous(c["name"]), view)
             for c in spec.get("initContainers") or []]
    initialized = init_done(spec, rt)
    view_main = view
    if not initialized:
        waits = {c["name"]: ("PodInitializing", "") for c in spec.get("containers") or []}
        view_main = replace(view, waiting={**waits, **view.waiting})
    mains = [container_status(c, rt.latest(c["name"]), rt.previous(c["name"]), view_main)
             for c in spec.get("containers") or []]
    ph = view.phase_override or phase(spec, rt)
    if old.get("phase") in TERMINAL:
        ph = old["phase"]
    unready = [c["name"] for c in mains if not c["ready"]]
    done_reason = "PodCompleted" if ph in TERMINAL else "ContainersNotReady"
    msg = f"containers with unready status: [{' '.join(unready)}]" if unready else ""
    pending_init = [c["name"] for c in inits if "terminated" not in c["state"]
                    or c["state"]["terminated"]["exitCode"] != 0]
    conditions = [
        _condition("Initialized", initialized, "ContainersNotInitialized",
                   f"containers with incomplete status: [{' '.join(pending_init)}]"),
        _condition("Ready", not unready and ph == "Running", done_reason, msg),
        _condition("ContainersReady", not unready and ph == "Running", done_reason, msg),
        _condition("PodScheduled", True),
    ]
    before = {c.get("type"): c for c in old.get("conditions") or []}
    for c in conditions:
        prev = before.get(c["type"])
        same = prev is not None and prev.get("status") == c["status"]
        c["lastProbeTime"] = None
        c["lastTransitionTime"] = prev.get("lastTransitionTime") if same and prev else \
            rfc3339(view.now_ns)
    out: dict[str, Any] = {
        "phase": ph, "conditions": conditions, "hostIP": view.host_ip,
        "hostIPs": [{"ip": view.host_ip}] if view.host_ip else [],
        "startTime": old.get("startTime") or rfc3339(view.now_ns),
        "qosClass": qos_class(spec), "containerStatuses": mains,
    }
    if inits:
        out["initContainerStatuses"] = inits
    ip = sb.ip if sb is not None and sb.ready else old.get("podIP", "")
    if ip:
        out["podIP"] = ip
        out["podIPs"] = [{"ip": ip}]
    return out


def pod_event(pod: Mapping[str, Any], *, kind: str, reason: str, message: str, node: str,
              now_ns: int) -> dict[str, Any]:
    """An Event about POD as kubelet records one (source component kubelet, host NODE)."""
    meta = pod["metadata"]
    ns = str(meta.get("namespace") or "default")
    now = rfc3339(now_ns)
    return {"apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": ns},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"],
                               "namespace": ns, "uid": str(meta.get("uid") or "")},
            "reason": reason, "message": message, "type": kind, "count": 1,
            "firstTimestamp": now, "lastTimestamp": now,
            "source": {"component": "kubelet", **({"host": node} if node else {})}}


# ---- writing ------------------------------------------------------------------------------


class PodStatusAPI(Protocol):
    async def patch(self, resource: str, name: str, patch: bytes, *, patch_type: str,
                    namespace: str = "", **kw: Any) -> dict[str, Any]: ...


def comparable(status: Mapping[str, Any]) -> dict[str, Any]:
    """STATUS without the fields the API may fill or reformat (None values)."""
    out: dict[str, Any] = json.loads(
        json.dumps(status, sort_keys=True),
        object_hook=lambda d: {k: v for k, v in d.items() if v is not None})
    return out


def status_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch turning OLD into NEW at the top level of status (lists and maps
    below are replaced whole: every list of a pod status is)."""
    body: dict[str, Any] = {k: None for k in old if k not in new}
    for k, v in new.items():
        body[k] = v if not isinstance(v, dict) else {**{kk: None for kk in old.get(k) or {}
                                                        if kk not in v}, **v}
    return {"status": body}


class StatusWriter:
    """Holds the newest status of each pod and writes those that changed, in batches."""

    def __init__(self, api: PodStatusAPI, *, concurrency: int = 16) -> None:
        self.api = api
        self.concurrency = concurrency
        self._written: dict[str, dict[str, Any]] = {}  # uid -> what the API holds
        self._pending: dict[str, tuple[str, str, dict[str, Any]]] = {}
        self._wake = asyncio.Event()
        self.writes = 0

    def set(self, pod: Mapping[str, Any], status: dict[str, Any]) -> bool:
        """Queue STATUS for POD if it differs from what the API holds; True if queued."""
        meta = pod["metadata"]
        uid = str(meta["uid"])
        known = self._written.get(uid)
        if known is None:
            known = dict(pod.get("status") or {})
            self._written[uid] = known
        if comparable(known) == comparable(status):
            self._pending.pop(uid, None)
            return False
        self._pending[uid] = (str(meta.get("namespace") or "default"), str(meta["name"]),
                              status)
        self._wake.set()
        return True

    def forget(self, uid: str) -> None:
        self._written.pop(uid, None)
        self._pending.pop(uid, None)

    async def flush(self) -> None:
        batch, self._pending = self._pending, {}
        sem = asyncio.Semaphore(self.concurrency)

        async def one(uid: str, ns: str, name: str, status: dict[str, Any]) -> None:
            async with sem:
                old = self._written.get(uid, {})
                body = json.dumps(status_patch(old, status)).encode()
                try:
                    got = await self.api.patch("pods", name, body, patch_type=MERGE_PATCH,
                                               namespace=ns, subresource="status")
                except errors.APIError as err:
                    if err.reason is errors.Reason.NOT_FOUND:
                        self.forget(uid)
                        return
                    log.warning("pod %s/%s: status write failed: %s", ns, name, err)
                    self._pending.setdefault(uid, (ns, name, status))
                    return
                self.writes += 1
                if str((got.get("metadata") or {}).get("uid")) != uid:
                    log.warning("pod %s/%s: status written to uid %s, not %s", ns, name,
                                (got.get("metadata") or {}).get("uid"), uid)
                self._written[uid] = status  # what we sent: the next change compares to it

        await asyncio.gather(*(one(uid, *item) for uid, item in batch.items()))

    async def run(self, *, interval: float = 0.2) -> None:
        """Flush whenever something is queued, at most every INTERVAL seconds."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()
            if self._pending:
                self._wake.set()
            await asyncio.sleep(interval)
