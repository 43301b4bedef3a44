"""The shim: one process per container that outlives the daemon which started it.

    python -I -S runtime/service/shim/main.py STATE_DIR READY_FD

    fork; parent exits (the daemon reaps it)  ── child: setsid, chdir STATE_DIR,
    prctl(PR_SET_CHILD_SUBREAPER) so the container's init, orphaned when `runtime create`
    returns, becomes our child ──► `runtime create --bundle B --pid-file init.pid ID` with
    stdout/stderr pipes (stdin, tty: stdio.py) ──► listen on shim.sock ──► "ok <pid>" on
    READY_FD ──► loop:

        poll(listener, connections, container pipes, exec pipes, SIGCHLD wakeup pipe)
          pipes      -> CRI log lines appended to the log file (rotated by size)
          exec pipes -> an exec session's output, kept for its reply (execs.py)
          SIGCHLD    -> reap; init's exit (code, time, OOMKilled from the memory cgroup)
                        is written to exit.json atomically, then "wait" callers answered;
                        an exec's exit answers its caller (execs.py)
          requests   -> state / start / kill / exec (execs.py) / wait / delete / shutdown
                        / reopen / attach (a copy of the container's stdin: stdio.py)
        once the container runs: execve corral-shim-holder (holder.py, holder.c), which
        keeps the pid, fds and subreaper role and serves the same protocol in C

Only builtin modules and `json` are imported (and corral-runc's modules, which the fork
server imported for every shim: inproc.py), and `gc.freeze()` runs after start-up, so
the shim stays small (see the report on footprint in tasks.py).
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # run as a file with -I: put the repository on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))))

import _socket
import gc
import json
import select
import signal
import time

from runtime.service.shim import execs, holder, inproc, stdio
from runtime.service.shim import protocol as P
from runtime.service.shim.files import oom_kills, read_file, report, tail, write_atomic

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PR_GET_DUMPABLE = 3
PR_SET_CHILD_SUBREAPER = 36
PATH_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
# Reset in the runtime (and so in the container): Python ignores SIGPIPE and SIGXFSZ.
DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTERM, signal.SIGINT,
                   signal.SIGHUP, signal.SIGCHLD)


_prctl: Any = None  # libc's prctl as a ctypes function, made once by prepare()


def prepare() -> None:
    """In the fork server, before it freezes its heap: look prctl up once. Doing it in
    each shim (CDLL(None) builds a class, the lookup a function object) dirtied ~400 kB
    of pages the shims could share."""
    global _prctl
    import ctypes

    _prctl = ctypes.CDLL(None, use_errno=True).prctl
    _prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)  # the first call sets up ctypes' state: here


def set_subreaper() -> None:
    keep = "ctypes" in sys.modules  # the fork server imported it once for every shim
    import ctypes

    prctl = _prctl if _prctl is not None else ctypes.CDLL(None, use_errno=True).prctl
    if prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    if not keep:
        del sys.modules["ctypes"]


class Conn:
    __slots__ = ("decoder", "sock")

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self.decoder = P.Decoder()

    def send(self, msg: dict[str, Any]) -> None:
        self.sock.setblocking(True)
        try:
            self.sock.sendall(P.encode(msg))
        except OSError:
            pass
        self.sock.setblocking(False)


class Shim:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.id: str = spec["id"]
        self.runtime: list[str] = [*spec["runtime"], "--root", spec["runtime_root"],
                                   "--log", os.path.abspath("runtime.log")]
        # our own corral-runc: run in a forked child of ours, not exec'd (inproc.py)
        self.inproc = bool(spec.get("inproc"))
        # corral-shim-holder (holder.c): exec'd once the container runs (holder.py)
        self.holder: str | None = spec.get("holder") or None
        self.status = P.CREATED
        # the container's stdin (stdio.py): the pipe's write end we hold, or the pty master
        self.tty = bool(spec.get("tty"))
        self.stdin_once = bool(spec.get("stdin_once"))
        self.stdin_fd = -1
        self.init_pid = 0
        self.exit: dict[str, Any] | None = None
        self.waiters: list[Conn] = []
        self.conns: dict[int, Conn] = {}
        # exec sessions (execs.py)
        self.execs: dict[int, execs.Exec] = {}  # by pid
        self.exec_fds: dict[int, tuple[execs.Exec, bool]] = {}  # pipe fd -> (exec, is stderr)
        self.streams: dict[int, P.CriLog] = {}
        self.log_fd = -1
        self.log_size = 0
        self.poll = select.poll()
        self.running = True
        self.listener: _socket.socket | None = None

    # ---- running the OCI runtime --------------------------------------------------------

    def run_runtime(self, args: list[str], *, stdio: tuple[int, int, int] | None = None) -> None:
        """Run the runtime to its end; raise with its error output if it fails."""
        errpath = os.path.abspath("runtime.err")
        if stdio is None:
            null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
            errfd = os.open(errpath, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC)
            fds = (null, null, errfd)
        else:
            fds, null, errfd = stdio, -1, -1
        pid = status = 0
        try:
            if self.inproc:
                if self.holder and args[0] in inproc.IN_CALLER:
                    # start: here, not in a forked child; only where the holder replaces
                    # us next (the pages it dirties go with that exec), as a wait status
                    rc = inproc.call(args, runtime_flags=self.runtime[1:], stdio=fds)
                    status = (rc & 0xFF) << 8
                else:
                    pid = inproc.spawn(self.runtime[1:] + args, stdio=fds, env=PATH_ENV)
            else:
                pid = os.posix_spawn(self.runtime[0], self.runtime + args, PATH_ENV,
                                     file_actions=[(os.POSIX_SPAWN_DUP2, fd, n)
                                                   for n, fd in enumerate(fds)],
                                     setsigdef=DEFAULT_SIGNALS, setsigmask=())
        finally:
            for fd in (null, errfd):
                if fd >= 0:
                    os.close(fd)
        while pid:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
        if status != 0:
            msg = tail(errpath) if stdio is None else ""
            msg = msg or tail("runtime.log") or f"exit status {P.wait_status_code(status)}"
            raise RuntimeError(f"{os.path.basename(self.runtime[0])} {args[0]}: {msg}")

    def create(self) -> None:
        """`runtime create`, or `runtime run --detach` when the spec asks for a started task
        (one runtime process instead of two: create and start)."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        in_r = -1
        if self.spec.get("stdin") and not self.tty:
            in_r, self.stdin_fd = os.pipe()
        start = bool(self.spec.get("start"))
        verb = ["run", "--detach"] if start else ["create"]
        console = stdio.Console(P.CONSOLE) if self.tty else None
        try:
            if console is not None:  # the container's stdio is the pty; ours stay empty
                verb += ["--console-socket", console.path]
            self.run_runtime([*verb, "--bundle", self.spec["bundle"], "--pid-file",
                              "init.pid", self.id],
                             stdio=(null if in_r < 0 else in_r, out_w, err_w))
            if console is not None:
                self.stdin_fd = console.receive(what=f"container {self.id}")
        except BaseException:
            for fd in (out_r, err_r, self.stdin_fd):
                if fd >= 0:
                    os.close(fd)
            self.stdin_fd = -1
            raise
        finally:
            for fd in (null, out_w, err_w, in_r):
                if fd >= 0:
                    os.close(fd)
            if console is not None:
                console.close()
        if start:
            self.status = P.RUNNING
        self.init_pid = int(read_file("init.pid").strip())
        self.open_log()
        pipes = ((out_r, "stdout"), (err_r, "stderr"))
        if self.tty:  # the terminal's output is the container's stdout (as containerd)
            os.close(out_r)
            pipes = ((err_r, "stderr"), (os.dup(self.stdin_fd), "stdout"))
        for fd, name in pipes:
            os.set_blocking(fd, False)
            self.streams[fd] = P.CriLog(name, eager=self.tty and name == "stdout")
            self.poll.register(fd, select.POLLIN)

    # ---- container logs -----------------------------------------------------------------

    def open_log(self) -> None:
        path = self.spec["log_path"]
        self.log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                              0o640)
        self.log_size = os.fstat(self.log_fd).st_size

    def reopen_log(self) -> None:
        """After the caller renamed the log away: close it and open log_path again. What
        was read went to the old file; what is still in the pipes, and a line not yet
        ended, goes to the new one, so no line is lost or written twice."""
        if self.exit is not None:
            raise RuntimeError(f"container {self.id} is {self.status}, not running: "
                               "its log is closed")
        old = self.log_fd
        self.open_log()  # the new file first: a failure leaves the old one in use
        if old >= 0:
            os.close(old)

    def write_log(self, data: bytes) -> None:
        """Append whole lines; when the next ones would take the file past log_max_bytes,
        rename it to <log>.1 first, so that neither file holds more than the limit (a burst
        read in one go included). A single longer line has a file of its own."""
        limit = self.spec.get("log_max_bytes") or 0
        while data:
            n = len(data)
            if limit and self.log_size + n > limit:
                n = data.rfind(b"\n", 0, max(limit - self.log_size, 0)) + 1
                if not n and self.log_size:
                    os.close(self.log_fd)
                    os.replace(self.spec["log_path"], self.spec["log_path"] + ".1")
                    self.open_log()
                    continue
                n = n or data.find(b"\n") + 1 or len(data)
            os.write(self.log_fd, data[:n])
            self.log_size += n
            data = data[n:]

    def read_stream(self, fd: int, *, drain: bool = False) -> None:
        log = self.streams[fd]
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError:  # EIO: a pty whose other side is gone
                data = b""
            if not data:
                self.write_log(log.close(time.time_ns()))
                self.poll.unregister(fd)
                os.close(fd)
                del self.streams[fd]
                return
            self.write_log(log.feed(data, time.time_ns()))
            if not drain:
                return

    # ---- processes ----------------------------------------------------------------------

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.init_pid and self.exit is None:
                self.init_exited(status)
            elif pid in self.execs:
                execs.exited(self, self.execs.pop(pid), status)

    def init_exited(self, status: int) -> None:
        for fd in list(self.streams):
            self.read_stream(fd, drain=True)
        self.exit = P.exit_record(pid=self.init_pid, status=P.wait_status_code(status),
                                  exited_at_ns=time.time_ns(),
                                  oom=oom_kills(self.spec.get("memory_cgroup")) > 0)
        write_atomic(P.EXIT, json.dumps(self.exit).encode())
        self.status = P.STOPPED
        for conn in self.waiters:
            conn.send({"ok": True, "exit": self.exit})
        self.waiters.clear()

    # ---- requests -----------------------------------------------------------------------

    def handle(self, conn: Conn, req: dict[str, Any]) -> None:
        op = req.get("op")
        if op == P.OP_STATE:
            conn.send({"ok": True, "status": self.status, "pid": self.init_pid,
                       "shim_pid": os.getpid(), "exit": self.exit})
        elif op == P.OP_START:
            if self.status != P.CREATED:
                raise RuntimeError(f"container {self.id} is {self.status}, not created")
            self.run_runtime(["start", self.id])
            if self.status == P.CREATED:
                self.status = P.RUNNING
            conn.send({"ok": True})
        elif op == P.OP_KILL:
            sig = int(req.get("signal", signal.SIGTERM))
            if self.exit is None:
                if req.get("all"):
                    self.run_runtime(["kill", "--all", self.id, str(sig)])
                else:
                    os.kill(self.init_pid, sig)  # our child: the pid is not reused yet
            conn.send({"ok": True, "exited": self.exit is not None})
        elif op == P.OP_EXEC:
            execs.start(self, conn, req)
        elif op == P.OP_WAIT:
            if self.exit is not None:
                conn.send({"ok": True, "exit": self.exit})
            else:
                self.waiters.append(conn)
        elif op == P.OP_DELETE:
            if self.exit is None and not req.get("force"):
                raise RuntimeError(f"container {self.id} is {self.status}: stop it first")
            self.run_runtime(["delete", "--force", self.id] if req.get("force")
                             else ["delete", self.id])
            if req.get("shutdown"):  # and exit, as "shutdown" would: one call, not two
                self.running = False
            conn.send({"ok": True, "exit": self.exit, "shutdown": not self.running})
        elif op == P.OP_ATTACH:
            stdio.attach(self, conn.sock)
        elif op == P.OP_REOPEN:
            self.reopen_log()
            conn.send({"ok": True})
        elif op == P.OP_SHUTDOWN:
            conn.send({"ok": True})
            self.running = False
        else:
            raise RuntimeError(f"unknown op {op!r}; known: {', '.join(P.OPS)}")

    def on_conn(self, fd: int) -> None:
        conn = self.conns[fd]
        try:
            data = conn.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.poll.unregister(fd)
            del self.conns[fd]
            if conn in self.waiters:
                self.waiters.remove(conn)
            conn.sock.close()
            return
        try:
            reqs = conn.decoder.feed(data)
        except P.ProtocolError as e:
            conn.send({"ok": False, "error": f"protocol: {e}"})
            return
        for req in reqs:
            try:
                self.handle(conn, req)
            except Exception as e:  # every failure is an answer, never a dead shim
                conn.send({"ok": False, "error": str(e)})

    def serve(self, wake_r: int) -> None:
        listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            os.unlink(P.SOCKET)
        except FileNotFoundError:
            pass
        listener.bind(P.SOCKET)  # relative: the state dir may be deeper than sun_path allows
        listener.listen(16)
        listener.setblocking(False)
        self.listener = listener
        lfd = listener.fileno()
        self.poll.register(lfd, select.POLLIN)
        self.poll.register(wake_r, select.POLLIN)

    def loop(self, wake_r: int) -> None:
        lfd = self.listener.fileno() if self.listener else -1
        while self.running:
            if self.holder and holder.ready(self):
                holder.hand_over(self)  # returns only if the exec failed
            timeout = execs.expire(self)
            try:
                events = self.poll.poll(timeout)
            except InterruptedError:
                continue
            for fd, _ in events:
                if fd == wake_r:
                    try:
                        while os.read(wake_r, 256):
                            pass
                    except BlockingIOError:
                        pass
                    self.reap()
                elif fd == lfd:
                    try:
                        cfd, _ = self.listener._accept()  # type: ignore[union-attr]
                    except BlockingIOError:
                        continue
                    sock = _socket.socket(fileno=cfd)
                    sock.setblocking(False)
                    self.conns[cfd] = Conn(sock)
                    self.poll.register(cfd, select.POLLIN)
                elif fd in self.conns:
                    self.on_conn(fd)
                elif fd in self.streams:
                    self.read_stream(fd)
                elif fd in self.exec_fds:
                    execs.read(self, fd)
            self.reap()  # a SIGCHLD may have come while a runtime command ran


