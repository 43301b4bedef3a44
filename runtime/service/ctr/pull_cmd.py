"""corral-ctr pull IMAGE: pull and print the image ID."""

from __future__ import annotations

from runtime.service.cri import api_pb2 as pb
from runtime.service.ctr.conn import Conn, UsageError


def run(conn: Conn, args: list[str]) -> int:
    if len(args) != 1:
        raise UsageError("usage: pull IMAGE")
    r = conn.im("PullImage", pb.PullImageRequest(image=pb.ImageSpec(image=args[0])))
    print(r.image_ref)
    return 0
