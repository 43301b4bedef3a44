"""The shim fork server: a small single-threaded process that forks shims.

    python -I -S runtime/service/shim/forkserver.py SOCK_FD

    the daemon (threaded gRPC)                 the fork server (one thread, shim imported)
    ForkServer.spawn(state_dir, ready_w) ──►  recv state dir + ready fd (SCM_RIGHTS)
                                               fork ─► child: stdio <- /dev/null, shim.log;
                                                       main.main() (fork, setsid, serve)
                                               reap the child (it exits at once)
                                          ◄──  b"ok" | b"error <message>"

Forking from here, not from the daemon: a fork of a threaded gRPC server copies locks
that other threads hold; and a fresh interpreter per shim costs its start-up and imports
on every container start, where a fork costs about a millisecond. Shims forked from one
parent also share the interpreter's pages copy-on-write, which lowers each one's PSS.

The server ends when the daemon's end of SOCK_FD closes (the daemon exited or was
killed); the shims it forked are detached and live on.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # run as a file with -I: put the repository on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))))

import _socket
import array
import ctypes  # noqa: F401 - imported once here, so no shim imports it again
import gc

from runtime.service.shim import inproc
from runtime.service.shim import main as shim
from runtime.service.shim import protocol as P

MAX_REQUEST = 4096


def child(state_dir: str, ready_fd: int) -> int:
    """In the forked child: the shim's stdio, then the shim itself."""
    null = os.open("/dev/null", os.O_RDWR)
    log = os.open(os.path.join(state_dir, P.LOG), os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                  0o644)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)
    os.chdir("/")
    return shim.main(["shim", state_dir, str(ready_fd)])


def serve(sock: _socket.socket) -> None:
    while True:
        try:
            data, fds, _, _ = _socket_recv_fds(sock)
        except InterruptedError:
            continue
        if not data:
            return  # the daemon is gone
        reply = b"ok"
        try:
            if len(fds) != 1:
                raise ValueError(f"want 1 ready fd, got {len(fds)}")
            pid = os.fork()
            if pid == 0:
                sock.close()
                rc = 1
                try:
                    rc = child(os.fsdecode(data), fds[0])
                finally:
                    os._exit(rc)
            while True:
                try:
                    os.waitpid(pid, 0)  # the child forks the shim and exits at once
                    break
                except InterruptedError:
                    continue
        except Exception as e:
            reply = f"error {e}".encode()
        finally:
            for fd in fds:
                os.close(fd)
        sock.sendall(reply)


def _socket_recv_fds(sock: _socket.socket) -> tuple[bytes, list[int], int, object]:
    fds = array.array("i")
    msg, anc, flags, addr = sock.recvmsg(MAX_REQUEST, _socket.CMSG_LEN(4 * fds.itemsize))
    for level, kind, payload in anc:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
    return msg, list(fds), flags, addr


def main(argv: list[str]) -> int:
    fd = int(argv[1])
    sock = _socket.socket(fileno=fd)
    os.set_inheritable(fd, False)
    if "--no-preload" not in argv:
        inproc.preload()  # corral-runc's modules, shared by every shim that forks it
    shim.prepare()
    gc.collect()
    gc.freeze()  # what the shims inherit stays shared: the collector never touches it
    serve(sock)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
