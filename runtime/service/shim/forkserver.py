"""The shim fork server: a small single-threaded process that forks shims, and runs
corral-runc in forked children for the shims' holders.

    python -I -S runtime/service/shim/forkserver.py SOCK_FD [--runtime-listen FD]

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

Runtime calls (--runtime-listen: a SOCK_SEQPACKET socket at runtime-fork.sock in the
daemon's state dir, mode 0600, peers of another uid refused): a shim's holder (holder.c)
has no interpreter of its own, so for the corral-runc runtime class it asks here

    holder: connect, b"run\0CWD\0ARG..." + stdin/stdout/stderr (SCM_RIGHTS)  ──►
                                 inproc.spawn(ARGS, stdio, cwd=CWD): fork, corral-runc's
           ◄── b"pid N"          CLI in the child (no interpreter start, no imports)
           ◄── b"exit STATUS"    the child's waitpid status, when its pidfd is readable

and falls back to exec'ing the launcher when nobody listens (the daemon is down). Each
connection carries one call; the server never blocks on one: it polls the daemon's
socket, the listener, the connections and the children's pidfds.

The server ends when the daemon's end of SOCK_FD closes (the daemon exited or was
killed); the shims it forked are detached and live on. The runtime socket goes at once
(holders exec the launcher from then on); runtime calls still running are answered
before the server exits (Runs.drain), so an exec in flight keeps its result.
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
import select

from runtime.service.shim import inproc
from runtime.service.shim import main as shim
from runtime.service.shim import protocol as P

MAX_REQUEST = 4096
MAX_RUN_REQUEST = 65536
PATH_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}


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


def spawn_shim(sock: _socket.socket, data: bytes, fds: list[int], *,
               keep_out: list[int]) -> None:
    """One daemon request: fork a shim for the state dir DATA with ready fd FDS[0]. The
    shim closes KEEP_OUT (the runtime listener, its connections, pidfds): a shim holding
    the listener would keep it connectable after this server is gone."""
    reply = b"ok"
    try:
        if len(fds) != 1:
            raise ValueError(f"want 1 ready fd, got {len(fds)}")
        pid = os.fork()
        if pid == 0:
            sock.close()
            for fd in keep_out:
                os.close(fd)
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


def parse_run(data: bytes, nfds: int) -> tuple[str, list[str]]:
    """A holder's request: b"run\0CWD\0ARG..." with 3 stdio fds -> (cwd, argv)."""
    parts = data.split(b"\0")
    if parts and parts[-1] == b"":
        parts.pop()
    if len(parts) < 3 or parts[0] != b"run":
        raise ValueError("request: want b'run\\0CWD\\0ARG...'")
    if nfds != 3:
        raise ValueError(f"request: want 3 stdio fds, got {nfds}")
    return os.fsdecode(parts[1]), [os.fsdecode(a) for a in parts[2:]]


def peer_uid(sock: _socket.socket) -> int:
    cred = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)  # pid, uid, gid
    return int.from_bytes(cred[4:8], sys.byteorder)


