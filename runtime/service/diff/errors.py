"""The diff package's one error taxonomy.

    DiffError
    ├── InvalidLayer    the blob is not a readable layer (bad gzip, bad tar, zstd)  (INVALID_ARGUMENT)
    ├── UnsafeEntry     an entry would reach outside the destination               (INVALID_ARGUMENT)
    └── ApplyError      the kernel refused to apply an entry (EPERM, ENOSPC, ...)   (INTERNAL)

Every error that concerns one tar entry carries it in ``.entry`` and names it in the
message: ``layer entry '../x': path has a '..' component``.
"""

from __future__ import annotations


class DiffError(Exception):
    """Base of every diff error; ``entry`` is the tar entry it concerns (None: the layer)."""

    def __init__(self, message: str, *, entry: str | None = None) -> None:
        super().__init__(message)
        self.entry = entry


class InvalidLayer(DiffError, ValueError):
    pass


class UnsafeEntry(DiffError, ValueError):
    pass


class ApplyError(DiffError):
    pass


def entry_error(cls: type[DiffError], entry: str, reason: str) -> DiffError:
    """``cls("layer entry '<entry>': <reason>")`` with ``.entry`` set."""
    return cls(f"layer entry {entry!r}: {reason}", entry=entry)
