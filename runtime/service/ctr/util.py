"""Helpers the verbs share: find a container by ID, ID prefix or name; read CRI logs."""

from __future__ import annotations

import sys
from typing import Any

from runtime.service.cri import api_pb2 as pb
from runtime.service.ctr.conn import Conn, UsageError

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


def print_log(path: str, offset: int = 0) -> int:
    """Write the CRI log at PATH from OFFSET to stdout/stderr; returns the new offset."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return offset
    end = data.rfind(b"\n") + 1
    for line in data[:end].split(b"\n")[:-1]:
        parts = line.split(b" ", 3)
        if len(parts) < 4:
            continue
        out = sys.stdout.buffer if parts[1] == b"stdout" else sys.stderr.buffer
        out.write(parts[3] + (b"\n" if parts[2] == b"F" else b""))
    sys.stdout.flush()
    sys.stderr.flush()
    return offset + end
