"""The content store: immutable blobs addressed by digest (containerd's ``content``).

    registry pull / image import
        │  writer(ref, expected_digest, expected_size)      ingest: resumable, locked per ref
        ▼  write(chunk)… commit()  — verified: size + digest
    blobs by digest (read-only) + labels ("containerd.io/gc.ref.content.*" for GC)
        │  info / read / open / walk
        ▼
    images (manifests, configs, layers) → snapshots (unpack)

``ContentStore`` (store.py) is the interface; ``FileContentStore`` (on disk) and
``MemoryContentStore`` (for tests of higher layers) implement it and pass one conformance
suite. Errors: errors.py.
"""

from runtime.service.content.digest import Digest
from runtime.service.content.errors import (
    AlreadyExists,
    ContentError,
    DigestMismatch,
    InvalidDigest,
    Locked,
    NotFound,
    SizeMismatch,
)
from runtime.service.content.filestore import FileContentStore, FileWriter
from runtime.service.content.memory import MemoryContentStore, MemoryWriter
from runtime.service.content.store import ContentStore, Info, IngestStatus, Writer

__all__ = [
    "AlreadyExists",
    "ContentError",
    "ContentStore",
    "Digest",
    "DigestMismatch",
    "FileContentStore",
    "FileWriter",
    "Info",
    "IngestStatus",
    "InvalidDigest",
    "Locked",
    "MemoryContentStore",
    "MemoryWriter",
    "NotFound",
    "SizeMismatch",
    "Writer",
]
