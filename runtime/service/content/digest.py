"""OCI digests: ``<algorithm>:<lowercase hex>``, sha256 (64 hex) or sha512 (128 hex)."""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

from runtime.service.content.errors import InvalidDigest

if TYPE_CHECKING:
    from _hashlib import HASH

HEX_LENGTHS: dict[str, int] = {"sha256": 64, "sha512": 128}
_HEX = re.compile(r"[0-9a-f]+")


class Digest(str):
    """A validated OCI digest; it *is* its string form, so it works as a dict key or path part.

    >>> Digest("sha256:" + "0" * 64).algorithm
    'sha256'
    """

    __slots__ = ()

    def __new__(cls, value: object) -> Digest:
        if isinstance(value, Digest):
            return value
        if not isinstance(value, str):
            raise InvalidDigest(f"invalid digest {value!r}: must be a string")
        algorithm, sep, hex_ = value.partition(":")
        if not sep:
            raise InvalidDigest(f"invalid digest {value!r}: missing '<algorithm>:' prefix")
        length = HEX_LENGTHS.get(algorithm)
        if length is None:
            raise InvalidDigest(
                f"invalid digest {value!r}: unsupported algorithm {algorithm!r}"
                f" (want one of {', '.join(HEX_LENGTHS)})"
            )
        if len(hex_) != length or not _HEX.fullmatch(hex_):
            raise InvalidDigest(
                f"invalid digest {value!r}: {algorithm} needs {length} lowercase hex characters"
            )
        return super().__new__(cls, value)

    @property
    def algorithm(self) -> str:
        return self.partition(":")[0]

    @property
    def hex(self) -> str:
        return self.partition(":")[2]

    @classmethod
    def from_bytes(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        return cls.from_hash(new_hash(algorithm, data))

    @classmethod
    def from_hash(cls, h: HASH) -> Digest:
        return cls(f"{h.name}:{h.hexdigest()}")


def new_hash(algorithm: str = "sha256", data: bytes = b"") -> HASH:
    if algorithm not in HEX_LENGTHS:
        raise InvalidDigest(f"unsupported digest algorithm {algorithm!r}")
    return hashlib.new(algorithm, data)
