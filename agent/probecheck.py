"""One probe, and the handlers it runs (probes.py counts the results and keeps the
state of each container's probers; it re-exports what its callers need from here).

    check(spec, target, *, exec_sync)  -> (Result, message)
        exec       exec_sync(container_id, command, timeout) -> (exit code, output); 0 is success
        httpGet    GET scheme://host:port/path (host: the pod IP), httpHeaders; status
                   200..399 is success; redirects to the same host are followed (10 at most),
                   a redirect elsewhere is a success, as kubelet does
        tcpSocket  a TCP connect
        Everything must finish within timeoutSeconds; any error is a failure (never raised).

    cri_exec(cri)   exec probes through CRI ExecSync: (exit code, stdout + stderr)
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import math
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

MAX_REDIRECTS = 10
MAX_BODY = 10 * 1024
USER_AGENT = "corral-probe/1.0"

ExecReply = tuple[int, bytes | str]
ExecSync = Callable[[str, list[str], float], Awaitable[ExecReply] | ExecReply]


class Result(enum.Enum):
    SUCCESS = "Success"
    FAILURE = "Failure"
    UNKNOWN = "Unknown"


@dataclass(frozen=True)
class Target:
    """What a probe is aimed at: the running container instance."""
    container_id: str
    pod_ip: str = ""
    started_at: float = 0.0                    # on the worker's clock
    ports: Mapping[str, int] = field(default_factory=dict)  # named container ports


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
