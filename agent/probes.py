"""Liveness, readiness and startup probes with Kubernetes' semantics.

    check(spec, target, *, exec_sync)  -> (Result, message)        one probe, any handler
        exec       exec_sync(container_id, command, timeout) -> (exit code, output); 0 is success
        httpGet    GET scheme://host:port/path (host: the pod IP), httpHeaders; status
                   200..399 is success; redirects to the same host are followed (10 at most),
                   a redirect elsewhere is a success, as kubelet does
        tcpSocket  a TCP connect
        Everything must finish within timeoutSeconds; any error is a failure.

    ProbeWorker(kind, spec, target, on_result=..., exec_sync=..., gate=...)
        run()     sleeps initialDelaySeconds (from the container's start), then step()
                  every periodSeconds until stop()
        step()    one probe, counted: the published result changes only after
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
        kill_reason(name, id)  set once a liveness or startup probe failed past its
                               threshold: the worker kills the container (restartPolicy)
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
import math
import ssl
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from agent.cri import PodRuntime

MAX_REDIRECTS = 10
MAX_BODY = 10 * 1024
USER_AGENT = "corral-probe/1.0"

ExecReply = tuple[int, bytes | str]
ExecSync = Callable[[str, list[str], float], Awaitable[ExecReply] | ExecReply]


class Result(enum.Enum):
    SUCCESS = "Success"
    FAILURE = "Failure"
    UNKNOWN = "Unknown"


class Kind(enum.Enum):
    LIVENESS = "livenessProbe"
    READINESS = "readinessProbe"
    STARTUP = "startupProbe"


INITIAL = {Kind.LIVENESS: Result.SUCCESS, Kind.READINESS: Result.FAILURE,
           Kind.STARTUP: Result.UNKNOWN}


@dataclass(frozen=True)
class Target:
    """What a probe is aimed at: the running container instance."""
    container_id: str
    pod_ip: str = ""
    started_at: float = 0.0                    # on the worker's clock
    ports: Mapping[str, int] = field(default_factory=dict)  # named container ports


@dataclass(frozen=True)
class ProbeUpdate:
    container: str
    container_id: str
    kind: Kind
    result: Result
    message: str = ""


def named_ports(container: Mapping[str, Any]) -> dict[str, int]:
    return {p["name"]: int(p["containerPort"]) for p in container.get("ports") or []
            if p.get("name") and p.get("containerPort")}


# ---- one probe --------------------------------------------------------------------------

async def check(spec: Mapping[str, Any], target: Target, *,
                exec_sync: ExecSync | None = None) -> tuple[Result, str]:
    """Run the handler of probe SPEC once against TARGET."""
    timeout = float(spec.get("timeoutSeconds") or 1)
    try:
        if spec.get("exec") is not None:
            if exec_sync is None:
                return Result.FAILURE, "exec probe: no exec_sync given to the prober"
            return await _exec(spec["exec"], target, exec_sync, timeout)
        if spec.get("httpGet") is not None:
            return await asyncio.wait_for(_http(spec["httpGet"], target, timeout), timeout)
        if spec.get("tcpSocket") is not None:
            return await asyncio.wait_for(_tcp(spec["tcpSocket"], target), timeout)
    except TimeoutError:
        return Result.FAILURE, f"probe timed out after {timeout:g}s"
    except (OSError, ValueError) as err:
        return Result.FAILURE, f"probe failed: {err}"
    return Result.FAILURE, "probe has no handler (exec, httpGet or tcpSocket)"


async def _exec(handler: Mapping[str, Any], target: Target, exec_sync: ExecSync,
                timeout: float) -> tuple[Result, str]:
    cmd = [str(a) for a in handler.get("command") or []]
    try:
        reply = exec_sync(target.container_id, cmd, timeout)
        if inspect.isawaitable(reply):
            reply = await asyncio.wait_for(reply, timeout + 1)  # exec_sync has its own
        code, output = reply
    except TimeoutError:
        return Result.FAILURE, f"command {cmd} timed out after {timeout:g}s"
    except Exception as err:
        return Result.FAILURE, f"command {cmd}: {err}"
    text = output.decode(errors="replace") if isinstance(output, bytes) else str(output)
    if code == 0:
        return Result.SUCCESS, text
    return Result.FAILURE, f"command {cmd} exited {code}: {text}"


def _port(value: Any, target: Target) -> int:
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        port = int(value)
    elif value in target.ports:
        port = target.ports[value]
    else:
        raise ValueError(f"no container port named {value!r}")
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    return port


async def _tcp(handler: Mapping[str, Any], target: Target) -> tuple[Result, str]:
    host = handler.get("host") or target.pod_ip
    port = _port(handler.get("port"), target)
    _, writer = await asyncio.open_connection(host, port)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return Result.SUCCESS, f"connected to {host}:{port}"


async def _http(handler: Mapping[str, Any], target: Target,
                timeout: float) -> tuple[Result, str]:
    scheme = str(handler.get("scheme") or "HTTP").lower()
    host = handler.get("host") or target.pod_ip
    port = _port(handler.get("port"), target)
    path = str(handler.get("path") or "/")
    if not path.startswith("/"):
        path = "/" + path
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    url = f"{scheme}://{netloc}{path}"
    headers = [(str(h.get("name", "")), str(h.get("value", "")))
               for h in handler.get("httpHeaders") or []]
    for _ in range(MAX_REDIRECTS + 1):
        status, location, body = await _get(url, headers)
        if not 300 <= status < 400 or not location:
            break
        nxt = urllib.parse.urljoin(url, location)
        if urllib.parse.urlsplit(nxt).hostname != urllib.parse.urlsplit(url).hostname:
            return Result.SUCCESS, f"HTTP {status}: redirect to another host not followed"
        url = nxt
    else:
        return Result.FAILURE, f"stopped after {MAX_REDIRECTS} redirects"
    if 200 <= status < 400:
        return Result.SUCCESS, f"HTTP {status}"
    return Result.FAILURE, f"HTTP probe failed with statuscode: {status} {body[:200]!r}"


async def _get(url: str, headers: list[tuple[str, str]]) -> tuple[int, str, bytes]:
    """One HTTP/1.1 GET: (status, Location, the head of the body)."""
    parts = urllib.parse.urlsplit(url)
    tls = None
    if parts.scheme == "https":
        tls = ssl.create_default_context()
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE  # kubelet does not verify probe certificates
    port = parts.port or (443 if tls else 80)
    reader, writer = await asyncio.open_connection(parts.hostname, port, ssl=tls)
    try:
        names = {n.lower() for n, _ in headers}
        lines = [f"GET {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1"]
        if "host" not in names:
            lines.append(f"Host: {parts.netloc}")
        if "user-agent" not in names:
            lines.append(f"User-Agent: {USER_AGENT}")
        if "accept" not in names:
            lines.append("Accept: */*")
        lines += [f"{n}: {v}" for n, v in headers if n.lower() != "connection"]
        lines.append("Connection: close")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        status_line = (await reader.readline()).decode("latin-1")
        fields = status_line.split(" ", 2)
        if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
            raise ValueError(f"not an HTTP response: {status_line[:80]!r}")
        location = ""
        while True:
            line = (await reader.readline()).decode("latin-1").rstrip("\r\n")
            if not line:
                break
            name, _, value = line.partition(":")
            if name.strip().lower() == "location":
                location = value.strip()
        body = await reader.read(MAX_BODY)
        return int(fields[1]), location, body
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


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


class ExecSyncer(Protocol):
    """The CRI client's ExecSync (runtime/service/cri/client.py CRIClient)."""

    async def exec_sync(self, container_id: str, cmd: Iterable[str], *,
                        timeout: int = 0) -> Any: ...


def cri_exec(cri: ExecSyncer) -> ExecSync:
    """Exec probes through CRI ExecSync: (exit code, stdout + stderr)."""
    async def run(cid: str, cmd: list[str], timeout: float) -> tuple[int, bytes]:
        reply = await cri.exec_sync(cid, cmd, timeout=max(1, math.ceil(timeout)))
        return int(reply.exit_code), bytes(reply.stdout) + bytes(reply.stderr)
    return run


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
        self.kills: dict[str, tuple[str, str]] = {}  # name -> (instance, why)
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
                self.kills[update.container] = (update.container_id, (
                    f"Container {update.container} failed {what.lower()} probe, will be "
                    "restarted"))
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

    def kill_reason(self, name: str, container_id: str) -> str:
        """Why the instance CONTAINER_ID of NAME must be killed ("" if it need not)."""
        cid, why = self.kills.get(name, ("", ""))
        return why if cid == container_id else ""

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

    def kill_reason(self, name: str, container_id: str) -> str:
        return ""

    def take_events(self) -> list[tuple[str, str, str]]:
        return []

    async def close(self) -> None:
        return None