class Runs:
    """Holders' runtime calls: connections waiting for their request, children running."""

    def __init__(self, listener: _socket.socket, poller: select.poll) -> None:
        self.listener, self.poll = listener, poller
        self.conns: dict[int, _socket.socket] = {}
        self.children: dict[int, tuple[int, _socket.socket]] = {}  # pidfd -> (pid, conn)

    def fds(self) -> list[int]:
        return [self.listener.fileno(), *self.conns, *self.children]

    def accept(self) -> None:
        try:
            fd, _ = self.listener._accept()  # type: ignore[attr-defined]
        except (BlockingIOError, InterruptedError):
            return
        conn = _socket.socket(fileno=fd)
        if peer_uid(conn) != os.getuid():
            conn.close()  # the socket runs the runtime as we are: only for our own uid
            return
        self.conns[fd] = conn
        self.poll.register(fd, select.POLLIN)

    def request(self, fd: int) -> None:
        conn = self.conns.pop(fd)
        self.poll.unregister(fd)
        fds: list[int] = []
        try:
            data, fds, _, _ = _socket_recv_fds(conn, MAX_RUN_REQUEST, 3)
            if not data:
                raise EOFError
            cwd, argv = parse_run(data, len(fds))
            stdio = (fds[0], fds[1], fds[2])
            pid = inproc.spawn(argv, stdio=stdio, env=PATH_ENV, cwd=cwd)
        except EOFError:
            conn.close()
        except Exception as e:
            _send(conn, f"error {e}".encode())
            conn.close()
        else:  # forked: from here on every answer is the child's (never "error")
            _send(conn, b"pid %d" % pid)
            try:
                pidfd = os.pidfd_open(pid)
            except OSError:  # no pidfds (Linux < 5.3): wait for this one in line
                _send(conn, b"exit %d" % _wait(pid))
                conn.close()
            else:
                self.children[pidfd] = (pid, conn)
                self.poll.register(pidfd, select.POLLIN)
        finally:
            for n in fds:
                os.close(n)

    def drain(self) -> None:
        """The daemon is gone: no new calls (the holders exec the launcher from now on);
        the running ones are answered as they end, so an exec in flight keeps its result."""
        for fd in list(self.conns):  # nothing run for these yet: EOF, and they fall back
            self.poll.unregister(fd)
            self.conns.pop(fd).close()
        while self.children:
            try:
                events = self.poll.poll()
            except InterruptedError:
                continue
            for fd, _ in events:
                if fd in self.children:
                    self.exited(fd)

    def exited(self, pidfd: int) -> None:
        pid, conn = self.children.pop(pidfd)
        self.poll.unregister(pidfd)
        os.close(pidfd)
        _send(conn, b"exit %d" % _wait(pid))
        conn.close()


def _wait(pid: int) -> int:
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except InterruptedError:
            continue


def _send(conn: _socket.socket, data: bytes) -> None:
    try:
        conn.send(data)
    except OSError:
        pass  # the holder hung up (it died, or gave up): the result has nobody to go to


def serve(sock: _socket.socket, listener: _socket.socket | None = None) -> Runs | None:
    """Until the daemon's end closes; the holders' calls still running then."""
    poller = select.poll()
    sfd = sock.fileno()
    poller.register(sfd, select.POLLIN)
    runs = None
    if listener is not None:
        listener.setblocking(False)
        runs = Runs(listener, poller)
        poller.register(listener.fileno(), select.POLLIN)
    while True:
        try:
            events = poller.poll()
        except InterruptedError:
            continue
        for fd, _ in events:
            if fd == sfd:
                try:
                    data, fds, _, _ = _socket_recv_fds(sock, MAX_REQUEST, 1)
                except InterruptedError:
                    continue
                if not data:  # the daemon is gone: only pidfds stay polled (drain)
                    poller.unregister(sfd)
                    if runs is not None:
                        poller.unregister(runs.listener.fileno())
                    return runs
                spawn_shim(sock, data, fds, keep_out=[] if runs is None else runs.fds())
            elif runs is None:
                continue
            elif fd == listener.fileno():  # type: ignore[union-attr]
                runs.accept()
            elif fd in runs.conns:
                runs.request(fd)
            elif fd in runs.children:
                runs.exited(fd)


def _socket_recv_fds(sock: _socket.socket, size: int,
                     maxfds: int) -> tuple[bytes, list[int], int, object]:
    fds = array.array("i")
    msg, anc, flags, addr = sock.recvmsg(size, _socket.CMSG_LEN(maxfds * fds.itemsize))
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
    # the runtime calls' environment, set once here: no child of ours or of a shim
    # needs to set its own (nothing else of ours reads the daemon's environment)
    inproc.use_environ(PATH_ENV)
    shim.prepare()
    gc.collect()
    gc.freeze()  # what the shims inherit stays shared: the collector never touches it
    listener = None
    if "--runtime-listen" in argv:
        lfd = int(argv[argv.index("--runtime-listen") + 1])
        listener = _socket.socket(fileno=lfd)
        os.set_inheritable(lfd, False)
    runs = None
    try:
        runs = serve(sock, listener)
    finally:
        if listener is not None:
            close_listener(listener)
    if runs is not None:
        runs.drain()
    return 0


def close_listener(listener: _socket.socket) -> None:
    """Unlink the runtime socket (a new daemon binds its own) and close it."""
    path = listener.getsockname()
    listener.close()
    if isinstance(path, str) and path.startswith("/") and "/proc/" not in path:
        try:
            os.unlink(path)
        except OSError:
            pass


if __name__ == "__main__":
    sys.exit(main(sys.argv))
