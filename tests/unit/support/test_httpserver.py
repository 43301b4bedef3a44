"""tests/support/httpserver.py: a real server on 127.0.0.1, asked with a real client."""

from __future__ import annotations

import socket
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler

import pytest

from tests.support import httpserver

# urllib honours http_proxy; these requests go to 127.0.0.1 only
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Echo(httpserver.Service):
    thread_name = "corral-test-echo"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        class Handler(httpserver.QuietHandler):
            def do_GET(self) -> None:
                body = f"{self.path} {threading.current_thread().name}".encode()
                self.send_response(200 if self.path != "/missing" else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
        return Handler


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with OPENER.open(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def refused(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize("path, status", [
    pytest.param("/a", 200, id="ok"),
    pytest.param("/missing", 404, id="not-found"),
])
def test_service_serves_its_handler_on_a_free_loopback_port(path: str, status: int) -> None:
    with Echo() as srv:
        assert srv.port > 0
        code, body = get(srv.port, path)
        assert code == status and body.startswith(f"{path} ")
        names = [t.name for t in threading.enumerate()]
        assert "corral-test-echo" in names


def test_stop_closes_the_port_and_joins_the_thread() -> None:
    srv = Echo().start()
    port = srv.port
    assert get(port, "/x")[0] == 200
    srv.stop()
    assert refused(port)
    assert "corral-test-echo" not in [t.name for t in threading.enumerate()]
    srv.stop()  # a second stop does nothing
    with pytest.raises(AssertionError, match="Echo is not running"):
        _ = srv.port


def test_background_server_stop_twice_and_a_thread_per_connection() -> None:
    server = httpserver.BackgroundServer(Echo()._handler(), name="corral-test-bg")
    try:
        _, body = get(server.port, "/t")
        # ThreadingHTTPServer answers each connection on a thread of its own
        assert body.split(" ", 1)[1] != "corral-test-bg"
    finally:
        server.stop()
        server.stop()
    assert refused(server.port)


def test_quiet_handler_writes_no_access_log(capfd: pytest.CaptureFixture[str]) -> None:
    with Echo() as srv:
        get(srv.port, "/quiet")
    out, err = capfd.readouterr()
    assert "/quiet" not in err and "/quiet" not in out


def test_service_base_has_no_handler() -> None:
    with pytest.raises(NotImplementedError):
        httpserver.Service().start()
