"""The agent's HTTP endpoint for Prometheus: GET /metrics and GET /healthz, on asyncio.

    MetricsServer(registry, host, port).start()   asyncio.start_server
        connection -> read_request (request line + headers, bounded)
                   -> GET /metrics: one worker thread makes the registry (the first time)
                      and renders it: respond(registry, ...); collect() reads every
                      container's cgroup files, and with 100 containers (2,200 series)
                      the rendering alone takes ~50 ms, too long for the event loop
                   -> anything else: respond(None, ...) on the loop (no I/O; `healthy`
                      must not block)
                   -> one response, then close

Content negotiation is prometheus_client's (text 0.0.4 or OpenMetrics, per Accept), and
the body is gzipped when the scraper accepts it, as Prometheus does.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:  # prometheus_client loads with the first scrape (MetricsServer)
    from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 16 * 1024
READ_TIMEOUT = 10.0  # seconds for a client to send its request
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           500: "Internal Server Error", 503: "Service Unavailable"}


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Response:
    status: int
    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self, *, head: bool = False) -> bytes:
        lines = [f"HTTP/1.1 {self.status} {REASONS.get(self.status, 'Unknown')}",
                 f"Content-Type: {self.content_type}",
                 f"Content-Length: {len(self.body)}",
                 "Connection: close",
                 *(f"{k}: {v}" for k, v in self.headers.items())]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + (b"" if head else self.body)


def parse_request(raw: bytes) -> Request | None:
    """The request line and headers of raw (up to the blank line); None if malformed."""
    try:
        text = raw.decode("latin-1")
    except UnicodeDecodeError:
        return None
    lines = text.split("\r\n")
    parts = lines[0].split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return None
    headers = {}
    for line in lines[1:]:
        if not line:
            break
        name, sep, value = line.partition(":")
        if not sep:
            return None
        headers[name.strip().lower()] = value.strip()
    return Request(method=parts[0], path=parts[1].split("?", 1)[0], headers=headers)


def _registry_type() -> type[CollectorRegistry]:
    from prometheus_client import CollectorRegistry

    return CollectorRegistry


def _text(status: int, message: str) -> Response:
    return Response(status, "text/plain; charset=utf-8", (message + "\n").encode())


def respond(registry: CollectorRegistry | None, request: Request, *,
            healthy: Callable[[], bool] | None = None) -> Response:
    """Route one request. Blocking: /metrics runs every collector (REGISTRY: None only for
    requests that are not GET /metrics)."""
    if request.method not in ("GET", "HEAD"):
        return Response(405, "text/plain; charset=utf-8", b"method not allowed\n",
                        {"Allow": "GET, HEAD"})
    if request.path == "/healthz":
        ok = healthy() if healthy is not None else True
        return _text(200, "ok") if ok else _text(503, "unhealthy")
    if request.path != "/metrics" or registry is None:
        return _text(404, f"no such path: {request.path}")
    from prometheus_client.exposition import choose_encoder

    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    try:
        body = encoder(registry)
    except Exception as e:
        log.exception("metrics: rendering /metrics failed")
        return _text(500, f"rendering metrics failed: {e}")
    headers = {}
    if "gzip" in request.headers.get("accept-encoding", ""):
        body = gzip.compress(body, compresslevel=1)
        headers["Content-Encoding"] = "gzip"
    return Response(200, content_type, body, headers)


class MetricsServer:
    """Serves `registry` on host:port (port 0: any free port; see .port once started).

    REGISTRY may be a function that makes it: called on the first GET /metrics, so that
    prometheus_client stays unloaded until something scrapes (/healthz never needs it)."""

    def __init__(self, registry: CollectorRegistry | Callable[[], CollectorRegistry], *,
                 host: str = "127.0.0.1", port: int = 0,
                 healthy: Callable[[], bool] | None = None) -> None:
        self._registry = registry
        self._made: CollectorRegistry | None = None
        self._lock = threading.Lock()
        self.host = host
        self.requested_port = port
        self.healthy = healthy  # called on the event loop: it must not block
        self._server: asyncio.Server | None = None

    @property
    def registry(self) -> CollectorRegistry:
        with self._lock:  # one first scrape makes it, however many arrive at once
            if self._made is None:
                src = self._registry
                self._made = src if isinstance(src, _registry_type()) else cast(
                    "Callable[[], CollectorRegistry]", src)()
            return self._made

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("MetricsServer: port: the server is not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.requested_port,
                                                  limit=MAX_HEADER_BYTES)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> MetricsServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _scrape(self, request: Request) -> Response:
        """A request for /metrics, in one worker thread: the registry (made by the first
        scrape) and its rendering."""
        return respond(self.registry, request, healthy=self.healthy)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                    ConnectionError):
                return
            request = parse_request(raw)
            if request is None:
                response = _text(400, "malformed request")
                head = False
            else:
                response = (await asyncio.to_thread(self._scrape, request)
                            if request.path == "/metrics" else
                            respond(None, request, healthy=self.healthy))
                head = request.method == "HEAD"
            writer.write(response.encode(head=head))
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except ConnectionError:
                pass
