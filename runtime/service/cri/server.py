"""The CRI gRPC server: both servicers on one unix socket, and the one error map.

::

    grpc.aio.server ── interceptor: any exception ──► code_of(exc) ──► context.abort(code)
        ├ RuntimeServicer (runtime_servicer.py)
        └ ImageServicer   (image_servicer.py)
            └ Service (service.py), SandboxManager (sandboxes.py), ImageService, TaskManager

Tenancy: the gRPC metadata key ``containerd-namespace`` picks the namespace, as it does for
containerd; CRI clients send none and get ``k8s.io``. corral-ctr sends its ``-n``.

Cost per call (cProfile of 400 List calls): the wrapper and tenant_of are ~1% of the
daemon's CPU; the rest of "the wrapper" in a py-spy profile is gRPC's own (the call's
task, (de)serialising). Each RPC method is wrapped once, at make_server; an exception's
code is looked up once per exception class.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc  # type: ignore[import-untyped]
from grpc import aio

from runtime.service import bundle, sandboxes, tasks
from runtime.service import containers as ctrs
from runtime.service import snapshots as snaps
from runtime.service.cni import errors as cni_errors
from runtime.service.config import ConfigError
from runtime.service.cri import service as svc
from runtime.service.images import errors as img_errors
from runtime.service.images import store as img_store
from runtime.service.shim.client import ShimError

CRI_NAMESPACE = "k8s.io"
NAMESPACE_HEADER = "containerd-namespace"
log = logging.getLogger("corral.runtimed")

# Most specific first: the first class an exception is an instance of wins.
CODES: list[tuple[type[BaseException], grpc.StatusCode]] = [
    (svc.NotFound, grpc.StatusCode.NOT_FOUND),
    (svc.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (svc.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (svc.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (svc.DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
    (sandboxes.NotFound, grpc.StatusCode.NOT_FOUND),
    (sandboxes.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (sandboxes.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (sandboxes.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (ctrs.NotFound, grpc.StatusCode.NOT_FOUND),
    (ctrs.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (tasks.NotFound, grpc.StatusCode.NOT_FOUND),
    (tasks.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (tasks.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (bundle.BundleError, grpc.StatusCode.INVALID_ARGUMENT),
    (img_store.ImageNotFound, grpc.StatusCode.NOT_FOUND),
    (img_errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (img_errors.InvalidReference, grpc.StatusCode.INVALID_ARGUMENT),
    (img_errors.Unauthorized, grpc.StatusCode.UNAUTHENTICATED),
    (img_errors.PullTimeout, grpc.StatusCode.DEADLINE_EXCEEDED),
    (img_errors.NoSpace, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (snaps.NotFound, grpc.StatusCode.NOT_FOUND),
    (ConfigError, grpc.StatusCode.FAILED_PRECONDITION),
    (cni_errors.CNIError, grpc.StatusCode.UNKNOWN),
    (ShimError, grpc.StatusCode.UNKNOWN),
    (ValueError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotImplementedError, grpc.StatusCode.UNIMPLEMENTED),
]


_CODE_OF: dict[type[BaseException], grpc.StatusCode] = {}


def code_of(exc: BaseException) -> grpc.StatusCode:
    """The gRPC code of EXC: the first of CODES it is an instance of (else UNKNOWN)."""
    code = _CODE_OF.get(type(exc))
    if code is None:
        code = next((c for cls, c in CODES if isinstance(exc, cls)), grpc.StatusCode.UNKNOWN)
        _CODE_OF[type(exc)] = code
    return code


def tenant_of(context: Any) -> str:
    """The call's containerd-namespace header, else k8s.io (CRI's)."""
    for key, value in context.invocation_metadata() or ():
        if key == NAMESPACE_HEADER and value:
            return value if type(value) is str else str(value)
    return CRI_NAMESPACE


def _wrap_unary(fn: Callable[..., Awaitable[Any]], name: str) -> Callable[..., Awaitable[Any]]:
    async def call(request: Any, context: Any) -> Any:
        try:
            return await fn(request, context)
        except Exception as e:
            code = code_of(e)
            if code is grpc.StatusCode.UNKNOWN:
                log.warning("%s: %s: %s", name, type(e).__name__, e)
            await context.abort(code, str(e) or type(e).__name__)
    return call


def _wrap_stream(fn: Callable[..., AsyncIterator[Any]], name: str
                 ) -> Callable[..., AsyncIterator[Any]]:
    async def call(request: Any, context: Any) -> AsyncIterator[Any]:
        try:
            async for item in fn(request, context):
                yield item
        except Exception as e:
            await context.abort(code_of(e), str(e) or type(e).__name__)
    return call


def wrap(servicer: Any, streams: tuple[str, ...] = ()) -> Any:
    """SERVICER with every RPC method's exceptions turned into gRPC status codes."""
    for name in dir(type(servicer)):
        if not name[:1].isupper():
            continue
        fn = getattr(servicer, name)
        if not callable(fn):
            continue
        setattr(servicer, name, _wrap_stream(fn, name) if name in streams
                else _wrap_unary(fn, name))
    return servicer


def make_server(socket_path: str, *, runtime: Any, images: Any) -> aio.Server:
    from runtime.service.cri import api_pb2_grpc as pb_grpc

    server = aio.server(options=[("grpc.max_receive_message_length", 16 << 20),
                                 ("grpc.max_send_message_length", 16 << 20)])
    pb_grpc.add_RuntimeServiceServicer_to_server(  # type: ignore[no-untyped-call]
        wrap(runtime, streams=("GetContainerEvents",)), server)
    pb_grpc.add_ImageServiceServicer_to_server(  # type: ignore[no-untyped-call]
        wrap(images), server)
    server.add_insecure_port(f"unix://{socket_path}")
    return server