def main(argv: list[str]) -> int:
    state_dir, ready_fd = argv[1], int(argv[2])
    if os.fork() != 0:
        os._exit(0)  # the daemon reaps this one; the shim is orphaned and setsid's
    return serve_task(state_dir, ready_fd)


def serve_task(state_dir: str, ready_fd: int) -> int:
    """The shim proper, once detached from its launcher (main, or the fork server)."""
    os.setsid()
    os.chdir(state_dir)
    os.set_inheritable(ready_fd, False)  # the runtime and the container do not get it
    try:
        set_subreaper()
        shim = Shim(json.loads(read_file(P.SPEC)))
        if shim.inproc:  # the runtime calls' environment, once (forkserver.py did it)
            inproc.use_environ(PATH_ENV)
        write_atomic(P.PID, b"%d" % os.getpid())
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            # only "shutdown" ends the shim; a handler (not SIG_IGN, which exec keeps)
            # leaves the container's signals at their defaults
            signal.signal(sig, lambda *_: None)
        shim.create()
        shim.serve(wake_r)
    except Exception as e:
        report(ready_fd, f"error {e}\n".replace("\n", " ").rstrip() + "\n")
        return 1
    report(ready_fd, f"ok {shim.init_pid}\n")
    gc.collect()
    gc.freeze()
    shim.loop(wake_r)
    if shim.listener is not None:
        shim.listener.close()
        try:
            os.unlink(P.SOCKET)
        except FileNotFoundError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
