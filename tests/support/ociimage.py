"""Small OCI / Docker images made here from /bin/busybox, and a minimal push client.

::

    img = ociimage.image(compression="gzip")         # OCI manifest, one gzip layer
    docker = ociimage.image(docker=True)              # Docker schema2 manifest
    idx = ociimage.index()                            # OCI index: linux/amd64 + linux/arm64
    ociimage.push(registry.url, "busybox", "1", img)  # POST+PUT ?digest= per blob, PUT manifest

Everything is deterministic (tar mtimes 0, gzip mtime 0), so digests are stable in a run.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from typing import Any

import httpx

BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "ls", "cat", "echo", "true")

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"


@dataclass(frozen=True)
class Blob:
    media_type: str
    data: bytes = field(repr=False)

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}


@dataclass(frozen=True)
class Image:
    manifest: Blob
    config: Blob
    layers: tuple[Blob, ...]

    @property
    def blobs(self) -> tuple[Blob, ...]:
        return (self.config, *self.layers)


@dataclass(frozen=True)
class Index:
    index: Blob
    images: dict[str, Image]  # "linux/amd64" -> image

    @property
    def manifest(self) -> Blob:
        return self.index


@functools.cache
def layer_tar() -> bytes:
    """bin/busybox and a few symlinks to it, as an uncompressed tar."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        d = tarfile.TarInfo("bin")
        d.type, d.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(d)
        with open(BUSYBOX, "rb") as f:
            data = f.read()
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
        for name in APPLETS:
            link = tarfile.TarInfo(f"bin/{name}")
            link.type, link.linkname, link.mode = tarfile.SYMTYPE, "busybox", 0o777
            tar.addfile(link)
    return buf.getvalue()


@functools.cache
def layer_gzip() -> bytes:
    return gzip.compress(layer_tar(), compresslevel=1, mtime=0)


def _json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def config_blob(*, architecture: str = "amd64", docker: bool = False,
                extra_env: tuple[str, ...] = ()) -> Blob:
    diff_id = "sha256:" + hashlib.sha256(layer_tar()).hexdigest()
    cfg = {
        "architecture": architecture,
        "os": "linux",
        "config": {
            "Entrypoint": ["/bin/sh", "-c"],
            "Cmd": ["echo hello from corral"],
            "Env": ["PATH=/bin", *extra_env],
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "corral tests/support/ociimage.py"}],
    }
    return Blob(DOCKER_CONFIG if docker else OCI_CONFIG, _json(cfg))


def image(*, compression: str = "gzip", docker: bool = False, architecture: str = "amd64",
          layer_media_type: str | None = None, extra_env: tuple[str, ...] = ()) -> Image:
    """One-layer image. compression: "gzip" or "none"; docker=True: Docker schema2."""
    if compression not in ("gzip", "none"):
        raise ValueError(f"compression: want 'gzip' or 'none', got {compression!r}")
    data = layer_gzip() if compression == "gzip" else layer_tar()
    if layer_media_type is None:
        if docker:
            layer_media_type = DOCKER_LAYER_GZIP
        else:
            layer_media_type = OCI_LAYER_GZIP if compression == "gzip" else OCI_LAYER
    layer = Blob(layer_media_type, data)
    config = config_blob(architecture=architecture, docker=docker, extra_env=extra_env)
    mt = DOCKER_MANIFEST if docker else OCI_MANIFEST
    manifest = {"schemaVersion": 2, "mediaType": mt, "config": config.descriptor(),
                "layers": [layer.descriptor()]}
    return Image(Blob(mt, _json(manifest)), config, (layer,))


def index(*, platforms: tuple[str, ...] = ("linux/amd64", "linux/arm64")) -> Index:
    """An OCI index with one image per platform (the arm64 one differs by its config)."""
    images: dict[str, Image] = {}
    entries = []
    for p in platforms:
        os_, arch = p.split("/")[:2]
        img = image(architecture=arch, extra_env=(f"PLATFORM={p}",))
        images[p] = img
        entries.append(img.manifest.descriptor(platform={"os": os_, "architecture": arch}))
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    return Index(Blob(OCI_INDEX, _json(doc)), images)


# ---- push ------------------------------------------------------------------------------


def _auth_header(client: httpx.Client, r: httpx.Response, repo: str,
                 auth: tuple[str, str] | None) -> str | None:
    """Answer a 401 challenge for a push (Basic, or a Bearer token with pull,push)."""
    challenge = r.headers.get("www-authenticate", "")
    basic = httpx.BasicAuth(*auth) if auth else None
    if challenge.lower().startswith("basic") and auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
        return f"Basic {token}"
    if challenge.lower().startswith("bearer"):
        params = dict(
            part.split("=", 1) for part in challenge[len("bearer "):].split(",") if "=" in part)
        params = {k.strip(): v.strip().strip('"') for k, v in params.items()}
        t = client.get(params["realm"], auth=basic,
                       params={"service": params.get("service", ""),
                               "scope": f"repository:{repo}:pull,push"})
        t.raise_for_status()
        return f"Bearer {t.json()['token']}"
    return None


class Pusher:
    """Minimal push client: monolithic blob uploads and manifest PUTs."""

    def __init__(self, base_url: str, repo: str, *, auth: tuple[str, str] | None = None) -> None:
        self.base = base_url.rstrip("/")
        self.repo = repo
        self.auth = auth
        self.client = httpx.Client(timeout=30)
        self.header: str | None = None

    def _req(self, method: str, url: str, **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", {}))
        if self.header:
            headers["Authorization"] = self.header
        r = self.client.request(method, url, headers=headers, **kw)
        if r.status_code == 401:
            self.header = _auth_header(self.client, r, self.repo, self.auth)
            if self.header:
                headers["Authorization"] = self.header
                r = self.client.request(method, url, headers=headers, **kw)
        return r

    def blob(self, blob: Blob) -> None:
        url = f"{self.base}/v2/{self.repo}/blobs/{blob.digest}"
        if self._req("HEAD", url).status_code == 200:
            return
        r = self._req("POST", f"{self.base}/v2/{self.repo}/blobs/uploads/")
        if r.status_code != 202:
            raise RuntimeError(f"push {self.repo}: POST upload: {r.status_code} {r.text}")
        location = httpx.URL(self.base).join(r.headers["location"])
        sep = "&" if "?" in str(location) else "?"
        r = self._req("PUT", f"{location}{sep}digest={blob.digest}", content=blob.data,
                      headers={"Content-Type": "application/octet-stream"})
        if r.status_code != 201:
            raise RuntimeError(f"push {self.repo}: PUT blob {blob.digest}: {r.status_code} {r.text}")

    def manifest(self, ref: str, blob: Blob, *, content_type: str | None = None) -> None:
        r = self._req("PUT", f"{self.base}/v2/{self.repo}/manifests/{ref}", content=blob.data,
                      headers={"Content-Type": content_type or blob.media_type})
        if r.status_code != 201:
            raise RuntimeError(f"push {self.repo}:{ref}: PUT manifest: {r.status_code} {r.text}")

    def close(self) -> None:
        self.client.close()


def push(base_url: str, repo: str, tag: str, img: Image | Index, *,
         auth: tuple[str, str] | None = None) -> None:
    """Push IMG (blobs first, then manifests; an index's images by digest, then the index)."""
    p = Pusher(base_url, repo, auth=auth)
    try:
        images = list(img.images.values()) if isinstance(img, Index) else [img]
        for one in images:
            for b in one.blobs:
                p.blob(b)
            if isinstance(img, Index):
                p.manifest(one.manifest.digest, one.manifest)
        p.manifest(tag, img.manifest)
    finally:
        p.close()
