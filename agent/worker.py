"""The pod worker: one per pod bound to the node, an explicit state machine (the states
and decide()/settle(): podstate.py; what TERMINATING does: termination.py, mixed in).

    PENDING ──► INITIALIZING ──► RUNNING ──► COMPLETED
       │  └────────(phase already Succeeded/Failed)──────►│
       │             │              │            │
       └─────────────┴──────┬───────┴────────────┘
                            ▼
                       TERMINATING ──► TERMINATED        (worker ends)

Each ``sync()``: observe the runtime (a coalesced relist), ``decide()`` the next state
(pure, guarded by TRANSITIONS, repeated to a fixed point, so a restarted agent walks an
adopted pod straight to RUNNING without touching its containers), act for that state,
then hand the computed status to the StatusWriter. What an act made new (the pod's first
sandbox, containers new to it) is read back by one status call each, not a relist.

    PENDING       the pod's cgroup under its QoS tier (qos.py), RunPodSandbox
    INITIALIZING  init containers one at a time, in order; a failed one is restarted
                  (backoff) unless restartPolicy is Never
    RUNNING       start missing containers; restart exited ones per restartPolicy with
                  CrashLoopBackOff (10 s doubling to 5 min; reset after 10 min running);
                  configMap/secret/downwardAPI volumes refreshed every volume_refresh s
    TERMINATING   preStop (exec, httpGet, tcpSocket), StopContainer(rest of the grace),
                  StopPodSandbox, delete the pod with grace 0 (unless already gone), then
                  RemovePodSandbox and the volumes' cleanup, retried with back-off
    TERMINATED    all of that done (worker ends)

Probes (agent/probes.py PodProber; a changed result wakes the worker): each sync
updates the probers to the running container instances; in RUNNING a kill_reason() (a
probes.Kill: the failed probe's kind and the message) means a Killing event, preStop and
StopContainer(that probe's grace, else the pod's), the
exit then handled as any other;
ready()/started() make containerStatuses[].ready/started and the Ready conditions.

Hooks (small interfaces, implemented elsewhere): ``Volumes`` (prepare -> volume name ->
volumes.Volume, whose mounts volumes.container_mounts checks: subPath inside the volume,
configMap/secret/downwardAPI read-only; refresh; cleanup), ``EnvResolver`` (a container's
env as pairs), ``Probes`` (the factory gets the pod and the worker's wake). Both env and
volumes see the pod with the sandbox's IP as status.podIP and the node's as status.hostIP
(with_sandbox_ips: their one source of both). Defaults: no volumes, literal env values,
the real probers over the CRI's ExecSync.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent import cri as C
from agent import probes as PR
from agent import qos as Q
from agent import status as S
from agent import volumes as V
from agent.backoff import BACKOFF_BASE, BACKOFF_CAP, Backoff
from agent.metrics.record import RECORDER
from agent.podstate import PodState, check_transition, settle
from agent.probes import NoProbes as NoProbes  # the null Probes hook
from agent.termination import Termination, probe_grace
from api import errors
from runtime.service.cri import api_pb2 as pb
from runtime.service.cri import client as cric

log = logging.getLogger("corral.agent.worker")

P = PodState


# ---- hooks --------------------------------------------------------------------------------


class Volumes(Protocol):
    async def prepare(self, pod: Mapping[str, Any]) -> Mapping[str, V.Volume]: ...
    async def refresh(self, pod: Mapping[str, Any]) -> list[str]: ...
    async def cleanup(self, pod: Mapping[str, Any]) -> None: ...


class Probes(Protocol):
    def update(self, pod: Mapping[str, Any], rt: C.PodRuntime) -> None: ...
    def ready(self, name: str) -> bool: ...
    def started(self, name: str) -> bool: ...
    def kill_reason(self, name: str, container_id: str) -> PR.Kill | None: ...
    def take_events(self) -> list[tuple[str, str, str]]: ...
    async def close(self) -> None: ...


ProbesFactory = Callable[[Mapping[str, Any], Callable[[], None]], Probes]


EnvResolver = Callable[[Mapping[str, Any], Mapping[str, Any]],
                       Awaitable[list[tuple[str, str]]]]


class NoVolumes:
    async def prepare(self, pod: Mapping[str, Any]) -> Mapping[str, V.Volume]:
        return {}

    async def refresh(self, pod: Mapping[str, Any]) -> list[str]:
        return []

    async def cleanup(self, pod: Mapping[str, Any]) -> None:
        return None


def with_sandbox_ips(pod: Mapping[str, Any], *, pod_ip: str,
                     host_ip: str) -> Mapping[str, Any]:
    """POD as env fieldRefs and downward API volumes see it, their only source of
    status.podIP/hostIP: status.podIP is the sandbox's IP (the API's status is written
    after the sync that starts the containers, so it has none at the first start),
    status.hostIP the node's (as kubelet's: the node's own IP wins over the API's)."""
    status = dict(pod.get("status") or {})
    if pod_ip:
        status["podIP"], status["podIPs"] = pod_ip, [{"ip": pod_ip}]
    if host_ip:
        status["hostIP"], status["hostIPs"] = host_ip, [{"ip": host_ip}]
    return {**pod, "status": status}


async def literal_env(pod: Mapping[str, Any], container: Mapping[str, Any],
                      ) -> list[tuple[str, str]]:
    return C.plain_env(container)


# ---- the worker ---------------------------------------------------------------------------


class PodAPI(Protocol):
    async def delete(self, resource: str, name: str, *, namespace: str = "",
                     **kw: Any) -> dict[str, Any]: ...

    async def create(self, resource: str, obj: dict[str, Any], *, namespace: str = "",
                     **kw: Any) -> dict[str, Any]: ...


@dataclass
class WorkerEnv:
    """What every worker shares: clients, the relist, the status writer, node facts."""

    api: PodAPI
    cri: cric.CRIClient
    refresh: Callable[[], Awaitable[Mapping[str, C.PodRuntime]]]
    writer: S.StatusWriter
    log_root: str
    cgroup_parent: str = ""
    host_ip: str = ""
    runtime_name: str = "corral"
    volumes: Volumes = field(default_factory=NoVolumes)
    env: EnvResolver = literal_env
    probes: ProbesFactory | None = None  # None: PodProber over cri.exec_sync
    node_name: str = ""
    backoff: Callable[[], Backoff] = Backoff
    resync: float = 5.0
    volume_refresh: float = 60.0  # seconds between refreshes of configMap/secret volumes
    pod_max_pids: int = -1  # --pod-max-pids: > 0, every pod cgroup's pids.max
    # the Runtime behind REFRESH (pods.Relist.runtime): what an act() made is read back by
    # status calls through it; None: a relist after every act()
    runtime: C.Runtime | None = None


class PodWorker(Termination):
    def __init__(self, env: WorkerEnv, pod: Mapping[str, Any], *, gone: bool = False) -> None:
        self.env = env
        self.pod: Mapping[str, Any] = pod
        self.uid = str(pod["metadata"]["uid"])
        self.key = f"{pod['metadata'].get('namespace') or 'default'}/{pod['metadata']['name']}"
        self.state = P.PENDING
        self.gone = gone
        self.backoff = env.backoff()
        self.probes = (env.probes or self._pod_prober)(pod, self.wake)
        self.waiting: dict[str, tuple[str, str]] = {}  # container name -> (reason, message)
        self._pull_retry: dict[str, tuple[float, float]] = {}  # name -> (at, delay)
        self._create_retry: dict[str, tuple[float, float]] = {}  # failed create/start
        self._refreshed: float | None = None  # monotonic time volumes were last written
        self._stopped = False  # terminate() done: only remove() is left (retried)
        self._remove_delay = 0.0
        self._wake = asyncio.Event()
        self._next_at = 0.0
        self.marks: dict[str, float] = {"seen": time.monotonic()}  # start timeline
        # (kind, id, sandbox id) new things this act() made; None: it changed others
        self._made: list[tuple[str, str, str]] | None = []

    def update(self, pod: Mapping[str, Any]) -> None:
        if str(pod["metadata"]["uid"]) == self.uid:
            self.pod = pod
            self.wake()

    def mark_gone(self) -> None:
        self.gone = True
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    @property
    def done(self) -> bool:
        return self.state is P.TERMINATED

    def _pod_prober(self, pod: Mapping[str, Any], wake: Callable[[], None]) -> Probes:
        return PR.PodProber(pod, exec_sync=PR.cri_exec(self.env.cri), on_change=wake)

    async def run(self) -> None:
        try:
            await self._loop()
        finally:
            await self.probes.close()  # no prober outlives its worker

    async def _loop(self) -> None:
        while not self.done:
            try:
                await self.sync()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("pod %s: sync failed", self.key)
                self._next_at = time.time() + 1
            if self.done:
                break
            wait = max(0.05, min(self.env.resync, self._next_at - time.time())
                       if self._next_at else self.env.resync)
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except TimeoutError:
                pass
            self._wake.clear()

    async def observe(self) -> C.PodRuntime:
        return (await self.env.refresh()).get(self.uid) or C.PodRuntime(self.uid)

    async def observe_made(self, rt: C.PodRuntime) -> C.PodRuntime:
        """RT after act(): RT plus a status call per thing made when that is all act() did
        (a relist lists every pod of the node; a burst of starts kept one running), else
        a relist."""
        made, self._made = self._made, None
        if made and self.env.runtime is not None:
            seen = await self.env.runtime.with_made(rt, made)
            if seen is not None:
                return seen
        return await self.observe()

    def _did(self, kind: str, ident: str, *, new: bool, sandbox_id: str = "") -> None:
        """Record what act() changed: only NEW things are observed by status calls."""
        if self._made is not None and new:
            self._made.append((kind, ident, sandbox_id))
        else:
            self._made = None

    async def sync(self) -> None:
        rt = await self.observe()
        self._next_at = 0.0
        for kind, reason, message in self.probes.take_events():  # before a Killing
            await self.event(kind, reason, message)
        # act until the state stops moving: sandbox, then init or main containers, in one
        # sync (waiting for the next relist between them cost up to its period per pod)
        for _ in range(len(PodState)):
            old = self.state
            self.state = settle(self.state, self.pod, rt, gone=self.gone)
            if self.state is not old:
                log.info("pod %s: %s -> %s", self.key, old.value, self.state.value)
            before = self.state
            self._made = []
            if not await self.act(rt):
                break
            rt = await self.observe_made(rt)
            self.state = settle(self.state, self.pod, rt, gone=self.gone)
            if self.state is before or self.state in (P.TERMINATING, P.TERMINATED):
                break
        if self.state in (P.TERMINATING, P.TERMINATED) or self.gone:
            return
        await self.refresh_volumes(rt)
        self.probes.update(self.pod, rt)
        view = S.StatusView(now_ns=time.time_ns(), waiting=dict(self.waiting),
                            ready=self.probes.ready, started=self.probes.started,
                            host_ip=self.env.host_ip, runtime_name=self.env.runtime_name)
        status = S.pod_status(self.pod, rt, view)
        self.env.writer.set(self.pod, status)
        if status.get("phase") == "Running" and "status" not in self.marks:
            self.mark("status")
            RECORDER.observe_pod_start(self.marks["status"] - self.marks["seen"])
            log.info("pod %s: running %.3f s after the agent saw it (%s)", self.key,
                     self.marks["status"] - self.marks["seen"], ", ".join(
                         f"{k} +{v - self.marks['seen']:.3f}" for k, v in self.marks.items()
                         if k not in ("seen", "status")))

    async def refresh_volumes(self, rt: C.PodRuntime) -> None:
        """configMap, secret and downwardAPI volumes follow their objects while the pod
        runs: rewritten (atomically, when changed) every env.volume_refresh seconds."""
        if self.state is not P.RUNNING:
            return
        now = time.monotonic()
        due = now if self._refreshed is None else self._refreshed + self.env.volume_refresh
        if now >= due:
            self._refreshed, due = now, now + self.env.volume_refresh
            sb = rt.sandbox()
            seen = with_sandbox_ips(self.pod, pod_ip=sb.ip if sb is not None else "",
                                    host_ip=self.env.host_ip)
            try:
                changed = await self.env.volumes.refresh(seen)
            except (errors.APIError, ValueError, OSError) as err:
                log.warning("pod %s: volumes: refresh: %s", self.key, err)
            else:
                if changed:
                    log.info("pod %s: volumes %s: updated", self.key, ", ".join(changed))
        at = time.time() + (due - now)
        self._next_at = min(self._next_at or at, at)

    def mark(self, phase: str) -> None:
        """The first time this worker reached PHASE (monotonic), for the start timeline."""
        self.marks.setdefault(phase, time.monotonic())

    async def event(self, kind: str, reason: str, message: str) -> None:
        """Best effort: an Event on the pod, as kubelet records Unhealthy and Killing."""
        ev = S.pod_event(self.pod, kind=kind, reason=reason, message=message,
                         node=self.env.node_name, now_ns=time.time_ns())
        try:
            await self.env.api.create("events", ev, namespace=ev["metadata"]["namespace"])
        except errors.APIError as err:
            log.debug("pod %s: event %s not recorded: %s", self.key, reason, err)

    async def act(self, rt: C.PodRuntime) -> bool:
        if self.state is P.PENDING:
            await self.run_sandbox(rt)
            return True
        if self.state is P.INITIALIZING:
            return await self.run_init(rt)
        if self.state is P.RUNNING:
            return await self.run_containers(rt)
        if self.state is P.TERMINATING:
            if not self._stopped:
                await self.terminate(rt)
                self._stopped = True  # a retry of remove() comes with a fresh RT
            try:
                await self.remove(rt)
            except Exception as err:  # retried: a sandbox or tmpfs must not leak
                self._remove_delay = min(BACKOFF_CAP, self._remove_delay * 2 or 1.0)
                self._next_at = time.time() + self._remove_delay
                log.warning("pod %s: remove: %s; retrying in %.0f s", self.key, err,
                            self._remove_delay)
                return False
            check_transition(self.key, self.state, P.TERMINATED)
            self.state = P.TERMINATED
            return False
        return False

    # ---- PENDING ----------------------------------------------------------------------

    async def run_sandbox(self, rt: C.PodRuntime) -> None:
        attempt = max((s.attempt + 1 for s in rt.sandboxes), default=0)
        for sb in rt.sandboxes:  # a dead sandbox: its containers go with it
            await self._remove_sandbox(sb.id)
        try:
            # the pod's own cgroup, under its QoS tier, with the pod's summed limits: the
            # runtime puts the sandbox's containers below it
            cgroup = await asyncio.to_thread(Q.ensure_pod_cgroup, self.pod,
                                             self.env.cgroup_parent,
                                             pod_max_pids=self.env.pod_max_pids)
            config = C.sandbox_config(self.pod, log_root=self.env.log_root,
                                      cgroup_parent=cgroup, attempt=attempt)
            sid = await self.env.cri.run_pod_sandbox(config)
            self.mark("sandbox")
            self._did("sandbox", sid, new=not rt.sandboxes and not rt.containers)
        except (cric.CRIError, Q.CgroupError) as err:
            self.waiting = {c["name"]: ("ContainerCreating", str(err))
                            for c in (self.pod.get("spec") or {}).get("containers") or []}
            self._next_at = time.time() + 2
            log.warning("pod %s: sandbox: %s", self.key, err)

    # ---- INITIALIZING -----------------------------------------------------------------

    async def run_init(self, rt: C.PodRuntime) -> bool:
        spec = self.pod.get("spec") or {}
        policy = str(spec.get("restartPolicy") or "Always")
        for c in spec.get("initContainers") or []:
            latest = rt.latest(c["name"])
            if latest is None:
                return await self.start(c, rt, attempt=0, init=True)
            if latest.state in ("running", "created"):
                return False
            if latest.exit_code == 0:
                continue
            if policy == "Never":
                return False
            return await self.restart_later(c, latest, rt, init=True)
        return False

    # ---- RUNNING ----------------------------------------------------------------------

    async def run_containers(self, rt: C.PodRuntime) -> bool:
        spec = self.pod.get("spec") or {}
        policy = str(spec.get("restartPolicy") or "Always")
        acted = False
        for c in spec.get("containers") or []:
            latest = rt.latest(c["name"])
            if latest is None:
                acted = await self.start(c, rt, attempt=0) or acted
            elif latest.state == "running":
                self.waiting.pop(c["name"], None)
                why = self.probes.kill_reason(c["name"], latest.id)
                if why is not None:
                    log.info("pod %s: %s", self.key, why.message)
                    await self.event("Normal", "Killing", why.message)
                    await self.kill(c, latest, rt,
                                    grace=probe_grace(c, why.kind, default=self._grace()))
                    acted = True
            elif latest.state == "exited" and S.will_restart(policy, latest):
                acted = await self.restart_later(c, latest, rt) or acted
            elif latest.state == "exited":
                self.waiting.pop(c["name"], None)
        return acted

    async def restart_later(self, c: Mapping[str, Any], latest: C.ContainerInfo,
                            rt: C.PodRuntime, *, init: bool = False) -> bool:
        at = self.backoff.restart_at(latest)
        now = time.time()
        if now < at:
            delay = round(at - latest.finished_at / 1e9)
            self.waiting[c["name"]] = ("CrashLoopBackOff", (
                f"back-off {delay}s restarting failed container={c['name']} "
                f"pod={self.pod['metadata']['name']}_{self.pod['metadata'].get('namespace')}"
                f"({self.uid})"))
            self._next_at = min(self._next_at or at, at)
            return False
        return await self.start(c, rt, attempt=latest.attempt + 1, init=init)

    async def start(self, c: Mapping[str, Any], rt: C.PodRuntime, *, attempt: int,
                    init: bool = False) -> bool:
        """Pull (per policy), create and start container C; False if it must wait."""
        name = str(c["name"])
        sb = rt.sandbox()
        if sb is None or not sb.ready:
            return False
        failed = self._create_retry.get(name)
        if failed is not None and time.time() < failed[0]:
            self._next_at = min(self._next_at or failed[0], failed[0])
            return False
        retry = self._pull_retry.get(name)
        if retry is not None and time.time() < retry[0]:
            # imagePullPolicy Never makes no pull to back off from: its reason stays
            if self.waiting.get(name, ("", ""))[0] != "ErrImageNeverPull":
                self.waiting[name] = ("ImagePullBackOff",
                                      f'Back-off pulling image "{c["image"]}"')
            self._next_at = min(self._next_at or retry[0], retry[0])
            return False
        try:
            await self.ensure_image(c)
        except cric.CRIError as err:
            delay = min(BACKOFF_CAP, (retry[1] * 2) if retry else BACKOFF_BASE)
            self._pull_retry[name] = (time.time() + delay, delay)
            reason = "ErrImageNeverPull" if isinstance(err, cric.NotFound) and \
                c.get("imagePullPolicy") == "Never" else "ErrImagePull"
            self.waiting[name] = (reason, str(err))
            self._next_at = time.time() + delay
            return False
        self._pull_retry.pop(name, None)
        try:
            seen = with_sandbox_ips(self.pod, pod_ip=sb.ip, host_ip=self.env.host_ip)
            env = await self.env.env(seen, c)
            prepared = await self.env.volumes.prepare(seen)
            self._refreshed = time.monotonic()
            # the checked mounts: subPath stays in its volume; configMap, secret and
            # downwardAPI volumes are read-only whatever the pod says
            mounts = [C.Mount(m.container_path, m.host_path, m.read_only) for m in
                      V.container_mounts(c, prepared, pod=str(self.pod["metadata"]["name"]))]
            config = C.container_config(self.pod, c, attempt=attempt, env=env,
                                        mounts=mounts, init=init)
        except (C.ConfigError, errors.APIError, ValueError) as err:
            self.waiting[name] = ("CreateContainerConfigError", str(err))
            self._next_at = time.time() + 2
            return False
        sandbox_config = C.sandbox_config(
            self.pod, log_root=self.env.log_root, attempt=sb.attempt,
            cgroup_parent=Q.pod_cgroup(self.pod, self.env.cgroup_parent))
        os.makedirs(os.path.join(sandbox_config.log_directory, name), exist_ok=True)
        log.info("pod %s: container %s: starting attempt %d", self.key, name, attempt)
        try:
            cid = await self.env.cri.create_container(sb.id, config,
                                                      sandbox_config=sandbox_config)
            self.mark("created")
        except cric.CRIError as err:
            log.warning("pod %s: container %s: %s", self.key, name, err)
            self.waiting[name] = ("CreateContainerError", str(err))
            self._failed(name)
            self._did("container", "", new=False)  # it may exist all the same
            return False
        try:
            await self.env.cri.start_container(cid)
            self.mark("started")
        except cric.CRIError as err:
            log.warning("pod %s: container %s: %s", self.key, name, err)
            self.waiting[name] = ("RunContainerError", str(err))
            self._failed(name)
            self._did("container", cid, new=False)
            await self._remove_container(cid)
            return True
        self._did("container", cid, sandbox_id=sb.id, new=attempt == 0 and not any(
            x.name == name and x.sandbox_id == sb.id for x in rt.containers))
        self.waiting.pop(name, None)
        self._create_retry.pop(name, None)
        # keep the newest dead attempt (logs --previous); remove older ones
        old = sorted((x for x in rt.containers if x.name == name and x.state == "exited"),
                     key=lambda x: (x.attempt, x.created_at))
        for x in old[:-1]:
            await self._remove_container(x.id)
        return True

    def _failed(self, name: str) -> None:
        """A create or start failed: retry after 1 s, doubling up to the back-off cap."""
        prev = self._create_retry.get(name)
        delay = min(BACKOFF_CAP, prev[1] * 2 if prev else 1.0)
        self._create_retry[name] = (time.time() + delay, delay)
        self._next_at = time.time() + delay

    async def ensure_image(self, c: Mapping[str, Any]) -> None:
        image = pb.ImageSpec(image=str(c["image"]))
        policy = str(c.get("imagePullPolicy") or "IfNotPresent")
        if policy == "Always":
            await self.env.cri.pull_image(image)
            return
        present = (await self.env.cri.image_status(image)).HasField("image")
        if present:
            return
        if policy == "Never":
            raise cric.NotFound("ImageStatus", "NOT_FOUND", f'image "{c["image"]}" is not present '
                           "and imagePullPolicy is Never", subject=str(c["image"]))
        await self.env.cri.pull_image(image)
