"""The HTTP servers tests run in a thread of the test process (FaultProxy, TokenServer):
127.0.0.1, a port the kernel picks, a thread per connection, no access log.

::

    class TokenServer(httpserver.Service):       # start(), stop(), port, ``with``
        thread_name = "corral-test-tokenserver"
        def _handler(self) -> type[BaseHTTPRequestHandler]:
            class Handler(httpserver.QuietHandler):   # no access log on stderr
                def do_GET(self) -> None: ...
            return Handler

    start() ─► BackgroundServer(handler) ─► ThreadingHTTPServer.serve_forever in a thread
    stop()  ─► shutdown, close the socket, join the thread (5 s at most)
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that does not write an access log line to stderr per request."""

    def log_message(self, format: str, *args: object) -> None:
        pass


class BackgroundServer:
    """A ThreadingHTTPServer on 127.0.0.1 serving from a daemon thread named NAME."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], *, name: str) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name=name)
        self._thread.start()
        self._stopped = False

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def stop(self) -> None:
        """Stop serving and close the listening socket; a second call does nothing."""
        if self._stopped:
            return
        self._stopped = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class Service:
    """A test HTTP service: ``start()`` serves ``_handler()`` on a free 127.0.0.1 port from a
    thread named ``thread_name``, ``stop()`` ends it, ``with`` does both."""

    thread_name = "corral-test-http"
    _server: BackgroundServer | None = None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    @property
    def port(self) -> int:
        assert self._server is not None, f"{type(self).__name__} is not running"
        return self._server.port

    def start(self) -> Self:
        self._server = BackgroundServer(self._handler(), name=self.thread_name)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
