"""The registry client's HTTP/1.1 transport: asyncio streams + h11, one connection per
request, TLS only for https, through an http proxy when proxy.py says so.

    httpx.AsyncClient (auth, redirects, headers) ──► H11Transport.handle_async_request
        route      proxies.proxy_for(scheme, host, port) ──► direct | Proxy
        connect    direct:   asyncio.open_connection(host, port[, ssl=tls_context()])
                   proxied:  open_connection(proxy) ──► httpx.ProxyError "proxy URL: …"
                     http://   the request in absolute form: GET http://host:port/path
                     https://  CONNECT host:port ──2xx──► start_tls(tls_context(),
                               server_hostname=host) inside the tunnel
                               non-2xx ──► ProxyRefused (4xx: not retried) | ProxyError
                               (3xx, 5xx: retried); http: a 407 is ProxyRefused, any other
                               answer is the registry's (relayed)
                   each ≤ timeout["connect"]       ──► httpx.ConnectTimeout | ConnectError
        send       h11.Request (+ body), Connection: close  ≤ timeout["write"]
        receive    h11 events until the Response (status, headers, reason)
        body       _Body: h11.Data chunks, each ≤ timeout["read"] (a stall)
                   ──► httpx.ReadTimeout | ReadError | RemoteProtocolError (a cut body)
        close      at the body's end, or when the caller closes the response

Why not httpx's own transport (httpcore on anyio): a pull would leave httpcore, anyio and
its asyncio backend loaded in the node for good (~2.5 MB RSS measured); asyncio and ssl are
loaded anyway. A pull makes a handful of requests, so connections are not kept alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import h11
import httpx

from runtime.service.images.proxy import Proxy, ProxySettings

READ_SIZE = 64 * 1024
T = TypeVar("T")


class ProxyRefused(httpx.ProxyError):
    """The proxy said no (a 4xx), or the proxy setting is unusable: trying again will not
    help. ``status`` is the proxy's answer (None for a bad setting)."""

    def __init__(self, message: str, *, request: httpx.Request, status: int | None) -> None:
        super().__init__(message, request=request)
        self.status = status


def _timeout(request: httpx.Request, key: str) -> float | None:
    value = (request.extensions.get("timeout") or {}).get(key)
    return float(value) if value is not None else None


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 peer: str) -> None:
        self.reader = reader
        self.writer = writer
        self.peer = peer  # who answers: the registry, or "proxy URL" until the tunnel is up
        self.h11 = h11.Connection(h11.CLIENT)

    async def send(self, request: httpx.Request, events: list[h11.Event]) -> None:
        try:
            out = b"".join(self.h11.send(e) or b"" for e in events)
        except h11.LocalProtocolError as e:
            raise httpx.LocalProtocolError(f"{request.url}: {e}", request=request) from e
        self.writer.write(out)
        await _within(self.writer.drain(), _timeout(request, "write"), request,
                      peer=self.peer, timeout=httpx.WriteTimeout, error=httpx.WriteError)

    async def next_event(self, request: httpx.Request) -> object:
        """The next h11 event from the peer, reading as needed (each read within the
        request's read timeout)."""
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as e:
                raise httpx.RemoteProtocolError(f"{self.peer}: {e}", request=request) from e
            if event is not h11.NEED_DATA:
                return event
            data = await _within(self.reader.read(READ_SIZE), _timeout(request, "read"),
                                 request, peer=self.peer, timeout=httpx.ReadTimeout,
                                 error=httpx.ReadError)
            if not data and self.h11.their_state is h11.SEND_RESPONSE:
                raise httpx.RemoteProtocolError(
                    f"{self.peer} closed the connection without an answer", request=request)
            self.h11.receive_data(data)  # b"": the peer closed

    async def response(self, request: httpx.Request) -> h11.Response:
        while True:
            event = await self.next_event(request)
            if isinstance(event, h11.Response):
                return event  # an h11.InformationalResponse (1xx) is skipped

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)


async def _within(
    aw: Awaitable[T], seconds: float | None, request: httpx.Request, *, peer: str,
    timeout: type[httpx.TimeoutException], error: type[httpx.TransportError],
    named: bool = False,
) -> T:
    """AW within SECONDS; a timeout or an OSError as the httpx error given (its message
    starting with PEER if NAMED: the registry's own name is in every pull error already)."""
    try:
        return await asyncio.wait_for(aw, seconds)
    except TimeoutError:
        raise timeout(f"no answer from {peer} within {seconds:g} s", request=request) from None
    except OSError as e:  # resets, refusals, TLS failures (ssl.SSLError is an OSError)
        prefix = f"{peer}: " if named else ""
        raise error(f"{prefix}{type(e).__name__}: {e}", request=request) from e


