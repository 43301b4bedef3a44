"""CRI ImageService: a pass-through to images/ (and cri/service.py's image lookups).

Pull goes to the configured mirrors first (the image is recorded under the name asked
for), with the configured credentials, or the call's AuthConfig for its registry.
Errors propagate as raised; cri/server.py maps them to gRPC codes.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from typing import Any

from runtime.service.config import DaemonConfig
from runtime.service.cri import api_pb2 as pb
from runtime.service.cri import api_pb2_grpc as pb_grpc
from runtime.service.cri.service import ImageRef, Service
from runtime.service.images import RegistryClient, parse_reference
from runtime.service.images.errors import ImageError
from runtime.service.images.store import ImageNotFound

IMPORT_PREFIX = "corral-import:"


def image_message(ref: ImageRef, *, names: list[str] | None = None) -> pb.Image:
    name = ref.image.name
    tags = names if names is not None else [name]
    repo = [f"{t.rsplit(':', 1)[0] if ':' in t.rsplit('/', 1)[-1] else t}@"
            f"{ref.manifest_digest}" for t in tags]
    user = str((ref.config.get("config") or {}).get("User") or "").partition(":")[0]
    msg = pb.Image(id=ref.id, repo_tags=tags, repo_digests=sorted(set(repo)), size=ref.size,
                   spec=pb.ImageSpec(image=ref.id))
    if user.isdigit():
        msg.uid.value = int(user)
    elif user:
        msg.username = user
    return msg


class ImageServicer(pb_grpc.ImageServiceServicer):
    def __init__(self, service: Service, config: DaemonConfig, *,
                 tenant_of: Any) -> None:
        self.svc = service
        self.config = config
        self.tenant_of = tenant_of
        self._pulls: dict[tuple[str, str], asyncio.Task[str]] = {}

    async def ListImages(self, request: pb.ListImagesRequest, context: Any
                         ) -> pb.ListImagesResponse:
        tenant = self.tenant_of(context)
        refs = await asyncio.to_thread(self.svc.list_images, tenant)
        by_id: dict[str, tuple[ImageRef, list[str]]] = {}
        for r in refs:
            by_id.setdefault(r.id, (r, []))[1].append(r.image.name)
        want = request.filter.image.image if request.HasField("filter") else ""
        if want:
            try:
                one = await asyncio.to_thread(self.svc.image, tenant, want)
                by_id = {k: v for k, v in by_id.items() if k == one.id}
            except ImageNotFound:
                by_id = {}
        return pb.ListImagesResponse(images=[image_message(r, names=sorted(n))
                                             for r, n in by_id.values()])

    async def ImageStatus(self, request: pb.ImageStatusRequest, context: Any
                          ) -> pb.ImageStatusResponse:
        tenant = self.tenant_of(context)

        def status() -> tuple[ImageRef, list[str]]:  # one trip to a worker thread, not two
            ref = self.svc.image(tenant, request.image.image)
            return ref, [r.image.name for r in self.svc.list_images(tenant) if r.id == ref.id]
        try:
            ref, names = await asyncio.to_thread(status)
        except ImageNotFound:
            return pb.ImageStatusResponse()
        return pb.ImageStatusResponse(image=image_message(ref, names=sorted(names)))

    async def PullImage(self, request: pb.PullImageRequest, context: Any
                        ) -> pb.PullImageResponse:
        tenant = self.tenant_of(context)
        name = request.image.image
        if name.startswith(IMPORT_PREFIX):  # corral-ctr import (see ctr/__init__.py)
            names = await asyncio.to_thread(self.svc.images.import_, tenant,
                                            name[len(IMPORT_PREFIX):])
            return pb.PullImageResponse(image_ref="\n".join(names))
        key = (tenant, name)
        task = self._pulls.get(key)
        if task is None:  # concurrent pulls of one image share one
            task = asyncio.ensure_future(self.pull(tenant, name, request.auth
                                                   if request.HasField("auth") else None))
            self._pulls[key] = task
            task.add_done_callback(lambda _t: self._pulls.pop(key, None))
        return pb.PullImageResponse(image_ref=await asyncio.shield(task))

    async def pull(self, tenant: str, name: str, auth: pb.AuthConfig | None) -> str:
        ref = parse_reference(name, default_registry=self.config.default_registry or None)
        creds = self.config.credentials()
        if auth is not None:
            user, password = auth.username, auth.password
            if auth.auth and not user:
                user, _, password = base64.b64decode(auth.auth).decode().partition(":")
            if user:
                creds[ref.registry] = (user, password)
        sources = [*self.config.mirrors(ref.registry), ref.registry]
        last: Exception | None = None
        async with RegistryClient(credentials=creds,
                                  plain_http=self.config.plain_http()) as client:
            for host in sources:
                src = str(ref) if host == ref.registry else \
                    str(ref).replace(ref.registry, host, 1)
                try:
                    img = await self.svc.images.pull(tenant, src, client=client)
                except ImageError as e:
                    last = e
                    continue
                if img.name != str(ref):
                    await asyncio.to_thread(self.svc.images.tag, tenant, img.name, str(ref))
                    await asyncio.to_thread(self.svc.images.remove, tenant, img.name)
                break
            else:
                assert last is not None
                raise last
        return (await asyncio.to_thread(self.svc.image, tenant, str(ref))).id

    async def RemoveImage(self, request: pb.RemoveImageRequest, context: Any
                          ) -> pb.RemoveImageResponse:
        tenant = self.tenant_of(context)

        def remove() -> None:
            try:
                ref = self.svc.image(tenant, request.image.image)
            except ImageNotFound:
                return  # removing an absent image is not an error (CRI)
            # By ID: every name of it goes; by name: that name.
            names = [r.image.name for r in self.svc.list_images(tenant) if r.id == ref.id] \
                if ref.id.startswith(request.image.image) or \
                request.image.image.startswith("sha256:") else [ref.image.name]
            for n in names:
                try:
                    self.svc.images.remove(tenant, n)
                except ImageNotFound:
                    continue
        await asyncio.to_thread(remove)
        return pb.RemoveImageResponse()

    async def ImageFsInfo(self, request: pb.ImageFsInfoRequest, context: Any
                          ) -> pb.ImageFsInfoResponse:
        root = self.svc.snapshotter.root

        def usage() -> tuple[int, int]:
            used = inodes = 0
            for dirpath, dirnames, filenames in os.walk(root):
                inodes += len(dirnames) + len(filenames)
                for f in filenames:
                    try:
                        used += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
                    except OSError:
                        continue
            return used, inodes
        used, inodes = await asyncio.to_thread(usage)
        return pb.ImageFsInfoResponse(image_filesystems=[pb.FilesystemUsage(
            timestamp=time.time_ns(), fs_id=pb.FilesystemIdentifier(mountpoint=root),
            used_bytes=pb.UInt64Value(value=used), inodes_used=pb.UInt64Value(value=inodes))])
