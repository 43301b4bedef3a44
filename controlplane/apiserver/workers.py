"""Several API server processes on one port: the server is stateless and CPU-bound, so
N processes serve N cores' worth of requests.

    corral-controlplane --workers N
      primary (this process): gRPC on --listen with SO_REUSEPORT, and everything that
      │   must exist once: PKI and admin.conf, HTTP /healthz /readyz /metrics, bootstrap,
      │   leader election (scheduler and controllers), compaction
      ├── worker 1 ─┐  the same binary with --worker-id K: gRPC on the same port only,
      ├── ...       │  its own etcd channel and watch cache; dies with the primary
      └── worker N-1┘  (PR_SET_PDEATHSIG), restarted by it if it dies alone
    the kernel spreads new connections across the N listening sockets

/metrics stays in the primary and adds up every process's counters and histograms:
prometheus_client's multiprocess mode (each process writes its samples to files in
DATA_DIR/metrics.<primary pid>/, the primary's /metrics reads them all). /readyz also
waits until every worker listens, so clients that connect after it spread over all.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import logging
import os
import shutil
import signal
import socket
import sys

log = logging.getLogger("corral.workers")

METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"
_PR_SET_PDEATHSIG = 1
READY_LINE = b"corral-worker-ready\n"


def metrics_dir(data_dir: str, primary_pid: int) -> str:
    return os.path.join(data_dir, f"metrics.{primary_pid}")


def prepare_metrics_dir(data_dir: str) -> str:
    """A fresh directory for this primary's processes' samples; the directories of
    primaries that are gone are removed (one killed with SIGKILL cannot clean up)."""
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    for entry in os.listdir(data_dir):
        prefix, _, pid = entry.partition(".")
        if prefix == "metrics" and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(os.path.join(data_dir, entry), ignore_errors=True)
    path = metrics_dir(data_dir, os.getpid())
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, mode=0o700)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def die_with_parent(parent: int) -> None:
    """In a worker: SIGTERM when the primary dies, even by SIGKILL (Linux prctl)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG): %s", os.strerror(ctypes.get_errno()))
    if os.getppid() != parent:  # the primary died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def check_port_free(host: str, port: int, what: str) -> None:
    """SO_REUSEPORT would let us share a port another server already holds with the same
    option; bind it once without the option first, so a taken port is an error."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise OSError(err.errno, f"{what} {host}:{port}: address already in use"
                              ) from None
            raise


class Supervisor:
    """Starts, watches and stops the N-1 worker processes of one primary."""

    def __init__(self, argv: list[str], *, count: int) -> None:
        self.argv = argv  # the worker's command line minus --worker-id
        self.count = count
        self.ready: set[int] = set()
        self._procs: dict[int, asyncio.subprocess.Process] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    def not_ready(self) -> str | None:
        missing = self.count - len(self.ready)
        return f"workers: {missing} of {self.count} not listening yet" if missing else None

    def start(self) -> None:
        for k in range(1, self.count + 1):
            self._tasks.append(asyncio.create_task(self._keep(k)))

    async def _keep(self, k: int) -> None:
        while not self._stopping:
            proc = await asyncio.create_subprocess_exec(
                *self.argv, "--worker-id", str(k), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE)
            self._procs[k] = proc
            assert proc.stdout is not None
            with contextlib.suppress(ValueError, ConnectionError):
                if await proc.stdout.readline() == READY_LINE:
                    self.ready.add(k)
                while await proc.stdout.read(65536):  # keep the pipe drained until exit
                    pass
            code = await proc.wait()
            self.ready.discard(k)
            _mark_dead(proc.pid)
            if self._stopping:
                return
            log.warning("API worker %d (pid %d) exited with %s; restarting", k, proc.pid,
                        code)
            await asyncio.sleep(1)

    async def stop(self, timeout: float = 10) -> None:
        self._stopping = True
        for proc in self._procs.values():
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        for proc in self._procs.values():
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t


def _mark_dead(pid: int) -> None:
    if os.environ.get(METRICS_ENV):
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def worker_argv(args: list[str]) -> list[str]:
    """The command line that runs one worker: this interpreter on controlplane.main with
    the primary's arguments (sys.path carries over so a source checkout works too)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = (f"import os, sys; sys.path.insert(0, {root!r}); "
            "from controlplane.main import main; rc = main(); "
            "sys.stdout.flush(); sys.stderr.flush(); os._exit(rc)")
    return [sys.executable, "-I", "-c", code, *args]


def say_ready() -> None:
    """In a worker: tell the primary this process listens."""
    os.write(1, READY_LINE)
