"""corral-ctr's fast `run` path: argument parsing and the private protocol's client,
against a scripted daemon on a real unix socket."""

from __future__ import annotations

import os
import socket
import threading
from typing import Any

import pytest

from runtime.service.ctr import fast, run_cmd
from runtime.service.ctr.conn import UsageError
from runtime.service.shim import protocol as P


@pytest.mark.parametrize(("argv", "want"), [
    pytest.param(["img", "c1"], ("img", "c1", [], False, False), id="plain"),
    pytest.param(["--rm", "-d", "img", "c1", "sleep", "9"],
                 ("img", "c1", ["sleep", "9"], True, True), id="flags-and-command"),
    pytest.param(["--detach", "img", "c1", "-x"], ("img", "c1", ["-x"], False, True),
                 id="dash-in-command"),
])
def test_parse(argv: list[str], want: tuple[Any, ...]) -> None:
    a = run_cmd.parse(argv)
    assert (a.image, a.name, a.cmd, a.rm, a.detach) == want


@pytest.mark.parametrize("argv", [
    pytest.param(["img"], id="no-id"),
    pytest.param(["--bogus", "img", "c1"], id="unknown-flag"),
])
def test_parse_rejects(argv: list[str]) -> None:
    with pytest.raises(UsageError):
        run_cmd.parse(argv)


def daemon(path: str, replies: list[Any], seen: list[dict[str, Any]]) -> threading.Thread:
    """A daemon that answers each request with the next of REPLIES (a frame or a list)."""
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(fast.private_socket(path))
    srv.listen(1)

    def serve() -> None:
        conn, _ = srv.accept()
        dec = P.Decoder()
        with conn:
            for reply in replies:
                while not (msgs := dec.feed(conn.recv(65536))):
                    pass
                seen.extend(msgs)
                conn.sendall(b"".join(P.encode(r) for r in ([reply] if isinstance(reply, dict)
                                                            else reply)))
        srv.close()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return t


def test_run_fast_waits_prints_and_acknowledges(tmp_path: Any,
                                                capfd: pytest.CaptureFixture[str]) -> None:
    sock = str(tmp_path / "cri.sock")
    log = tmp_path / "c.log"
    log.write_bytes(b"2024-01-01T00:00:00.000000000Z stdout F hello\n"
                    b"2024-01-01T00:00:00.000000000Z stderr F oops\n")
    seen: list[dict[str, Any]] = []
    t = daemon(sock, [[{"ok": True, "id": "abc", "log_path": str(log)},
                       {"ok": True, "exit_code": 3}], {"ok": True}], seen)
    client = fast.Client(sock)
    try:
        rc = run_cmd.run_fast(client, "ns1", run_cmd.parse(["--rm", "img", "c1", "x"]))
    finally:
        client.close()
    t.join(5)
    assert rc == 3
    assert seen[0] == {"op": "run", "namespace": "ns1", "image": "img", "name": "c1",
                       "args": ["x"], "rm": True, "detach": False}
    assert seen[1] == {"op": "done"}
    out, err = capfd.readouterr()
    assert (out, err) == ("hello\n", "oops\n")


def test_error_reply_carries_the_grpc_code(tmp_path: Any) -> None:
    sock = str(tmp_path / "cri.sock")
    t = daemon(sock, [{"ok": False, "code": "NOT_FOUND", "error": "image 'x': not found"}],
               [])
    client = fast.Client(sock)
    try:
        with pytest.raises(fast.CallError) as e:
            run_cmd.run_fast(client, "default", run_cmd.parse(["x", "c1"]))
    finally:
        client.close()
    t.join(5)
    assert (e.value.code, str(e.value)) == ("NOT_FOUND", "image 'x': not found")


def test_no_private_socket_is_connection_error(tmp_path: Any) -> None:
    with pytest.raises(FileNotFoundError):
        fast.Client(os.path.join(str(tmp_path), "none.sock"))
