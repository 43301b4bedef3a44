"""CRIClient(observe=): every unary call is reported with its name and duration, failed
ones too (the agent's CRI duration metric), against a real grpc.aio server on a socket."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import grpc  # type: ignore[import-untyped]
import pytest
from grpc import aio

from runtime.service.cri import api_pb2 as pb
from runtime.service.cri import api_pb2_grpc as pb_grpc
from runtime.service.cri import client as cric


class Runtime(pb_grpc.RuntimeServiceServicer):  # type: ignore[misc]
    async def Version(self, request: Any, context: Any) -> pb.VersionResponse:
        return pb.VersionResponse(version="0.1.0", runtime_name="stand-in")

    async def ContainerStatus(self, request: Any, context: Any) -> pb.ContainerStatusResponse:
        await context.abort(grpc.StatusCode.NOT_FOUND, f"no container {request.container_id}")


def test_every_call_is_observed_failed_ones_too(tmp_path: Any) -> None:
    seen: list[tuple[str, float]] = []

    async def run() -> None:
        sock = os.path.join(str(tmp_path), "cri.sock")
        server = aio.server()
        pb_grpc.add_RuntimeServiceServicer_to_server(Runtime(), server)
        server.add_insecure_port(f"unix://{sock}")
        await server.start()
        try:
            async with cric.CRIClient(sock, observe=lambda c, s: seen.append((c, s))) as cri:
                assert (await cri.version()).runtime_name == "stand-in"
                with pytest.raises(cric.NotFound):
                    await cri.container_status("c1")
        finally:
            await server.stop(None)

    asyncio.run(run())
    assert [c for c, _ in seen] == ["Version", "ContainerStatus"]
    assert all(0 <= s < 10 for _, s in seen)
