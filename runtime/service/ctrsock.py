"""The daemon's private socket for corral-ctr's `run` (the protocol: ctr/fast.py).

::

    CRI_SOCKET.ctr   one thread per connection (a run blocks until its container exits)
      run  ── sandbox (standalone) ── Service.create(start=True): one `runtime run -d`
           ──► {"id", "log_path"}
           ── tasks.wait (the shim answers at the exit: no polling) ──► {"exit_code"}
           ◄── "done" (the CLI has read the log) ── with rm: containers + sandbox removed
           ──► {"ok"}

The sandbox and container are the same objects CRI's RunPodSandbox and CreateContainer
make (the same protobuf conversions), so `ps`, `rm` and CRI clients see them as before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import socketserver
import threading
from typing import Any

from runtime.service import sandboxes as S
from runtime.service.cri import api_pb2 as pb
from runtime.service.cri.runtime_servicer import STANDALONE, container_request, sandbox_spec
from runtime.service.cri.server import code_of
from runtime.service.cri.service import Service
from runtime.service.ctr.fast import private_socket
from runtime.service.shim import protocol as P

log = logging.getLogger("corral.runtimed")


class ProtocolError(Exception):
    pass


class Runner:
    """`run` over the service objects: what the CRI calls of ctr's old path did."""

    def __init__(self, service: Service, sandboxes: S.SandboxManager) -> None:
        self.svc = service
        self.sandboxes = sandboxes

    def start(self, tenant: str, req: dict[str, Any]) -> tuple[str, str, str]:
        """(sandbox ID, container ID, log path) of a started container."""
        name, image = str(req.get("name") or ""), str(req.get("image") or "")
        args = [str(a) for a in req.get("args") or []]
        cfg = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=name, namespace="corral-ctr"),
            annotations={STANDALONE: "true"})
        sb = self.sandboxes.run(tenant, sandbox_spec(cfg, ""))
        try:
            ccfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name=name),
                                      image=pb.ImageSpec(image=image), command=args)
            cid = self.svc.create(tenant, sb, container_request(ccfg), start=True)
        except BaseException:
            self.remove(tenant, sb.id)
            raise
        # the record, not svc.get: that also asks the shim for its state (a round trip)
        return sb.id, cid, str(self.svc.containers.get(tenant, cid).spec["cri"]["log_path"])

    def remove(self, tenant: str, sandbox_id: str) -> None:
        """RemovePodSandbox: its containers, then the sandbox."""
        for cid in self.svc.ids_in_sandbox(tenant, sandbox_id):
            self.svc.remove(tenant, cid)
        with contextlib.suppress(S.NotFound):
            self.sandboxes.remove(tenant, sandbox_id)


class _Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.decoder = P.Decoder()
        self.pending: list[dict[str, Any]] = []

    def recv(self) -> dict[str, Any] | None:
        while not self.pending:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.pending.extend(self.decoder.feed(data))
        return self.pending.pop(0)

    def send(self, msg: dict[str, Any]) -> None:
        self.sock.sendall(P.encode(msg))


def serve_conn(runner: Runner, sock: socket.socket) -> None:
    conn = _Conn(sock)
    try:
        req = conn.recv()
        if req is None:
            return
        if req.get("op") != "run":
            raise ProtocolError(f"op: unknown operation {req.get('op')!r}; known: run")
        tenant = str(req.get("namespace") or "default")
        sid, cid, log_path = runner.start(tenant, req)
    except Exception as e:
        code = "INVALID_ARGUMENT" if isinstance(e, (ProtocolError, P.ProtocolError)) \
            else code_of(e).name
        with contextlib.suppress(OSError):
            conn.send({"ok": False, "code": code, "error": str(e) or type(e).__name__})
        return
    conn.send({"ok": True, "id": cid, "log_path": log_path})
    if req.get("detach"):
        return
    ex = runner.svc.tasks.wait(tenant, cid)
    conn.send({"ok": True, "exit_code": ex.code})
    if conn.recv() is None:
        return  # the CLI went away before reading the output: leave the container
    try:
        if req.get("rm"):
            runner.remove(tenant, sid)
    except Exception as e:
        conn.send({"ok": False, "code": code_of(e).name, "error": str(e)})
        return
    conn.send({"ok": True})


class PrivateServer:
    """Serves CRI_SOCKET.ctr from threads of its own (not the gRPC executor's workers)."""

    def __init__(self, cri_socket: str, runner: Runner) -> None:
        self.path = private_socket(cri_socket)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        runner_ = runner

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                try:
                    serve_conn(runner_, self.request)
                except OSError:
                    pass  # the CLI went away
                except Exception:
                    log.exception("private run socket")

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        self.server = Server(self.path, Handler)
        os.chmod(self.path, 0o600)
        self.thread = threading.Thread(target=self.server.serve_forever, name="ctr-socket",
                                       kwargs={"poll_interval": 0.5}, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
