"""Authentication: who is calling.

::

    authenticate(cert_pem, authorization, tokens)
      ├── client certificate (TLS already verified it against the cluster CA)
      │     └── user_from_certificate: CN -> name, each O -> a group (an LRU per
      │         certificate's bytes: TLS verified them, so the same bytes, the same user)
      ├── else "authorization: Bearer <token>"
      │     └── TokenFile.lookup: Kubernetes' static token file, constant-time match
      └── else Unauthenticated("no client certificate and no bearer token")

Every authenticated user also gets the group ``system:authenticated``. Error messages
never repeat the token a client sent.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import hmac
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

AUTHENTICATED_GROUP = "system:authenticated"
CERTIFICATE_CACHE_SIZE = 4096  # distinct client certificates remembered


class Unauthenticated(Exception):
    """The caller could not be identified (maps to gRPC UNAUTHENTICATED)."""


class TokenFileError(ValueError):
    """A static token file that cannot be loaded; names the file and the line."""


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...]
    uid: str = ""


def _with_authenticated(groups: tuple[str, ...]) -> tuple[str, ...]:
    return groups if AUTHENTICATED_GROUP in groups else (*groups, AUTHENTICATED_GROUP)


def _digest(token: str) -> bytes:
    # Comparing fixed-length digests keeps even the token's length out of the timing.
    return hashlib.sha256(token.encode()).digest()


class TokenFile:
    """Kubernetes' --token-auth-file: ``token,user,uid,"group1,group2"`` per line.

    Blank lines and lines starting with ``#`` are skipped. Unlike Kubernetes, which logs
    and goes on, an empty or duplicate token is an error: the file is security policy.
    """

    def __init__(self, entries: list[tuple[bytes, User]], *, path: str = "") -> None:
        self._entries = entries
        self.path = path

    def __len__(self) -> int:
        return len(self._entries)

    @classmethod
    def load(cls, path: str) -> TokenFile:
        try:
            with open(path, encoding="utf-8", newline="") as f:
                lines = f.read().splitlines()
        except OSError as e:
            raise TokenFileError(f"token file {path}: cannot read: {e.strerror}") from e
        except UnicodeDecodeError as e:
            raise TokenFileError(f"token file {path}: not UTF-8 text") from e
        return cls.parse(lines, path=path)

    @classmethod
    def parse(cls, lines: list[str], *, path: str = "<tokens>") -> TokenFile:
        entries: list[tuple[bytes, User]] = []
        seen: dict[bytes, int] = {}
        for number, line in enumerate(lines, start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            where = f"token file {path}: line {number}"
            try:
                records = list(csv.reader([line], strict=True, skipinitialspace=True))
            except csv.Error as e:
                raise TokenFileError(f"{where}: not valid CSV: {e}") from None
            record = [field.strip() for field in records[0]] if records else []
            if not 3 <= len(record) <= 4:
                raise TokenFileError(
                    f"{where}: want 3 or 4 columns (token, user name, uid[, groups]), "
                    f"found {len(record)}")
            token, name, uid = record[:3]
            if not token:
                raise TokenFileError(f"{where}: token: must not be empty")
            if not name:
                raise TokenFileError(f"{where}: user name: must not be empty")
            digest = _digest(token)
            if digest in seen:
                raise TokenFileError(f"{where}: token: duplicates the token on line "
                                     f"{seen[digest]}")
            seen[digest] = number
            groups = tuple(g.strip() for g in record[3].split(",") if g.strip()) \
                if len(record) == 4 else ()
            entries.append((digest, User(name=name, groups=groups, uid=uid)))
        return cls(entries, path=path)

    def lookup(self, token: str) -> User | None:
        """The user TOKEN belongs to, or None; compares against every entry every time."""
        wanted = _digest(token)
        found: User | None = None
        for digest, user in self._entries:
            if hmac.compare_digest(digest, wanted):
                found = user
        return found


@functools.lru_cache(maxsize=CERTIFICATE_CACHE_SIZE)
def user_from_certificate(pem: bytes) -> User:
    """The identity in a (verified) client certificate: CN is the name, each O a group.

    Remembered per certificate (the bytes TLS verified): parsing X.509 on every request
    cost ~5% of a write. Failures are not remembered (lru_cache keeps only returns)."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as e:
        raise Unauthenticated("client certificate: not a PEM certificate") from e
    names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if len(names) != 1 or not isinstance(names[0], str) or not names[0]:
        raise Unauthenticated("client certificate: subject must have exactly one common name")
    groups = tuple(str(a.value) for a in
                   cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME) if a.value)
    return User(name=names[0], groups=_with_authenticated(groups))


def _bearer_token(authorization: str) -> str:
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise Unauthenticated('invalid authorization header: want "Bearer <token>"')
    return token


def authenticate(*, cert_pem: bytes | None, authorization: str | None,
                 tokens: TokenFile | None) -> User:
    """Who the caller is: a client certificate wins, else a bearer token."""
    if cert_pem:
        return user_from_certificate(cert_pem)
    if authorization:
        token = _bearer_token(authorization)
        user = tokens.lookup(token) if tokens is not None else None
        if user is None:
            raise Unauthenticated("invalid bearer token")
        return User(name=user.name, groups=_with_authenticated(user.groups), uid=user.uid)
    raise Unauthenticated("no client certificate and no bearer token")
