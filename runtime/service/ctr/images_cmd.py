"""corral-ctr images: REF, IMAGE ID, SIZE."""

from __future__ import annotations

from runtime.service.cri import api_pb2 as pb
from runtime.service.ctr.conn import Conn


def run(conn: Conn, args: list[str]) -> int:
    images = conn.im("ListImages", pb.ListImagesRequest(), timeout=60).images
    print(f"{'REF':<60} {'IMAGE ID':<20} SIZE")
    for img in images:
        for tag in img.repo_tags or ["<none>"]:
            print(f"{tag:<60} {img.id[7:20]:<20} {img.size}")
    return 0
