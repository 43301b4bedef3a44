"""The daemon's CRI stubs over a blocking channel, with the namespace on every call."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: `run` starts without it
    from typing import Any

DEFAULT_SOCKET = "/run/corral/runtime.sock"
DEFAULT_NAMESPACE = "default"


class UsageError(Exception):
    """Bad arguments to a verb (exit code 2)."""


class Conn:
    def __init__(self, socket_path: str | None, namespace: str) -> None:
        self.socket = socket_path or os.environ.get("CORRAL_RUNTIME_SOCKET") or DEFAULT_SOCKET
        self.namespace = namespace
        import grpc  # type: ignore[import-untyped]  # here: UsageError must import fast

        from runtime.service.cri import api_pb2_grpc as pb_grpc

        self.channel = grpc.insecure_channel(f"unix://{self.socket}")
        self._rt = pb_grpc.RuntimeServiceStub(self.channel)  # type: ignore[no-untyped-call]
        self._im = pb_grpc.ImageServiceStub(self.channel)  # type: ignore[no-untyped-call]

    def rt(self, call: str, request: Any, timeout: float | None = 120) -> Any:
        return getattr(self._rt, call)(request, timeout=timeout,
                                       metadata=[("containerd-namespace", self.namespace)])

    def im(self, call: str, request: Any, timeout: float | None = None) -> Any:
        return getattr(self._im, call)(request, timeout=timeout,
                                       metadata=[("containerd-namespace", self.namespace)])

    def close(self) -> None:
        self.channel.close()
