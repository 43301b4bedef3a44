"""The image service's one error taxonomy (mapped to gRPC codes at the CRI edge, later).

    ImageError
    ├── InvalidReference      "busybox:1" with no registry host, bad tag…    (INVALID_ARGUMENT)
    └── PullError             what failed while pulling; ``image`` names the pull
        ├── Unauthorized      401/403, credentials rejected or missing        (PERMISSION_DENIED)
        │                     (also a proxy's 401/403/407: "proxy http://…: CONNECT answered 403 …")
        ├── NotFound          manifest / blob unknown (404)                   (NOT_FOUND)
        ├── UnsupportedMediaType   a manifest, config or layer type we do not know
        ├── PlatformNotFound  an index without an entry for our platform     (NOT_FOUND)
        ├── BlobMismatch      a blob's bytes do not hash / add up as declared  (DATA_LOSS)
        ├── PullTimeout       a read stalled longer than the stall timeout    (DEADLINE_EXCEEDED)
        ├── RegistryUnavailable  connection errors, 5xx, 429 after every retry (UNAVAILABLE)
        │                     (the proxy's too: unreachable, 502 to CONNECT…)
        ├── NoSpace           ENOSPC while writing into the content store     (RESOURCE_EXHAUSTED)
        └── RegistryError     any other unexpected answer (4xx, bad JSON…)    (UNKNOWN)

A ``PullError`` is raised by the registry client with only ``what`` (``layer sha256:ab12…:
digest mismatch (got sha256:…)``); ``pull()`` sets ``image``, so the message reads
``pull 127.0.0.1:5000/busybox:1: layer sha256:ab12…: digest mismatch (got sha256:…)``.
"""

from __future__ import annotations


class ImageError(Exception):
    """Base of every image service error."""


class InvalidReference(ImageError, ValueError):
    pass


class PullError(ImageError):
    def __init__(self, what: str, *, image: str | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.image = image

    def __str__(self) -> str:
        return f"pull {self.image}: {self.what}" if self.image else self.what


class Unauthorized(PullError):
    pass


class NotFound(PullError):
    pass


class UnsupportedMediaType(PullError):
    pass


class PlatformNotFound(PullError):
    pass


class BlobMismatch(PullError):
    pass


class PullTimeout(PullError):
    pass


class RegistryUnavailable(PullError):
    pass


class NoSpace(PullError):
    pass


class RegistryError(PullError):
    pass


def short(digest: str) -> str:
    """``sha256:ab12cd34ef56…`` — how messages name a blob."""
    algorithm, _, hex_ = digest.partition(":")
    return f"{algorithm}:{hex_[:12]}…" if len(hex_) > 12 else digest
