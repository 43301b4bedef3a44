"""The node-proxy half of the API client: a pod's logs, an exec in its container and a
node's usage, relayed by the controlplane (its NodeProxy service) to the pod's agent.

    Client.pod_logs(pod, ...)  ─► NodeProxy.pod_logs   ─► PodLogs stream ─► bytes chunks
    Client.pod_exec(pod, cmd)  ─► NodeProxy.pod_exec   ─► ExecSession:
        send_stdin / close_stdin / resize ─► queue ─► request iterator ─┐ PodExec
        for ev in session: ExecEvent("stdout"|"stderr"|"exit") ◄───────┘ (both ways)
    Client.node_stats(node)    ─► NodeProxy.node_stats ─► NodeStats ─► StatsResponse

api.client makes one NodeProxy per channel and hands it the function that turns a gRPC
error into the server's APIError, so this module does not import api.client.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack

import grpc  # type: ignore[import-untyped]

from api.errors import APIError
from api.v1 import apiserver_pb2 as pb
from api.v1 import node_pb2 as node_pb


class LogOptions(TypedDict, total=False):
    """What Client.pod_logs takes besides the pod (kubectl logs' options)."""

    container: str
    follow: bool
    previous: bool
    tail_lines: int | None
    since_seconds: int | None
    timestamps: bool
    limit_bytes: int | None


class ExecOptions(TypedDict, total=False):
    """What Client.pod_exec takes besides the pod and the command."""

    container: str
    stdin: bool
    tty: bool


def logs_request(pod: str, *, namespace: str, **options: Unpack[LogOptions]) -> Any:
    """The corral.node.v1.LogsRequest for POD; an option left out (or None) is unset."""
    req = node_pb.LogsRequest(
        ref=node_pb.ContainerRef(namespace=namespace, pod=pod,
                                 container=options.get("container", "")),
        follow=options.get("follow", False), previous=options.get("previous", False),
        timestamps=options.get("timestamps", False))
    for fld in ("tail_lines", "since_seconds", "limit_bytes"):
        value = options.get(fld)
        if value is not None:
            setattr(req, fld, value)
    return req


@dataclass(frozen=True)
class NodeProxy:
    """The NodeProxy calls over one channel. ERROR is api.client.error_from_rpc: it makes
    the APIError the server sent out of a grpc.RpcError (SERVER names the controlplane)."""

    stub: Any  # api.v1.apiserver_pb2_grpc.NodeProxyStub
    metadata: tuple[tuple[str, str], ...]
    server: str
    timeout: float
    error: Callable[[Any, str], APIError]

    def pod_logs(self, pod: str, *, namespace: str,
                 **options: Unpack[LogOptions]) -> Generator[bytes, None, None]:
        """The container's log as it comes from its node; with follow, until the container
        exits or the caller stops iterating (which cancels the stream)."""
        stream = self.stub.PodLogs(logs_request(pod, namespace=namespace, **options),
                                   metadata=self.metadata)
        try:
            for chunk in stream:
                yield chunk.data
        except grpc.RpcError as err:
            raise self.error(err, self.server) from None
        finally:
            stream.cancel()

    def pod_exec(self, pod: str, command: Sequence[str], *, namespace: str,
                 **options: Unpack[ExecOptions]) -> ExecSession:
        """Start COMMAND in the container; see ExecSession for the streams."""
        start = node_pb.ExecStart(
            ref=node_pb.ContainerRef(namespace=namespace, pod=pod,
                                     container=options.get("container", "")),
            command=list(command), stdin=options.get("stdin", False),
            tty=options.get("tty", False))
        return ExecSession(self, start)

    def node_stats(self, node: str, *, namespace: str = "", pod: str = "") -> Any:
        """The node's usage and its pods' (of NAMESPACE, or POD; empty: all), as the
        agent measured them: a corral.node.v1.StatsResponse."""
        try:
            return self.stub.NodeStats(pb.NodeStatsRequest(node=node, namespace=namespace,
                                                           pod=pod),
                                       timeout=self.timeout, metadata=self.metadata)
        except grpc.RpcError as err:
            raise self.error(err, self.server) from None


@dataclass(frozen=True)
class ExecEvent:
    """One output of an exec: KIND "stdout" or "stderr" with DATA, or "exit" with
    EXIT_CODE (and MESSAGE, why, when the command could not run or was killed)."""

    kind: str
    data: bytes = b""
    exit_code: int = 0
    message: str = ""


_CLOSE = object()


class ExecSession:
    """One exec's two directions: send_stdin/close_stdin/resize from any thread, iterate
    the output. Ends with one ExecEvent("exit"); exit_code holds it afterwards."""

    def __init__(self, proxy: NodeProxy, start: Any) -> None:
        self._inputs: queue.Queue[Any] = queue.Queue()
        self._inputs.put(node_pb.ExecInput(start=start))
        self._server = proxy.server
        self._error = proxy.error
        self._call = proxy.stub.PodExec(self._requests(), metadata=proxy.metadata)
        self.exit_code: int | None = None
        self.message = ""

    def _requests(self) -> Iterator[Any]:
        while True:
            item = self._inputs.get()
            if item is _CLOSE:
                return
            yield item

    def send_stdin(self, data: bytes) -> None:
        if data:
            self._inputs.put(node_pb.ExecInput(stdin=data))

    def close_stdin(self) -> None:
        """End of input: the remote process reads EOF."""
        self._inputs.put(node_pb.ExecInput(stdin_close=True))

    def resize(self, width: int, height: int) -> None:
        self._inputs.put(node_pb.ExecInput(resize=node_pb.TerminalSize(width=width,
                                                                         height=height)))

    def pump(self, fd: int, *, chunk: int = 32 * 1024) -> threading.Thread:
        """Send what FD yields as stdin, then close stdin at its EOF (a daemon thread)."""
        def run() -> None:
            while True:
                try:
                    data = os.read(fd, chunk)
                except OSError:
                    data = b""
                if not data:
                    self.close_stdin()
                    return
                self.send_stdin(data)
        thread = threading.Thread(target=run, name="exec-stdin", daemon=True)
        thread.start()
        return thread

    def __iter__(self) -> Iterator[ExecEvent]:
        try:
            for out in self._call:
                which = out.WhichOneof("output")
                if which == "exit":
                    self.exit_code, self.message = out.exit.exit_code, out.exit.message
                    yield ExecEvent("exit", exit_code=out.exit.exit_code,
                                    message=out.exit.message)
                elif which in ("stdout", "stderr"):
                    yield ExecEvent(which, data=getattr(out, which))
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.CANCELLED:
                return
            raise self._error(err, self._server) from None
        finally:
            self.cancel()

    def cancel(self) -> None:
        """End the exec (the controlplane cancels the agent's call, and the agent the
        session). The call is cancelled first: the request thread returning first would
        half-close the stream (EOF) ahead of the cancel."""
        self._call.cancel()
        self._inputs.put(_CLOSE)  # the request thread returns: grpc sends nothing now
