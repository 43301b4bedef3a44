"""The registry client's HTTP/1.1 transport: asyncio streams + h11, one connection per
request, TLS only for https.

    httpx.AsyncClient (auth, redirects, headers) ──► H11Transport.handle_async_request
        connect    asyncio.open_connection(host, port[, ssl=tls_context(verify=…)])
                   ≤ timeout["connect"]            ──► httpx.ConnectTimeout | ConnectError
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

READ_SIZE = 64 * 1024
T = TypeVar("T")


def _timeout(request: httpx.Request, key: str) -> float | None:
    value = (request.extensions.get("timeout") or {}).get(key)
    return float(value) if value is not None else None


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.CLIENT)

    async def next_event(self, request: httpx.Request) -> object:
        """The next h11 event from the peer, reading as needed (each read within the
        request's read timeout)."""
        while True:
            peer = request.url.netloc.decode()
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as e:
                raise httpx.RemoteProtocolError(f"{peer}: {e}", request=request) from e
            if event is not h11.NEED_DATA:
                return event
            data = await _within(self.reader.read(READ_SIZE), _timeout(request, "read"),
                                 request, timeout=httpx.ReadTimeout, error=httpx.ReadError)
            if not data and self.h11.their_state is h11.SEND_RESPONSE:
                raise httpx.RemoteProtocolError(
                    f"{peer} closed the connection without an answer", request=request)
            self.h11.receive_data(data)  # b"": the peer closed

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)


async def _within(
    aw: Awaitable[T], seconds: float | None, request: httpx.Request, *,
    timeout: type[httpx.TimeoutException], error: type[httpx.TransportError],
) -> T:
    try:
        return await asyncio.wait_for(aw, seconds)
    except TimeoutError:
        raise timeout(f"no answer from {request.url.netloc.decode()} within {seconds:g} s",
                      request=request) from None
    except OSError as e:  # resets, refusals, TLS failures (ssl.SSLError is an OSError)
        raise error(f"{type(e).__name__}: {e}", request=request) from e


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


class H11Transport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over asyncio streams; https with the SSL context TLS() returns (called on
    the first https request only, so an http registry never builds one)."""

    def __init__(self, *, tls_context: Callable[[], ssl.SSLContext] | None = None) -> None:
        self._tls_context = tls_context
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
        reader, writer = await _within(
            asyncio.open_connection(url.host, port, ssl=context,
                                    server_hostname=url.host if context else None),
            _timeout(request, "connect"), request,
            timeout=httpx.ConnectTimeout, error=httpx.ConnectError)
        conn = _Connection(reader, writer)
        try:
            body = await request.aread()
            headers = [(k, v) for k, v in request.headers.raw if k.lower() != b"connection"]
            try:
                out = conn.h11.send(h11.Request(method=request.method, target=url.raw_path,
                                                headers=[*headers, (b"Connection", b"close")]))
                out = (out or b"") + ((conn.h11.send(h11.Data(data=body)) or b"") if body
                                      else b"")
                out += conn.h11.send(h11.EndOfMessage()) or b""
            except h11.LocalProtocolError as e:
                raise httpx.LocalProtocolError(f"{url}: {e}", request=request) from e
            writer.write(out)
            await _within(writer.drain(), _timeout(request, "write"), request,
                          timeout=httpx.WriteTimeout, error=httpx.WriteError)
            while True:
                event = await conn.next_event(request)
                if isinstance(event, h11.Response):
                    break  # an h11.InformationalResponse (1xx) is skipped
        except BaseException:
            await conn.aclose()
            raise
        return httpx.Response(
            status_code=event.status_code, headers=list(event.headers),
            stream=_Body(conn, request),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": bytes(event.reason)})
