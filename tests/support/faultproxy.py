"""An HTTP proxy on 127.0.0.1 in front of a real registry that injects faults.

::

    with FaultProxy(registry.url) as proxy:        # proxy.host = "127.0.0.1:PORT"
        proxy.add(r"/blobs/", "status", status=429, retry_after=1, times=1)
        proxy.add(r"/blobs/", "reset", after_bytes=1000, times=1)
        proxy.count("GET", r"/blobs/")             # requests seen (faulted or not)

Actions (each rule matches the request path by regex and method, and fires ``times``
times, or always when ``times`` is None; the first live matching rule wins):
  status    answer ``status`` (429, 500, 404…) with ``Retry-After`` if given, no upstream
  reset     send the headers and ``after_bytes`` of the body, then RST the connection
  stall     send the headers and ``after_bytes`` of the body, then say nothing for
            ``seconds`` (released at stop) and close
  corrupt   flip one byte of the body (same length)
  truncate  send only ``after_bytes`` of the body, with a Content-Length that matches
  content_type   replace the Content-Type with ``content_type``
  delay     wait ``seconds`` (released at stop), then answer as the registry did
"""

from __future__ import annotations

import http.client
import re
import socket
import struct
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from tests.support import httpserver

ACTIONS = ("status", "reset", "stall", "corrupt", "truncate", "content_type", "delay")
_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te",
        "trailer", "proxy-authenticate", "proxy-authorization"}


@dataclass
class Fault:
    pattern: str
    action: str
    method: str | None = "GET"
    times: int | None = None
    status: int = 500
    retry_after: float | None = None
    after_bytes: int = 0
    seconds: float = 30.0
    content_type: str = ""
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.fired >= self.times:
            return False
        return (self.method is None or self.method == method) and bool(
            re.search(self.pattern, path))


class FaultProxy(httpserver.Service):
    thread_name = "corral-test-faultproxy"

    def __init__(self, upstream: str) -> None:
        u = urlsplit(upstream)
        if u.hostname not in ("127.0.0.1", "localhost") or u.port is None:
            raise ValueError(f"FaultProxy: upstream {upstream!r}: want http://127.0.0.1:PORT")
        self.upstream = (u.hostname, u.port)
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._released = threading.Event()

    def add(self, pattern: str, action: str, **kw: object) -> Fault:
        if action not in ACTIONS:
            raise ValueError(f"fault action {action!r}: want one of {', '.join(ACTIONS)}")
        fault = Fault(pattern, action, **kw)  # type: ignore[arg-type]
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()

    def count(self, method: str, pattern: str) -> int:
        with self._lock:
            return sum(1 for m, p in self.requests if m == method and re.search(pattern, p))

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def _pick(self, method: str, path: str) -> Fault | None:
        with self._lock:
            self.requests.append((method, path))
            for f in self.faults:
                if f.matches(method, path):
                    f.fired += 1
                    return f
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(httpserver.QuietHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                fault = proxy._pick(self.command, self.path)
                length = int(self.headers.get("Content-Length") or 0)
                req_body = self.rfile.read(length) if length else None
                if fault is not None and fault.action == "status":
                    self._simple(fault)
                    return
                if fault is not None and fault.action == "delay":
                    proxy._released.wait(fault.seconds)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=30)
                try:
                    conn.request(self.command, self.path, body=req_body, headers=headers)
                    resp = conn.getresponse()
                    body = resp.read()
                    out = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP]
                    status, reason = resp.status, resp.reason
                finally:
                    conn.close()
                self._reply(fault, status, reason, out, body)

            def _simple(self, fault: Fault) -> None:
                body = b'{"errors":[{"code":"INJECTED","message":"injected fault"}]}'
                self.send_response(fault.status)
                if fault.retry_after is not None:
                    self.send_header("Retry-After", f"{fault.retry_after:g}")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _reply(self, fault: Fault | None, status: int, reason: str,
                       headers: list[tuple[str, str]], body: bytes) -> None:
                action = fault.action if fault else None
                if action == "corrupt" and body:
                    i = len(body) // 2
                    body = body[:i] + bytes([body[i] ^ 0xFF]) + body[i + 1:]
                if action == "truncate":
                    body = body[:fault.after_bytes] if fault else body
                self.send_response_only(status, reason)
                for k, v in headers:
                    if k.lower() == "content-length" and action == "truncate":
                        v = str(len(body))
                    if k.lower() == "content-type" and action == "content_type" and fault:
                        v = fault.content_type
                    self.send_header(k, v)
                self.end_headers()
                if self.command == "HEAD":
                    return
                if action in ("reset", "stall") and fault is not None:
                    self.wfile.write(body[:fault.after_bytes])
                    self.wfile.flush()
                    if action == "stall":
                        proxy._released.wait(fault.seconds)
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               struct.pack("ii", 1, 0))
                    self.close_connection = True
                    self.connection.close()  # with SO_LINGER 0: an RST, not a FIN
                    return
                self.wfile.write(body)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        return Handler

    def stop(self) -> None:
        self._released.set()  # stalled and delayed answers end now
        super().stop()
