"""Media types of OCI and Docker images, and the pure decisions made on them.

    manifest bytes + Content-Type ──kind_of()──► INDEX | MANIFEST (else unsupported)
    INDEX ──select_platform(index, linux/amd64)──► the manifest descriptor to follow
    MANIFEST ──parse_manifest()──► config descriptor + layer descriptors (types checked)
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runtime.service.content import Digest, InvalidDigest
from runtime.service.images.errors import (
    PlatformNotFound,
    RegistryError,
    UnsupportedMediaType,
    short,
)

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_ND = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_ND_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

#: what we send as ``Accept`` when resolving a tag, most preferred first
MANIFEST_ACCEPT: tuple[str, ...] = (OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST)
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})
LAYER_TYPES = frozenset({
    OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, OCI_LAYER_ND, OCI_LAYER_ND_GZIP,
    DOCKER_LAYER_GZIP, DOCKER_LAYER_FOREIGN,
})


class Kind(enum.Enum):
    INDEX = "index"
    MANIFEST = "manifest"


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``linux/amd64`` or ``linux/arm64/v8``."""
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"platform {text!r}: want os/architecture[/variant]")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


LINUX_AMD64 = Platform("linux", "amd64")


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    platform: Platform | None = None
    urls: tuple[str, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


def base_type(content_type: str | None) -> str:
    """``application/json; charset=utf-8`` -> ``application/json``."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def kind_of(media_type: str, *, what: str) -> Kind:
    if media_type in INDEX_TYPES:
        return Kind.INDEX
    if media_type in MANIFEST_TYPES:
        return Kind.MANIFEST
    raise UnsupportedMediaType(f"{what}: unsupported media type {media_type or '(none)'}")


def manifest_media_type(content_type: str | None, body: bytes, *, what: str) -> str:
    """The manifest's media type: the Content-Type, or its own ``mediaType`` when the
    registry answered with a generic JSON type."""
    ct = base_type(content_type)
    if ct and ct not in ("application/json", "text/plain", "application/octet-stream"):
        return ct
    doc = load_json(body, what=what)
    mt = doc.get("mediaType")
    if isinstance(mt, str) and mt:
        return mt
    if "manifests" in doc:
        return OCI_INDEX
    if "config" in doc and "layers" in doc:
        return OCI_MANIFEST
    return ct


def load_json(body: bytes, *, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise RegistryError(f"{what}: not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise RegistryError(f"{what}: want a JSON object, got {type(doc).__name__}")
    return doc


def parse_descriptor(obj: object, *, what: str) -> Descriptor:
    if not isinstance(obj, dict):
        raise RegistryError(f"{what}: descriptor must be an object, got {obj!r}")
    mt, dg, size = obj.get("mediaType"), obj.get("digest"), obj.get("size")
    if not isinstance(mt, str) or not mt:
        raise RegistryError(f"{what}: mediaType: missing")
    try:
        digest = Digest(dg)
    except InvalidDigest as e:
        raise RegistryError(f"{what}: digest: {e}") from None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise RegistryError(f"{what} {short(digest)}: size: must be an int >= 0, got {size!r}")
    platform = None
    p = obj.get("platform")
    if isinstance(p, dict) and isinstance(p.get("os"), str) and isinstance(
        p.get("architecture"), str
    ):
        variant = p.get("variant")
        platform = Platform(p["os"], p["architecture"], variant if isinstance(variant, str) else None)
    urls = obj.get("urls") or ()
    annotations = obj.get("annotations") or {}
    return Descriptor(
        media_type=mt,
        digest=digest,
        size=size,
        platform=platform,
        urls=tuple(u for u in urls if isinstance(u, str)),
        annotations={k: v for k, v in annotations.items() if isinstance(v, str)},
    )


def select_platform(body: bytes, platform: Platform, *, what: str = "index") -> Descriptor:
    """The index entry for PLATFORM (a missing variant in the index matches any)."""
    doc = load_json(body, what=what)
    entries = doc.get("manifests")
    if not isinstance(entries, list):
        raise RegistryError(f"{what}: manifests: must be a list")
    for i, entry in enumerate(entries):
        d = parse_descriptor(entry, what=f"{what}: manifests[{i}]")
        p = d.platform
        if p is None or (p.os, p.architecture) != (platform.os, platform.architecture):
            continue
        if platform.variant and p.variant and p.variant != platform.variant:
            continue
        kind_of(d.media_type, what=f"{what}: manifests[{i}] {short(d.digest)}")
        return d
    raise PlatformNotFound(f"no manifest for platform {platform} in {what}")


def parse_manifest(body: bytes, media_type: str, *, what: str = "manifest") -> Manifest:
    """Config and layer descriptors, each media type checked (unknown ones are refused
    before anything is downloaded)."""
    doc = load_json(body, what=what)
    if doc.get("schemaVersion") != 2:
        raise UnsupportedMediaType(
            f"{what}: schemaVersion {doc.get('schemaVersion')!r} is not supported (want 2)"
        )
    config = parse_descriptor(doc.get("config"), what=f"{what}: config")
    if config.media_type not in CONFIG_TYPES:
        raise UnsupportedMediaType(
            f"config {short(config.digest)}: unsupported media type {config.media_type}"
        )
    raw_layers = doc.get("layers")
    if not isinstance(raw_layers, list):
        raise RegistryError(f"{what}: layers: must be a list")
    layers = []
    for i, raw in enumerate(raw_layers):
        layer = parse_descriptor(raw, what=f"{what}: layers[{i}]")
        if layer.media_type not in LAYER_TYPES:
            raise UnsupportedMediaType(
                f"layer {short(layer.digest)}: unsupported media type {layer.media_type}"
            )
        layers.append(layer)
    return Manifest(media_type=media_type, config=config, layers=tuple(layers))