class _Body(httpx.AsyncByteStream):
    def __init__(self, conn: _Connection, request: httpx.Request) -> None:
        self._conn = conn
        self._request = request
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            while True:
                event = await self._conn.next_event(self._request)
                if isinstance(event, h11.Data):
                    yield bytes(event.data)
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    break
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._conn.aclose()


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _refusal(proxy: Proxy, what: str, status: int, reason: bytes,
             request: httpx.Request) -> httpx.ProxyError:
    message = f"proxy {proxy}: {what} answered {status} {reason.decode(errors='replace')}"
    if status in (401, 407):  # tinyproxy answers 401 to wrong credentials, 407 to none
        message += (" (credentials rejected)" if proxy.authorization
                    else " (no credentials in the proxy URL)")
    if 400 <= status < 500:
        return ProxyRefused(message.strip(), request=request, status=status)
    return httpx.ProxyError(message.strip(), request=request)  # 5xx, 3xx: worth a retry


class H11Transport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over asyncio streams; https with the SSL context TLS_CONTEXT() returns
    (called on the first https request only, so an http registry never builds one);
    through the proxy PROXIES names for the request, if any."""

    def __init__(self, *, tls_context: Callable[[], ssl.SSLContext] | None = None,
                 proxies: ProxySettings | None = None) -> None:
        self._tls_context = tls_context
        self._proxies = proxies or ProxySettings()
        self.uses_tls = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        https = url.scheme == "https"
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"{url}: only http and https", request=request)
        context: ssl.SSLContext | None = None
        if https:
            if self._tls_context is None:
                raise httpx.UnsupportedProtocol(f"{url}: no TLS configured", request=request)
            context = self._tls_context()
            self.uses_tls = True
        port = url.port or (443 if https else 80)
        try:
            proxy = self._proxies.proxy_for(url.scheme, url.host, port)
        except ValueError as e:
            raise ProxyRefused(str(e), request=request, status=None) from None
        if proxy is None:
            conn = await self._open(url.host, port, request, peer=url.netloc.decode(),
                                    context=context)
        else:
            conn = await self._open(proxy.host, proxy.port, request, peer=f"proxy {proxy}",
                                    context=None)
        try:
            target = url.raw_path
            headers = [(k, v) for k, v in request.headers.raw if k.lower() != b"connection"]
            if proxy is not None and context is not None:
                await self._tunnel(conn, proxy, request, context=context)
            elif proxy is not None:
                target = url.raw_scheme + b"://" + url.netloc + url.raw_path  # absolute form
                if proxy.authorization:
                    headers.append((b"Proxy-Authorization", proxy.authorization.encode()))
            body = await request.aread()
            events: list[h11.Event] = [h11.Request(
                method=request.method, target=target,
                headers=[*headers, (b"Connection", b"close")])]
            await conn.send(request, [*events, *([h11.Data(data=body)] if body else []),
                                      h11.EndOfMessage()])
            event = await conn.response(request)
            if proxy is not None and context is None and event.status_code == 407:
                raise _refusal(proxy, request.method, 407, bytes(event.reason), request)
        except BaseException:
            await conn.aclose()
            raise
        return httpx.Response(
            status_code=event.status_code, headers=list(event.headers),
            stream=_Body(conn, request),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": bytes(event.reason)})

    async def _open(self, host: str, port: int, request: httpx.Request, *, peer: str,
                    context: ssl.SSLContext | None) -> _Connection:
        reader, writer = await _within(
            asyncio.open_connection(host, port, ssl=context,
                                    server_hostname=host if context else None),
            _timeout(request, "connect"), request, peer=peer, named=peer.startswith("proxy "),
            timeout=httpx.ConnectTimeout,
            error=httpx.ProxyError if peer.startswith("proxy ") else httpx.ConnectError)
        return _Connection(reader, writer, peer=peer)

    async def _tunnel(self, conn: _Connection, proxy: Proxy, request: httpx.Request, *,
                      context: ssl.SSLContext) -> None:
        """CONNECT to the registry through PROXY, then TLS with the registry inside."""
        url = request.url
        authority = _authority(url.host, url.port or 443).encode()
        headers = [(b"Host", authority)]
        if proxy.authorization:
            headers.append((b"Proxy-Authorization", proxy.authorization.encode()))
        await conn.send(request, [h11.Request(method=b"CONNECT", target=authority,
                                              headers=headers), h11.EndOfMessage()])
        answer = await conn.response(request)
        if not 200 <= answer.status_code < 300:
            raise _refusal(proxy, "CONNECT", answer.status_code, bytes(answer.reason), request)
        if conn.h11.trailing_data[0]:
            raise httpx.ProxyError(f"proxy {proxy}: sent data after its CONNECT answer",
                                   request=request)
        await _within(conn.writer.start_tls(context, server_hostname=url.host),
                      _timeout(request, "connect"), request,
                      peer=f"{url.netloc.decode()} through proxy {proxy}", named=True,
                      timeout=httpx.ConnectTimeout, error=httpx.ConnectError)
        conn.peer = url.netloc.decode()
        conn.h11 = h11.Connection(h11.CLIENT)
