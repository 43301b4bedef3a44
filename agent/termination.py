"""The pod worker's TERMINATING state, mixed into PodWorker (worker.py).

    terminate(rt)   every running container: kill() within the pod's grace (the API
                    object's deletionGracePeriodSeconds, else the spec's, else 30 s), then
                    StopPodSandbox, the probers closed, the pod deleted with grace 0
                    (unless it is already gone), its status forgotten
    kill(c)         preStop (exec, httpGet to the pod IP, tcpSocket) within the grace,
                    then StopContainer with the rest: TERM, KILL when it is over; a preStop
                    that used it all earns kubelet's one-off PRE_STOP_EXTRA s of TERM
    remove(rt)      RemovePodSandbox of each sandbox, the pod's cgroup (qos.py; a busy one
                    is left to the manager's sweep), the volumes' cleanup
    probe_grace()   the failed probe's own terminationGracePeriodSeconds for a liveness or
                    startup kill (its kind comes with the kill: probes.Kill)

Every step tolerates what is already gone (NotFound); the worker retries a failed remove
with back-off and marks the pod TERMINATED only once it succeeded.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from agent import cri as C
from agent import probes as PR
from agent import qos as Q
from api import errors
from runtime.service.cri import client as cric

if TYPE_CHECKING:
    from agent.worker import Probes, WorkerEnv

log = logging.getLogger("corral.agent.worker")
PRE_STOP_EXTRA = 2  # seconds of TERM after a preStop that used the whole grace (kubelet)


def probe_grace(container: Mapping[str, Any], kind: PR.Kind, *, default: int) -> int:
    """The grace of a kill for a failed probe of KIND: that probe's
    terminationGracePeriodSeconds when it sets one, else DEFAULT (the pod's)."""
    g = (container.get(kind.value) or {}).get("terminationGracePeriodSeconds")
    return default if g is None else int(g)


class Termination:
    """What PodWorker does in TERMINATING; its state (env, pod, uid, key, gone, probes)
    and its _did/event are the worker's."""

    if TYPE_CHECKING:
        env: WorkerEnv
        pod: Mapping[str, Any]
        uid: str
        key: str
        gone: bool
        probes: Probes

        def _did(self, kind: str, ident: str, *, new: bool, sandbox_id: str = "") -> None:
            ...

        async def event(self, kind: str, reason: str, message: str) -> None:
            ...

    def _grace(self) -> int:
        meta, spec = self.pod.get("metadata") or {}, self.pod.get("spec") or {}
        g = meta.get("deletionGracePeriodSeconds")
        if g is None:
            g = spec.get("terminationGracePeriodSeconds")
        return int(30 if g is None else g)

    async def terminate(self, rt: C.PodRuntime) -> None:
        grace = self._grace()
        specs = {c["name"]: c for c in (self.pod.get("spec") or {}).get("containers") or []}
        running = [c for c in rt.containers if c.state in ("running", "created")]
        await asyncio.gather(*(self.kill(specs.get(c.name) or {}, c, rt, grace=grace)
                               for c in running))
        for sb in rt.sandboxes:
            try:
                await self.env.cri.stop_pod_sandbox(sb.id)
            except cric.NotFound:
                pass
        await self.probes.close()
        if not self.gone:
            meta = self.pod["metadata"]
            try:
                await self.env.api.delete("pods", str(meta["name"]),
                                          namespace=str(meta.get("namespace") or "default"),
                                          grace_period=0, uid=self.uid)
            except errors.APIError as err:
                if err.reason not in (errors.Reason.NOT_FOUND, errors.Reason.CONFLICT):
                    raise
        self.env.writer.forget(self.uid)

    async def kill(self, spec: Mapping[str, Any], c: C.ContainerInfo, rt: C.PodRuntime, *,
                   grace: int) -> None:
        """Stop container C within GRACE seconds: its preStop hook, then StopContainer
        (TERM, KILL when the rest of the grace is over)."""
        deadline = time.monotonic() + grace
        ran = c.state == "running" and await self.pre_stop(spec, c, rt, grace=grace)
        rest = max(0, math.ceil(deadline - time.monotonic()))
        if ran:  # kubelet: a preStop that used up the grace earns a one-off 2 s for TERM
            rest = max(PRE_STOP_EXTRA, rest)
        await self._stop(c.id, rest)

    async def pre_stop(self, spec: Mapping[str, Any], c: C.ContainerInfo, rt: C.PodRuntime,
                       *, grace: int) -> bool:
        """Container C's preStop hook (exec, httpGet to the pod IP, tcpSocket), within
        GRACE seconds; a failed hook is an event, and the stop goes on. False: no hook."""
        hook = (spec.get("lifecycle") or {}).get("preStop") or {}
        if not hook or grace <= 0:
            return False
        sb = rt.sandbox()
        target = PR.Target(c.id, pod_ip=sb.ip if sb is not None else "",
                           ports=PR.named_ports(spec))
        try:
            result, message = await asyncio.wait_for(PR.check(
                {**hook, "timeoutSeconds": grace}, target,
                exec_sync=PR.cri_exec(self.env.cri)), grace + 1)
        except TimeoutError:
            result, message = PR.Result.FAILURE, f"timed out after {grace}s"
        if result is not PR.Result.SUCCESS:
            log.info("pod %s: container %s: preStop: %s", self.key, c.name, message)
            await self.event("Warning", "FailedPreStopHook",
                             f"PreStopHook failed for container {c.name}: {message}")
        return True

    async def remove(self, rt: C.PodRuntime) -> None:
        for sb in rt.sandboxes:
            await self._remove_sandbox(sb.id)
        # a cgroup still busy (its last task exiting) is left to the manager's next sweep
        await asyncio.to_thread(Q.remove_pod_cgroup, self.uid, self.env.cgroup_parent)
        await self.env.volumes.cleanup(self.pod)
        log.info("pod %s: removed", self.key)

    async def _stop(self, cid: str, grace: int) -> None:
        self._did("container", cid, new=False)
        try:
            await self.env.cri.stop_container(cid, timeout=grace)
        except cric.NotFound:
            pass

    async def _remove_container(self, cid: str) -> None:
        self._did("container", cid, new=False)
        try:
            await self.env.cri.remove_container(cid)
        except cric.NotFound:
            pass

    async def _remove_sandbox(self, sid: str) -> None:
        self._did("sandbox", sid, new=False)
        try:
            await self.env.cri.stop_pod_sandbox(sid)
            await self.env.cri.remove_pod_sandbox(sid)
        except cric.NotFound:
            pass
