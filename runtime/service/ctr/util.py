"""Helpers the verbs share: find a container by ID, ID prefix or name; read CRI logs."""

from __future__ import annotations

from typing import Any

from runtime.service.cri import api_pb2 as pb
from runtime.service.ctr.conn import Conn, UsageError
from runtime.service.ctr.crilog import print_log

__all__ = ["STATES", "find", "print_log"]

STATES = {pb.CONTAINER_CREATED: "created", pb.CONTAINER_RUNNING: "running",
          pb.CONTAINER_EXITED: "exited", pb.CONTAINER_UNKNOWN: "unknown"}


def find(conn: Conn, ref: str) -> Any:
    """The container whose ID, ID prefix or name is REF (names are what `run` was given)."""
    found = conn.rt("ListContainers", pb.ListContainersRequest()).containers
    exact = [c for c in found if c.id == ref or c.metadata.name == ref]
    if not exact:
        exact = [c for c in found if c.id.startswith(ref)]
    if len(exact) != 1:
        raise UsageError(f"container {ref!r}: " + ("not found" if not exact else
                                                   f"ambiguous ({len(exact)} match)"))
    return exact[0]
