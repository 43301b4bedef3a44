"""The content store's one error taxonomy (mapped to gRPC codes at the CRI edge, later).

    ContentError
    ├── NotFound        no blob / ingest for that digest or ref        (NOT_FOUND)
    ├── AlreadyExists   the object is already there                    (ALREADY_EXISTS)
    │   └── Locked      another writer holds that ingest ref           (UNAVAILABLE)
    ├── DigestMismatch  committed bytes do not hash to the expected    (FAILED_PRECONDITION)
    ├── SizeMismatch    committed bytes are not the expected size      (FAILED_PRECONDITION)
    └── InvalidDigest   not "sha256:<64 hex>" / "sha512:<128 hex>"    (INVALID_ARGUMENT)

(Also a ``ValueError``.) Messages name the object: ``ref 'pull-1': expected size 10, got 12``.
"""

from __future__ import annotations


class ContentError(Exception):
    """Base of every content store error."""


class NotFound(ContentError):
    pass


class AlreadyExists(ContentError):
    pass


class Locked(AlreadyExists):
    """Another writer (in this or another process) holds the ingest ref."""


class DigestMismatch(ContentError):
    pass


class SizeMismatch(ContentError):
    pass


class InvalidDigest(ContentError, ValueError):
    pass
