"""Liveness, readiness and startup probes with Kubernetes' semantics: the counting and
the per-container, per-pod state. One probe (check(), the exec/httpGet/tcpSocket
handlers, Target, Result, cri_exec) is probecheck.py's; this module re-exports those.

    ProbeWorker(kind, spec, target, on_result=..., exec_sync=..., gate=...)
        run()     sleeps initialDelaySeconds (from the container's start), then step()
                  every periodSeconds until stop()
        step()    one probecheck.check(), counted: the published result changes only after
                  successThreshold successes or failureThreshold failures in a row;
                  a liveness or startup failure is published once and the worker holds
                  (the container is restarted; restart() the worker with the new ID)

    ContainerProber(container, target, ...)   the (up to) three workers of one container:
        the startup probe gates the other two, which do not probe until it has passed

    PodProber(pod, exec_sync=..., on_change=...)   the pod worker's Probes hook:
        update(pod, runtime)   a ContainerProber per running container instance that has
                               probes; a new instance (restart) gets new workers, a stopped
                               one loses them
        ready(name), started(name)        what containerStatuses[] report
        kill_reason(name, id)  a Kill(kind, message) once a liveness or startup probe
                               failed past its threshold (else None): the worker kills the
                               container with that probe's grace (termination.probe_grace)
        take_events()          kubelet's Unhealthy events, for the worker to record
        close()                every prober stopped and awaited (no task outlives the pod)
    NoProbes                   the same hook with no probes: everything ready

Initial results, as kubelet's: liveness Success, readiness Failure, startup Unknown.
`on_result(ProbeUpdate)` is called on every change of a published result (it may be a
coroutine function). Clock and sleep are injectable so that tests run on fake time.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from agent.probecheck import ExecReply as ExecReply
from agent.probecheck import ExecSync as ExecSync
from agent.probecheck import ExecSyncer as ExecSyncer
from agent.probecheck import Result as Result
from agent.probecheck import Target as Target
from agent.probecheck import check as check
from agent.probecheck import cri_exec as cri_exec
from agent.probecheck import named_ports as named_ports

if TYPE_CHECKING:
    from agent.cri import PodRuntime


class Kind(enum.Enum):
    LIVENESS = "livenessProbe"
    READINESS = "readinessProbe"
    STARTUP = "startupProbe"


INITIAL = {Kind.LIVENESS: Result.SUCCESS, Kind.READINESS: Result.FAILURE,
           Kind.STARTUP: Result.UNKNOWN}


@dataclass(frozen=True)
class ProbeUpdate:
    container: str
    container_id: str
    kind: Kind
    result: Result
    message: str = ""


@dataclass(frozen=True)
class Kill:
    """Why a container instance must be killed: the KIND of the probe that failed (its
    terminationGracePeriodSeconds is the kill's grace) and the Killing event's MESSAGE."""
    kind: Kind
    message: str


# ---- the worker -------------------------------------------------------------------------

Checker = Callable[[Mapping[str, Any], Target], Awaitable[tuple[Result, str]]]
OnResult = Callable[[ProbeUpdate], Awaitable[None] | None]


class ProbeWorker:
    """Probes one container with one probe, and publishes the counted result."""

    def __init__(self, kind: Kind, spec: Mapping[str, Any], target: Target, *,
                 container: str, on_result: OnResult, exec_sync: ExecSync | None = None,
                 gate: Callable[[], bool] | None = None, checker: Checker | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.kind, self.spec, self.target = kind, spec, target
        self.container = container
        self.on_result = on_result
        self.gate = gate
        self.clock, self.sleep = clock, sleep
        self.checker: Checker = checker or (lambda s, t: check(s, t, exec_sync=exec_sync))
        self.initial_delay = float(spec.get("initialDelaySeconds") or 0)
        self.period = float(spec.get("periodSeconds") or 10)
        self.success_threshold = int(spec.get("successThreshold") or 1)
        self.failure_threshold = int(spec.get("failureThreshold") or 3)
        if kind is not Kind.READINESS:
            self.success_threshold = 1  # Kubernetes requires 1 for liveness and startup
        self.result = INITIAL[kind]
        self.on_hold = False
        self._last: Result | None = None
        self._run = 0
        self._stopped = asyncio.Event()

    def restart(self, target: Target) -> None:
        """A new instance of the container: start over from the initial result."""
        self.target = target
        self.result = INITIAL[self.kind]
        self.on_hold = False
        self._last, self._run = None, 0

    def stop(self) -> None:
        self._stopped.set()

    async def step(self) -> Result | None:
        """One probe period; the result probed, or None when nothing was probed."""
        if self.on_hold or self._stopped.is_set():
            return None
        if self.kind is Kind.STARTUP and self.result is Result.SUCCESS:
            return None  # started: the startup probe is done
        if self.gate is not None and not self.gate():
            return None  # the startup probe has not passed yet
        if self.clock() - self.target.started_at < self.initial_delay:
            return None
        result, message = await self.checker(self.spec, self.target)
        if self._stopped.is_set():
            return None
        if result is self._last:
            self._run += 1
        else:
            self._last, self._run = result, 1
        if result is Result.SUCCESS and self._run < self.success_threshold:
            return result
        if result is not Result.SUCCESS and self._run < self.failure_threshold:
            return result
        published = Result.SUCCESS if result is Result.SUCCESS else Result.FAILURE
        if published is Result.FAILURE and self.kind is not Kind.READINESS:
            self.on_hold = True  # it will be restarted: probe again after restart()
            self._run = 0
        if published is not self.result or self.on_hold:
            self.result = published
            await _call(self.on_result, ProbeUpdate(self.container, self.target.container_id,
                                                    self.kind, published, message))
        return result

    async def run(self) -> None:
        """Probe every period until stop()."""
        wait = self.target.started_at + self.initial_delay - self.clock()
        if wait > 0 and await self._pause(wait):
            return
        while not self._stopped.is_set():
            await self.step()
            if await self._pause(self.period):
                return

    async def _pause(self, seconds: float) -> bool:
        """Sleep; True if stopped meanwhile."""
        sleeper = asyncio.ensure_future(self.sleep(seconds))
        stopper = asyncio.ensure_future(self._stopped.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (sleeper, stopper):
                t.cancel()
        return self._stopped.is_set()


async def _call(fn: OnResult, update: ProbeUpdate) -> None:
    reply = fn(update)
    if inspect.isawaitable(reply):
        await reply


class ContainerProber:
    """The probe workers of one container, with the startup probe gating the others."""

    def __init__(self, container: Mapping[str, Any], target: Target, *, on_result: OnResult,
                 exec_sync: ExecSync | None = None, checker: Checker | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        target = replace(target, ports={**named_ports(container), **target.ports})
        self.workers: dict[Kind, ProbeWorker] = {}
        startup = container.get(Kind.STARTUP.value)
        for kind in Kind:
            spec = container.get(kind.value)
            if not spec:
                continue
            gate = self.started if startup and kind is not Kind.STARTUP else None
            self.workers[kind] = ProbeWorker(
                kind, spec, target, container=str(container.get("name", "")),
                on_result=on_result, exec_sync=exec_sync, gate=gate, checker=checker,
                clock=clock, sleep=sleep)
        self._tasks: list[asyncio.Task[None]] = []

    def started(self) -> bool:
        """The startup probe has passed (or there is none)."""
        w = self.workers.get(Kind.STARTUP)
        return w is None or w.result is Result.SUCCESS

    def ready(self) -> bool:
        """The readiness probe passes (no probe: ready once started)."""
        w = self.workers.get(Kind.READINESS)
        return self.started() and (w is None or w.result is Result.SUCCESS)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(w.run(), name=f"probe {w.container} {k.value}")
                       for k, w in self.workers.items()]

    def restart(self, target: Target) -> None:
        for w in self.workers.values():
            w.restart(replace(target, ports={**w.target.ports, **target.ports}))

    def cancel(self) -> list[asyncio.Task[None]]:
        """Stop every worker now; the tasks returned end soon (await them to be sure)."""
        for w in self.workers.values():
            w.stop()
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        return tasks

    async def stop(self) -> None:
        for t in self.cancel():
            with contextlib.suppress(asyncio.CancelledError):
                await t


# ---- the probes of a pod -----------------------------------------------------------------

KIND_NAME = {Kind.LIVENESS: "Liveness", Kind.READINESS: "Readiness", Kind.STARTUP: "Startup"}
Event = tuple[str, str, str]  # (type, reason, message), as kubelet records them


def has_probes(container: Mapping[str, Any]) -> bool:
    return any(container.get(k.value) for k in Kind)


class PodProber:
    """The probers of one pod, following the container instances the runtime runs."""

    def __init__(self, pod: Mapping[str, Any], *, exec_sync: ExecSync | None,
                 on_change: Callable[[], None], checker: Checker | None = None,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.pod = pod
        self.exec_sync, self.on_change, self.checker = exec_sync, on_change, checker
        self.clock, self.sleep = clock, sleep  # clock: epoch seconds, as container starts
        self.probers: dict[str, ContainerProber] = {}
        self.ids: dict[str, str] = {}          # container name -> the instance probed
        self.kills: dict[str, tuple[str, Kill]] = {}  # name -> (instance, why)
        self.events: list[Event] = []
        self._ending: list[asyncio.Task[None]] = []

    def _specs(self) -> dict[str, Mapping[str, Any]]:
        return {str(c["name"]): c for c in (self.pod.get("spec") or {}).get("containers")
                or []}

    def update(self, pod: Mapping[str, Any], rt: PodRuntime) -> None:
        self.pod = pod
        specs = self._specs()
        sb = rt.sandbox()
        for name in list(self.probers):
            latest = rt.latest(name)
            if name not in specs or latest is None or latest.state != "running" or \
                    latest.id != self.ids.get(name):
                self._drop(name)
        for name, spec in specs.items():
            latest = rt.latest(name)
            if name in self.probers or not has_probes(spec) or latest is None or \
                    latest.state != "running":
                continue
            target = Target(latest.id, pod_ip=sb.ip if sb is not None else "",
                            started_at=latest.started_at / 1e9)
            prober = ContainerProber(spec, target, on_result=self._on_result,
                                     exec_sync=self.exec_sync, checker=self.checker,
                                     clock=self.clock, sleep=self.sleep)
            self._seed(prober, name, latest.id)
            self.probers[name], self.ids[name] = prober, latest.id
            prober.start()

    def _seed(self, prober: ContainerProber, name: str, container_id: str) -> None:
        """A container adopted by a restarted agent keeps what the API last heard of it,
        so that a restart of the agent does not make a ready pod unready."""
        for cs in (self.pod.get("status") or {}).get("containerStatuses") or []:
            if cs.get("name") != name or \
                    str(cs.get("containerID", "")).rpartition("://")[2] != container_id:
                continue
            startup = prober.workers.get(Kind.STARTUP)
            if startup is not None and cs.get("started"):
                startup.result = Result.SUCCESS
            readiness = prober.workers.get(Kind.READINESS)
            if readiness is not None and cs.get("ready"):
                readiness.result = Result.SUCCESS

    def _drop(self, name: str) -> None:
        prober = self.probers.pop(name, None)
        self.ids.pop(name, None)
        self.kills.pop(name, None)
        if prober is not None:
            self._ending += prober.cancel()
            self._ending = [t for t in self._ending if not t.done()]

    def _on_result(self, update: ProbeUpdate) -> None:
        if self.ids.get(update.container) != update.container_id:
            return  # a late result about an instance no longer probed
        if update.result is Result.FAILURE:
            what = KIND_NAME[update.kind]
            self.events.append(("Warning", "Unhealthy",
                                f"{what} probe failed: {update.message}".strip()))
            if update.kind is not Kind.READINESS:
                self.kills[update.container] = (update.container_id, Kill(update.kind, (
                    f"Container {update.container} failed {what.lower()} probe, will be "
                    "restarted")))
        self.on_change()

    def ready(self, name: str) -> bool:
        prober = self.probers.get(name)
        if prober is not None:
            return prober.ready()
        spec = self._specs().get(name) or {}
        return not (spec.get(Kind.READINESS.value) or spec.get(Kind.STARTUP.value))

    def started(self, name: str) -> bool:
        prober = self.probers.get(name)
        if prober is not None:
            return prober.started()
        return not (self._specs().get(name) or {}).get(Kind.STARTUP.value)

    def kill_reason(self, name: str, container_id: str) -> Kill | None:
        """Why the instance CONTAINER_ID of NAME must be killed (None if it need not)."""
        cid, why = self.kills.get(name, ("", None))
        return why if cid == container_id else None

    def take_events(self) -> list[Event]:
        out, self.events = self.events, []
        return out

    async def close(self) -> None:
        for name in list(self.probers):
            self._drop(name)
        ending, self._ending = self._ending, []
        for t in ending:
            with contextlib.suppress(asyncio.CancelledError):
                await t


class NoProbes:
    def update(self, pod: Mapping[str, Any], rt: PodRuntime) -> None:
        return None

    def ready(self, name: str) -> bool:
        return True

    def started(self, name: str) -> bool:
        return True

    def kill_reason(self, name: str, container_id: str) -> Kill | None:
        return None

    def take_events(self) -> list[tuple[str, str, str]]:
        return []

    async def close(self) -> None:
        return None
