"""Connections to registries: one httpx client per registry, opened by the first request,
closed once idle; TLS set up only for https, and once per process.

    RegistryClient.resolve / get_manifest / fetch_blob
      └─ async with pool.use(registry) as client        users[registry] += 1 (in use)
            └─ client ──► transport.H11Transport ── http://  ──► plain TCP, no SSL context
                              (proxies: the same        └─ https:// ──► tls_context(verify=…):
                               ProxySettings for           one SSL context (the CA bundle) per
                               every registry)             process, built by the first https
                                                           request, shared while any client
                                                           holds it; verify=False only for the
                                                           registry's insecure_tls entry
      users[registry] == 0 ──► idle since now; the reaper closes a client IDLE s after its
      last use (never one in use) and ends when no client is left: a pull leaves no client,
      no connection and no CA bundle behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx

DEFAULT_IDLE = 60.0  # seconds a registry's client stays open after its last use

_TLS: dict[bool, weakref.ref[ssl.SSLContext]] = {}


def tls_context(*, verify: bool) -> ssl.SSLContext:
    """The process's SSL context for https registries (VERIFY: the CA bundle, or
    SSL_CERT_FILE / SSL_CERT_DIR, and the host name checked), built while none is alive."""
    ctx = _TLS[verify]() if verify in _TLS else None
    if ctx is None:
        ctx = httpx.create_ssl_context(verify=verify, trust_env=True)
        _TLS[verify] = weakref.ref(ctx)
    return ctx


def live_tls_contexts() -> int:
    """How many of the shared https contexts are still alive (referenced by an open client)."""
    return sum(1 for ref in _TLS.values() if ref() is not None)


class ClientPool:
    """Registry name -> open httpx client; each closed IDLE seconds after its last use."""

    def __init__(
        self,
        make: Callable[[str], httpx.AsyncClient],
        *,
        idle: float = DEFAULT_IDLE,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if idle <= 0:
            raise ValueError(f"idle: must be > 0 seconds, got {idle}")
        self._make = make
        self.idle = idle
        self._clock = clock
        self._sleep = sleep
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._users: dict[str, int] = {}
        self._idle_since: dict[str, float] = {}
        self._reaper: asyncio.Task[None] | None = None
        self.closed_idle = 0  # clients closed for being idle: for tests and metrics

    def open(self) -> list[str]:
        """The registries with an open client."""
        return sorted(self._clients)

    def in_use(self, registry: str) -> bool:
        return self._users.get(registry, 0) > 0

    def client(self, registry: str) -> httpx.AsyncClient:
        """REGISTRY's client, opened if need be (closed when idle unless ``use`` holds it)."""
        client = self._clients.get(registry)
        if client is None:
            client = self._clients[registry] = self._make(registry)
            if not self.in_use(registry):
                self._idle_since[registry] = self._clock()
                self._start_reaper()
        return client

    @contextlib.asynccontextmanager
    async def use(self, registry: str) -> AsyncIterator[httpx.AsyncClient]:
        """REGISTRY's client (opened if need be), not closed while the block runs."""
        self._users[registry] = self._users.get(registry, 0) + 1
        self._idle_since.pop(registry, None)
        try:
            yield self.client(registry)
        finally:
            self._users[registry] -= 1
            if not self._users[registry]:
                del self._users[registry]
                if registry in self._clients:
                    self._idle_since[registry] = self._clock()
                    self._start_reaper()

    def _start_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(
                self._reap(), name="registry-client-reaper")

    async def _reap(self) -> None:
        while self._idle_since:
            now = self._clock()
            due = min(self._idle_since.values()) + self.idle
            if due > now:
                await self._sleep(due - now)
                continue
            for registry in [r for r, t in self._idle_since.items() if t + self.idle <= now]:
                del self._idle_since[registry]
                client = self._clients.pop(registry, None)
                if client is not None:
                    self.closed_idle += 1
                    with contextlib.suppress(Exception):
                        await client.aclose()

    async def aclose(self) -> None:
        """Close every client now (in use or not) and stop the reaper."""
        reaper, self._reaper = self._reaper, None
        if reaper is not None and not reaper.done():
            reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reaper
        clients, self._clients = list(self._clients.values()), {}
        self._idle_since.clear()
        for c in clients:
            await c.aclose()
