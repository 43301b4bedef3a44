"""H11Transport against scripted HTTP answers from an asyncio server on 127.0.0.1: bodies
(sized, chunked, HEAD), each failure mapped to the httpx error the retry loop expects, and
https against a self-signed certificate (trusted when its CA is given, refused otherwise)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path

import httpx
import pytest

from runtime.service.images import connections as conn
from runtime.service.images.transport import H11Transport
from tests.support import certs

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n"
HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nDocker-Content-Digest: sha256:x\r\n\r\n"
CUT = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello"
TEAPOT = b"HTTP/1.1 418 I'm a teapot\r\nContent-Length: 0\r\n\r\n"
GARBAGE = b"SMTP ready\r\n\r\n"
SILENT = b""  # read the request, answer nothing, keep the connection open
CLOSE = None  # read the request, close without answering


async def exchange(answer: bytes | None, *, method: str = "GET"
                   ) -> tuple[httpx.Response | None, bytes, BaseException | None, bytes]:
    """(response, body, error, the request as the server read it)."""
    seen = bytearray()
    hold = asyncio.Event()

    async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        seen.extend(await r.readuntil(b"\r\n\r\n"))
        if answer is None:
            w.close()
            return
        w.write(answer)
        await w.drain()
        if answer in (SILENT, CUT):
            await hold.wait()
        w.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    resp, body, err = None, b"", None
    try:
        async with httpx.AsyncClient(transport=H11Transport(),
                                     timeout=httpx.Timeout(0.5)) as client:
            try:
                resp = await client.request(method, f"http://127.0.0.1:{port}/v2/x?n=1",
                                            headers={"Accept": "a/b"})
                body = resp.content
            except httpx.HTTPError as e:
                err = e
    finally:
        hold.set()
        server.close()
        await server.wait_closed()
    return resp, body, err, bytes(seen)


@pytest.mark.parametrize(
    ("answer", "method", "status", "body"),
    [pytest.param(OK, "GET", 200, b"hello", id="sized"),
     pytest.param(CHUNKED, "GET", 200, b"hello", id="chunked"),
     pytest.param(HEAD, "HEAD", 200, b"", id="head-has-no-body"),
     pytest.param(TEAPOT, "GET", 418, b"", id="status-and-reason")],
)
def test_answers(answer: bytes, method: str, status: int, body: bytes) -> None:
    resp, got, err, seen = asyncio.run(exchange(answer, method=method))
    assert err is None and resp is not None
    assert resp.status_code == status and got == body
    assert resp.reason_phrase == answer.split(b"\r\n")[0].split(b" ", 2)[2].decode()
    assert seen.startswith(f"{method} /v2/x?n=1 HTTP/1.1\r\n".encode())
    assert b"accept: a/b\r\n" in seen.lower() and b"connection: close\r\n" in seen.lower()
    assert b"host: 127.0.0.1:" in seen.lower()


@pytest.mark.parametrize(
    ("answer", "error", "message"),
    [pytest.param(CUT, httpx.ReadTimeout, "within 0.5 s", id="stall-mid-body"),
     pytest.param(SILENT, httpx.ReadTimeout, "within 0.5 s", id="no-answer"),
     pytest.param(CLOSE, httpx.RemoteProtocolError, "without an answer", id="closed"),
     pytest.param(GARBAGE, httpx.RemoteProtocolError, "127.0.0.1:", id="not-http")],
)
def test_failures_are_httpx_transport_errors(answer: bytes | None, error: type[Exception],
                                             message: str) -> None:
    _, _, err, _ = asyncio.run(exchange(answer))
    assert isinstance(err, error) and isinstance(err, httpx.TransportError), repr(err)
    assert message in str(err)


def test_cut_body_is_a_protocol_error() -> None:
    """The peer closes before Content-Length bytes came: not a short, silent success."""
    async def go() -> BaseException | None:
        async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await r.readuntil(b"\r\n\r\n")
            w.write(CUT)
            await w.drain()
            w.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with httpx.AsyncClient(transport=H11Transport()) as client:
                await client.get(f"http://127.0.0.1:{port}/")
        except httpx.HTTPError as e:
            return e
        finally:
            server.close()
            await server.wait_closed()
        return None

    err = asyncio.run(go())
    assert isinstance(err, httpx.RemoteProtocolError), repr(err)


def test_https_without_tls_configured_is_refused() -> None:
    async def go() -> None:
        async with httpx.AsyncClient(transport=H11Transport()) as client:
            with pytest.raises(httpx.UnsupportedProtocol, match="no TLS configured"):
                await client.get("https://127.0.0.1:9/")

    asyncio.run(go())


@pytest.mark.parametrize("trusted", [pytest.param(True, id="trusted-ca"),
                                     pytest.param(False, id="default-cas-refuse-it")])
def test_https_is_verified(tmp_path: Path, trusted: bool) -> None:
    key, cert = certs.self_signed(tmp_path, "127.0.0.1")

    async def go() -> tuple[int | None, BaseException | None]:
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(cert, key)

        async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                await r.readuntil(b"\r\n\r\n")
                w.write(OK)
                await w.drain()
            w.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]

        def context() -> ssl.SSLContext:
            return ssl.create_default_context(cafile=cert) if trusted else \
                conn.tls_context(verify=True)
        try:
            async with httpx.AsyncClient(transport=H11Transport(tls_context=context)) as c:
                r = await c.get(f"https://127.0.0.1:{port}/v2/")
                return r.status_code, None
        except httpx.HTTPError as e:
            return None, e
        finally:
            server.close()
            await server.wait_closed()

    status, err = asyncio.run(go())
    if trusted:
        assert status == 200 and err is None
    else:
        assert isinstance(err, httpx.ConnectError) and "CERTIFICATE_VERIFY_FAILED" in str(err)
