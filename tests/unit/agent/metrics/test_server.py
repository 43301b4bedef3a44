"""server.py: a real asyncio server on 127.0.0.1, spoken to over a real socket."""

from __future__ import annotations

import asyncio
import gzip
import threading
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Gauge

from agent.metrics.server import MetricsServer, Request, parse_request, respond


async def fetch(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def registry_with_a_gauge() -> CollectorRegistry:
    registry = CollectorRegistry()
    Gauge("corral_test_answer", "A test gauge.", registry=registry).set(42)
    return registry


def get(path: str, *headers: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: x\r\n" + "".join(h + "\r\n" for h in headers)
            + "\r\n").encode()


@pytest.mark.asyncio
async def test_metrics_healthz_and_errors() -> None:
    healthy = [True]
    async with MetricsServer(registry_with_a_gauge(), healthy=lambda: healthy[0]) as server:
        status, headers, body = await fetch(server.port, get("/metrics"))
        assert status == 200
        assert headers["content-type"].startswith("text/plain; version=0.0.4")
        assert b"corral_test_answer 42.0" in body
        assert int(headers["content-length"]) == len(body)

        status, headers, body = await fetch(
            server.port, get("/metrics", "Accept: application/openmetrics-text; version=1.0.0",
                             "Accept-Encoding: gzip"))
        assert status == 200 and headers["content-encoding"] == "gzip"
        assert headers["content-type"].startswith("application/openmetrics-text")
        assert gzip.decompress(body).endswith(b"# EOF\n")

        assert (await fetch(server.port, get("/healthz")))[0] == 200
        healthy[0] = False
        assert (await fetch(server.port, get("/healthz")))[0] == 503
        assert (await fetch(server.port, get("/nothing")))[0] == 404
        status, headers, _ = await fetch(server.port, b"POST /metrics HTTP/1.1\r\n\r\n")
        assert status == 405 and headers["allow"] == "GET, HEAD"
        assert (await fetch(server.port, b"nonsense\r\n\r\n"))[0] == 400
        status, headers, body = await fetch(server.port, b"HEAD /metrics HTTP/1.1\r\n\r\n")
        assert status == 200 and body == b"" and int(headers["content-length"]) > 0


@pytest.mark.asyncio
async def test_close_stops_listening() -> None:
    server = MetricsServer(CollectorRegistry())
    await server.start()
    port = server.port
    await server.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.port


@pytest.mark.parametrize(("raw", "want"), [
    pytest.param(b"GET /metrics?x=1 HTTP/1.1\r\nAccept: text/plain\r\n\r\n",
                 Request("GET", "/metrics", {"accept": "text/plain"}), id="query-dropped"),
    pytest.param(b"GET /metrics\r\n\r\n", None, id="no-version"),
    pytest.param(b"GET / HTTP/1.1\r\nbroken header\r\n\r\n", None, id="bad-header"),
])
def test_parse_request(raw: bytes, want: Request | None) -> None:
    assert parse_request(raw) == want


def test_a_failing_collector_is_a_500() -> None:
    class Broken:
        def collect(self) -> list[object]:
            raise OSError("no cgroup")

        def describe(self) -> list[object]:
            return []

    registry = CollectorRegistry()
    registry.register(Broken())  # type: ignore[arg-type]
    response = respond(registry, Request("GET", "/metrics"))
    assert response.status == 500 and b"no cgroup" in response.body


@pytest.mark.asyncio
async def test_a_scrape_is_one_thread_hop_and_healthz_none(
        monkeypatch: pytest.MonkeyPatch) -> None:
    hops: list[str] = []
    real = asyncio.to_thread

    async def counting(fn: Any, /, *args: Any, **kw: Any) -> Any:
        hops.append(getattr(fn, "__name__", repr(fn)))
        return await real(fn, *args, **kw)
    monkeypatch.setattr(asyncio, "to_thread", counting)
    loop_thread = threading.get_ident()
    made_in: list[int] = []

    def make() -> CollectorRegistry:  # the lazy registry: made by the first scrape
        made_in.append(threading.get_ident())
        return registry_with_a_gauge()

    async with MetricsServer(make) as server:
        for _ in range(2):
            status, headers, body = await fetch(server.port, get("/metrics"))
            assert status == 200 and b"corral_test_answer 42.0" in body
            assert int(headers["content-length"]) == len(body)
        assert len(hops) == 2, f"one hop per scrape, got {hops}"
        assert made_in != [] and made_in[0] != loop_thread, "made off the event loop"
        assert len(made_in) == 1, "the registry is made once"
        assert (await fetch(server.port, get("/healthz")))[0] == 200
        assert (await fetch(server.port, get("/nothing")))[0] == 404
        assert len(hops) == 2, "/healthz and a 404 are answered on the loop"
