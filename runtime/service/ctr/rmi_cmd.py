"""corral-ctr rmi IMAGE...: remove images (by name or ID)."""

from __future__ import annotations

from runtime.service.cri import api_pb2 as pb
from runtime.service.ctr.conn import Conn, UsageError


def run(conn: Conn, args: list[str]) -> int:
    if not args:
        raise UsageError("usage: rmi IMAGE...")
    for ref in args:
        st = conn.im("ImageStatus", pb.ImageStatusRequest(image=pb.ImageSpec(image=ref)))
        if not st.HasField("image"):
            raise UsageError(f"image {ref!r}: not found")
        conn.im("RemoveImage", pb.RemoveImageRequest(image=pb.ImageSpec(image=ref)))
        print(ref)
    return 0
