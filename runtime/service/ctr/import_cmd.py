"""corral-ctr import TARBALL: import an OCI-layout or docker-save tarball; print the names.

CRI has no import call: the daemon takes a PullImage of ``corral-import:<absolute path>``
(see ctr/__init__.py); the tarball must be readable by the daemon on this machine."""

from __future__ import annotations

import os

from runtime.service.cri import api_pb2 as pb
from runtime.service.ctr.conn import Conn, UsageError

PREFIX = "corral-import:"


def run(conn: Conn, args: list[str]) -> int:
    if len(args) != 1:
        raise UsageError("usage: import TARBALL")
    path = os.path.abspath(args[0])
    if not os.path.isfile(path):
        raise UsageError(f"{args[0]}: no such file")
    r = conn.im("PullImage", pb.PullImageRequest(image=pb.ImageSpec(image=PREFIX + path)))
    for name in r.image_ref.split("\n"):
        print(name)
    return 0
