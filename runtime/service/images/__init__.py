"""Images: pull from an OCI distribution (v2) registry into the content store.

    "127.0.0.1:5000/busybox:1" ──reference.py──► Reference(registry, repository, tag, digest)
        │
        ▼  pull.py: Puller.pull(ref)
    distribution.py (httpx, async) ── auth.py: 401 ─► Basic | Bearer token (cached per scope)
        │  connections.py: a client per registry, closed 60 s after its last use (never
        │  while in use); transport.py: HTTP/1.1 on asyncio streams + h11, TLS (the CA
        │  bundle, one SSL context per process) only for https; proxy.py: HTTP(S)_PROXY /
        │  NO_PROXY as Go reads them ─► absolute-form requests (http) or CONNECT + TLS (https)
        │  HEAD/GET manifest (Accept: OCI index, OCI manifest, Docker list, Docker schema2)
        │  mediatypes.py: index ─► linux/amd64 entry; manifest ─► config + layers (types checked)
        │  GET blobs, ≤3 at once, retried (5xx, 429 + Retry-After, resets, stalls), resumed
        ▼  with Range, verified (digest + size) while streaming into
    content/ (writer per blob; commit only when verified; abort on any failure)
        └─ manifest/index committed last with containerd.io/gc.ref.content.* labels

Errors: errors.py (one taxonomy; every message names the image and the failed part).
"""

from runtime.service.images.auth import Authorizer, Challenge, parse_challenges
from runtime.service.images.distribution import RegistryClient, RetryPolicy
from runtime.service.images.errors import (
    BlobMismatch,
    ImageError,
    InvalidReference,
    NoSpace,
    NotFound,
    PlatformNotFound,
    PullError,
    PullTimeout,
    RegistryError,
    RegistryUnavailable,
    Unauthorized,
    UnsupportedMediaType,
)
from runtime.service.images.mediatypes import LINUX_AMD64, Descriptor, Platform
from runtime.service.images.proxy import Proxy, ProxySettings
from runtime.service.images.pull import Layer, Puller, PullResult, pull
from runtime.service.images.reference import Reference, parse_reference

__all__ = [
    "LINUX_AMD64",
    "Authorizer",
    "BlobMismatch",
    "Challenge",
    "Descriptor",
    "ImageError",
    "InvalidReference",
    "Layer",
    "NoSpace",
    "NotFound",
    "Platform",
    "PlatformNotFound",
    "Proxy",
    "ProxySettings",
    "PullError",
    "PullResult",
    "PullTimeout",
    "Puller",
    "Reference",
    "RegistryClient",
    "RegistryError",
    "RegistryUnavailable",
    "RetryPolicy",
    "Unauthorized",
    "UnsupportedMediaType",
    "parse_challenges",
    "parse_reference",
    "pull",
]
