"""A typed asyncio client of a CRI runtime: corral-runtimed, or containerd's CRI plugin.

::

    async with CRIClient("/run/corral/runtime.sock") as cri:
        ref = await cri.pull_image(pb.ImageSpec(image="127.0.0.1:5000/busybox:1"))
        pod = await cri.run_pod_sandbox(sandbox_config)
        cid = await cri.create_container(pod, container_config, sandbox_config=sandbox_config)
        await cri.start_container(cid)
        out = await cri.exec_sync(cid, ["echo", "hi"], timeout=5)

Every call returns the message the runtime answered with (or its one interesting field:
an ID, a list, a URL) and raises a ``CRIError`` on failure. The taxonomy, mapped from gRPC
status codes in ``_error`` and nowhere else::

    CRIError                 .call ("RunPodSandbox"), .subject (ID or image), .code, .details
    ├── NotFound             NOT_FOUND: no such sandbox, container or image
    ├── AlreadyExists        ALREADY_EXISTS: a name is reserved (sandbox/container metadata)
    ├── InvalidArgument      INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE
    ├── Unimplemented        UNIMPLEMENTED: the runtime lacks the call (containerd 1.6 has
    │                        no GetContainerEvents)
    ├── Unavailable          UNAVAILABLE: the socket does not answer
    ├── DeadlineExceeded     DEADLINE_EXCEEDED: our timeout passed first
    └── CallFailed           any other code (UNKNOWN, INTERNAL, …): the runtime's own failure

Messages read ``CRI StartContainer 3f2a9c…: NOT_FOUND: <the runtime's details>``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from types import EllipsisType, TracebackType
from typing import Any, TypeVar, cast

import grpc  # type: ignore[import-untyped]
from grpc import aio

from runtime.service.cri import api_pb2 as pb
from runtime.service.cri import api_pb2_grpc as pb_grpc

API_VERSION = "v1"
DEFAULT_TIMEOUT = 120.0  # seconds; kubelet's default runtime request timeout is 2 min
_MAX_MESSAGE = 16 * 1024 * 1024  # as kubelet: ExecSync output is capped at 16 MB
_OPTIONS: list[tuple[str, Any]] = [("grpc.max_receive_message_length", _MAX_MESSAGE),
                                   ("grpc.max_send_message_length", _MAX_MESSAGE)]

M = TypeVar("M")


class CRIError(Exception):
    """A CRI call failed; ``call`` names the RPC, ``subject`` what it was about."""

    def __init__(self, call: str, code: str, details: str, *, subject: str = "") -> None:
        self.call = call
        self.code = code
        self.details = details
        self.subject = subject
        what = f"{call} {_short(subject)}" if subject else call
        super().__init__(f"CRI {what}: {code}: {details}")


class NotFound(CRIError):
    pass


class AlreadyExists(CRIError):
    pass


class InvalidArgument(CRIError):
    pass


class Unimplemented(CRIError):
    pass


class Unavailable(CRIError):
    pass


class DeadlineExceeded(CRIError):
    pass


class CallFailed(CRIError):
    pass


_BY_CODE: dict[str, type[CRIError]] = {
    "NOT_FOUND": NotFound,
    "ALREADY_EXISTS": AlreadyExists,
    "INVALID_ARGUMENT": InvalidArgument,
    "FAILED_PRECONDITION": InvalidArgument,
    "OUT_OF_RANGE": InvalidArgument,
    "UNIMPLEMENTED": Unimplemented,
    "UNAVAILABLE": Unavailable,
    "DEADLINE_EXCEEDED": DeadlineExceeded,
}


def _short(subject: str) -> str:
    """A 64-hex ID reads as its first 13 characters, as crictl prints it."""
    if len(subject) == 64 and all(c in "0123456789abcdef" for c in subject):
        return subject[:13]
    return subject


def _error(call: str, err: grpc.RpcError, subject: str) -> CRIError:
    code = err.code()
    name = code.name if isinstance(code, grpc.StatusCode) else str(code)
    details = err.details() or "(no details)"
    return _BY_CODE.get(name, CallFailed)(call, name, details, subject=subject)


def _grace(timeout: float | None, extra: float) -> float | None:
    return None if timeout is None else timeout + extra


class CRIClient:
    """The RuntimeService and ImageService of the runtime at ``socket_path``."""

    def __init__(self, socket_path: str, *, timeout: float | None = DEFAULT_TIMEOUT,
                 pull_timeout: float | None = None,
                 observe: Callable[[str, float], None] | None = None) -> None:
        """OBSERVE(call, seconds) is told of every unary call, failed ones too (the agent's
        CRI duration metric)."""
        self.socket_path = socket_path
        self.timeout = timeout
        self.observe = observe
        self.pull_timeout = pull_timeout  # None: a pull may take as long as it takes
        self._channel = aio.insecure_channel(f"unix://{socket_path}", options=_OPTIONS)
        self._runtime = pb_grpc.RuntimeServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._images = pb_grpc.ImageServiceStub(self._channel)  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> CRIClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def _call(self, stub: Any, call: str, request: Any, response: type[M], *,
                    subject: str = "", timeout: float | EllipsisType | None = ...) -> M:
        """One unary call; ``timeout=...`` means the client's default."""
        method = getattr(stub, call)
        deadline = self.timeout if timeout is ... else timeout
        started = time.monotonic()
        try:
            answer = await method(request, timeout=deadline)
        except grpc.RpcError as err:
            raise _error(call, err, subject) from None
        finally:
            if self.observe is not None:
                self.observe(call, time.monotonic() - started)
        if not isinstance(answer, response):
            raise CallFailed(call, "UNKNOWN", f"answered with a {type(answer).__name__}, "
                             f"want {response.__name__}", subject=subject)
        return answer

    # ---- runtime ----------------------------------------------------------------------

    async def version(self, api_version: str = API_VERSION) -> pb.VersionResponse:
        return await self._call(self._runtime, "Version", pb.VersionRequest(
            version=api_version), pb.VersionResponse)

    async def status(self, *, verbose: bool = False) -> pb.StatusResponse:
        return await self._call(self._runtime, "Status", pb.StatusRequest(verbose=verbose),
                                pb.StatusResponse)

    # ---- pod sandboxes ----------------------------------------------------------------

    async def run_pod_sandbox(self, config: pb.PodSandboxConfig, *,
                              runtime_handler: str = "") -> str:
        """Run a sandbox; returns its ID. The runtime sets up its network (CNI) first."""
        name = f"{config.metadata.namespace}/{config.metadata.name}"
        r = await self._call(self._runtime, "RunPodSandbox", pb.RunPodSandboxRequest(
            config=config, runtime_handler=runtime_handler), pb.RunPodSandboxResponse,
            subject=name)
        return r.pod_sandbox_id

    async def stop_pod_sandbox(self, pod_sandbox_id: str) -> None:
        await self._call(self._runtime, "StopPodSandbox", pb.StopPodSandboxRequest(
            pod_sandbox_id=pod_sandbox_id), pb.StopPodSandboxResponse, subject=pod_sandbox_id)

    async def remove_pod_sandbox(self, pod_sandbox_id: str) -> None:
        await self._call(self._runtime, "RemovePodSandbox", pb.RemovePodSandboxRequest(
            pod_sandbox_id=pod_sandbox_id), pb.RemovePodSandboxResponse,
            subject=pod_sandbox_id)

    async def pod_sandbox_status(self, pod_sandbox_id: str, *,
                                 verbose: bool = False) -> pb.PodSandboxStatusResponse:
        return await self._call(self._runtime, "PodSandboxStatus", pb.PodSandboxStatusRequest(
            pod_sandbox_id=pod_sandbox_id, verbose=verbose), pb.PodSandboxStatusResponse,
            subject=pod_sandbox_id)

    async def list_pod_sandbox(self, filter: pb.PodSandboxFilter | None = None
                               ) -> list[pb.PodSandbox]:
        r = await self._call(self._runtime, "ListPodSandbox", pb.ListPodSandboxRequest(
            filter=filter), pb.ListPodSandboxResponse)
        return list(r.items)

    # ---- containers -------------------------------------------------------------------

    async def create_container(self, pod_sandbox_id: str, config: pb.ContainerConfig, *,
                               sandbox_config: pb.PodSandboxConfig) -> str:
        """Create a container in a sandbox; returns its ID."""
        r = await self._call(self._runtime, "CreateContainer", pb.CreateContainerRequest(
            pod_sandbox_id=pod_sandbox_id, config=config, sandbox_config=sandbox_config),
            pb.CreateContainerResponse, subject=config.metadata.name)
        return r.container_id

    async def start_container(self, container_id: str) -> None:
        await self._call(self._runtime, "StartContainer", pb.StartContainerRequest(
            container_id=container_id), pb.StartContainerResponse, subject=container_id)

    async def stop_container(self, container_id: str, *, timeout: int = 0) -> None:
        """SIGTERM (or the image's stop signal), SIGKILL after ``timeout`` seconds."""
        await self._call(self._runtime, "StopContainer", pb.StopContainerRequest(
            container_id=container_id, timeout=timeout), pb.StopContainerResponse,
            subject=container_id, timeout=_grace(self.timeout, timeout))

    async def remove_container(self, container_id: str) -> None:
        await self._call(self._runtime, "RemoveContainer", pb.RemoveContainerRequest(
            container_id=container_id), pb.RemoveContainerResponse, subject=container_id)

    async def list_containers(self, filter: pb.ContainerFilter | None = None
                              ) -> list[pb.Container]:
        r = await self._call(self._runtime, "ListContainers", pb.ListContainersRequest(
            filter=filter), pb.ListContainersResponse)
        return list(r.containers)

    async def container_status(self, container_id: str, *,
                               verbose: bool = False) -> pb.ContainerStatusResponse:
        return await self._call(self._runtime, "ContainerStatus", pb.ContainerStatusRequest(
            container_id=container_id, verbose=verbose), pb.ContainerStatusResponse,
            subject=container_id)

    async def update_container_resources(
            self, container_id: str, linux: pb.LinuxContainerResources, *,
            annotations: Mapping[str, str] | None = None) -> None:
        await self._call(self._runtime, "UpdateContainerResources",
                         pb.UpdateContainerResourcesRequest(
                             container_id=container_id, linux=linux,
                             annotations=dict(annotations or {})),
                         pb.UpdateContainerResourcesResponse, subject=container_id)

    async def reopen_container_log(self, container_id: str) -> None:
        await self._call(self._runtime, "ReopenContainerLog", pb.ReopenContainerLogRequest(
            container_id=container_id), pb.ReopenContainerLogResponse, subject=container_id)

    # ---- exec and streaming endpoints -------------------------------------------------

    async def exec_sync(self, container_id: str, cmd: Iterable[str], *,
                        timeout: int = 0) -> pb.ExecSyncResponse:
        """Run CMD in the container and wait; ``timeout`` seconds (0: none) bounds it."""
        deadline = _grace(self.timeout, timeout) if timeout else None
        return await self._call(self._runtime, "ExecSync", pb.ExecSyncRequest(
            container_id=container_id, cmd=list(cmd), timeout=timeout), pb.ExecSyncResponse,
            subject=container_id, timeout=deadline)

    async def exec(self, container_id: str, cmd: Iterable[str], *, tty: bool = False,
                   stdin: bool = False, stdout: bool = True, stderr: bool = True) -> str:
        """The URL of the runtime's streaming server for this exec session."""
        r = await self._call(self._runtime, "Exec", pb.ExecRequest(
            container_id=container_id, cmd=list(cmd), tty=tty, stdin=stdin, stdout=stdout,
            stderr=stderr and not tty), pb.ExecResponse, subject=container_id)
        return r.url

    async def attach(self, container_id: str, *, tty: bool = False, stdin: bool = False,
                     stdout: bool = True, stderr: bool = True) -> str:
        r = await self._call(self._runtime, "Attach", pb.AttachRequest(
            container_id=container_id, tty=tty, stdin=stdin, stdout=stdout,
            stderr=stderr and not tty), pb.AttachResponse, subject=container_id)
        return r.url

    async def port_forward(self, pod_sandbox_id: str, ports: Iterable[int]) -> str:
        r = await self._call(self._runtime, "PortForward", pb.PortForwardRequest(
            pod_sandbox_id=pod_sandbox_id, port=list(ports)), pb.PortForwardResponse,
            subject=pod_sandbox_id)
        return r.url

    # ---- stats and events -------------------------------------------------------------

    async def container_stats(self, container_id: str) -> pb.ContainerStats:
        r = await self._call(self._runtime, "ContainerStats", pb.ContainerStatsRequest(
            container_id=container_id), pb.ContainerStatsResponse, subject=container_id)
        return r.stats

    async def list_container_stats(self, filter: pb.ContainerStatsFilter | None = None
                                   ) -> list[pb.ContainerStats]:
        r = await self._call(self._runtime, "ListContainerStats", pb.ListContainerStatsRequest(
            filter=filter), pb.ListContainerStatsResponse)
        return list(r.stats)

    async def container_events(self) -> AsyncIterator[pb.ContainerEventResponse]:
        """The runtime's event stream, until it ends or the caller stops iterating."""
        call = self._runtime.GetContainerEvents(pb.GetEventsRequest())
        try:
            async for event in call:
                yield cast(pb.ContainerEventResponse, event)
        except grpc.RpcError as err:
            raise _error("GetContainerEvents", err, "") from None
        finally:
            call.cancel()

    # ---- images -----------------------------------------------------------------------

    async def pull_image(self, image: pb.ImageSpec, *, auth: pb.AuthConfig | None = None,
                         sandbox_config: pb.PodSandboxConfig | None = None) -> str:
        """Pull an image; returns the runtime's reference to it (its image ID)."""
        r = await self._call(self._images, "PullImage", pb.PullImageRequest(
            image=image, auth=auth, sandbox_config=sandbox_config), pb.PullImageResponse,
            subject=image.image, timeout=self.pull_timeout)
        return r.image_ref

    async def list_images(self, filter: pb.ImageFilter | None = None) -> list[pb.Image]:
        r = await self._call(self._images, "ListImages", pb.ListImagesRequest(filter=filter),
                             pb.ListImagesResponse)
        return list(r.images)

    async def image_status(self, image: pb.ImageSpec, *,
                           verbose: bool = False) -> pb.ImageStatusResponse:
        """The image's status; ``HasField("image")`` is false when it is not present."""
        return await self._call(self._images, "ImageStatus", pb.ImageStatusRequest(
            image=image, verbose=verbose), pb.ImageStatusResponse, subject=image.image)

    async def remove_image(self, image: pb.ImageSpec) -> None:
        await self._call(self._images, "RemoveImage", pb.RemoveImageRequest(image=image),
                         pb.RemoveImageResponse, subject=image.image)

    async def image_fs_info(self) -> pb.ImageFsInfoResponse:
        return await self._call(self._images, "ImageFsInfo", pb.ImageFsInfoRequest(),
                                pb.ImageFsInfoResponse)
