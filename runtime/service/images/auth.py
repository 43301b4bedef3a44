"""Registry authentication: the ``WWW-Authenticate`` challenge flow.

    request (with a cached Authorization, if any) ──► 401 + WWW-Authenticate
        ├─ Basic realm=…            ──► "Basic base64(user:password)" for that host
        └─ Bearer realm,service,scope ──► GET realm?service=…&scope=… (Basic creds if any)
                                          ──► token | access_token, cached per (host, scope)
    the request is sent again once; a second 401 means the credentials were rejected.

Credentials come from the caller, per registry host: ``{"127.0.0.1:5000": ("u", "p")}``.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runtime.service.images.errors import RegistryError, Unauthorized

if TYPE_CHECKING:
    import httpx  # the caller's client; this module never loads httpx itself

Credentials = Mapping[str, tuple[str, str]]

_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*(?:,|$)')
_SCHEME = re.compile(r"\s*([A-Za-z][A-Za-z0-9_.-]*)(?:\s+|$)")
_DEFAULT_TOKEN_TTL = 60.0
_MIN_TOKEN_TTL = 1.0


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lowercase: "basic", "bearer"
    params: Mapping[str, str]


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a WWW-Authenticate value; several challenges may share one header.

    >>> parse_challenges('Bearer realm="https://a/token",service="reg"')[0].params["service"]
    'reg'
    """
    out: list[Challenge] = []
    pos = 0
    while pos < len(header):
        m = _SCHEME.match(header, pos)
        if not m:
            break
        scheme = m.group(1).lower()
        pos = m.end()
        params: dict[str, str] = {}
        while pos < len(header):
            p = _PARAM.match(header, pos)
            if not p:
                break
            value = p.group(2) if p.group(2) is not None else p.group(3)
            params[p.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
            pos = p.end()
        out.append(Challenge(scheme, params))
        while pos < len(header) and header[pos] in " ,":
            pos += 1
    return out


def basic_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


@dataclass
class _Token:
    header: str
    expires: float


class Authorizer:
    """Answers challenges and remembers the result: Basic per host, tokens per scope."""

    def __init__(
        self,
        credentials: Credentials | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._credentials = dict(credentials or {})
        self._clock = clock
        self._basic: dict[str, str] = {}
        self._tokens: dict[tuple[str, str], _Token] = {}
        self.token_fetches = 0  # for tests and metrics

    def has_credentials(self, host: str) -> bool:
        return host in self._credentials

    def cached(self, host: str, scope: str) -> str | None:
        """The Authorization header to send before any challenge, if one is known."""
        if host in self._basic:
            return self._basic[host]
        token = self._tokens.get((host, scope))
        if token is None:
            return None
        if self._clock() >= token.expires:
            del self._tokens[(host, scope)]
            return None
        return token.header

    def forget(self, host: str, scope: str) -> None:
        self._basic.pop(host, None)
        self._tokens.pop((host, scope), None)

    async def answer(
        self, client: httpx.AsyncClient, *, host: str, scope: str, header: str
    ) -> str:
        """The Authorization header that answers the challenge(s) in HEADER."""
        challenges = {c.scheme: c for c in parse_challenges(header)}
        if "bearer" in challenges:
            return await self._bearer(client, host=host, scope=scope, c=challenges["bearer"])
        if "basic" in challenges:
            creds = self._credentials.get(host)
            if creds is None:
                raise Unauthorized(
                    f"401 Unauthorized: {host} requires credentials (none configured)"
                )
            value = self._basic[host] = basic_header(*creds)
            return value
        raise Unauthorized(
            f"401 Unauthorized: {host} sent an unsupported challenge {header!r}"
        )

    async def _bearer(
        self, client: httpx.AsyncClient, *, host: str, scope: str, c: Challenge
    ) -> str:
        realm = c.params.get("realm")
        if not realm:
            raise Unauthorized(f"401 Unauthorized: {host}: Bearer challenge without a realm")
        params: dict[str, str] = {}
        if c.params.get("service"):
            params["service"] = c.params["service"]
        params["scope"] = c.params.get("scope") or scope
        headers = {}
        creds = self._credentials.get(host)
        if creds is not None:
            headers["Authorization"] = basic_header(*creds)
        self.token_fetches += 1
        r = await client.get(realm, params=params, headers=headers)
        if r.status_code in (401, 403):
            why = "credentials rejected" if creds else "anonymous access refused"
            raise Unauthorized(f"{r.status_code} {r.reason_phrase}: {why} by token server {realm}")
        if r.status_code != 200:
            raise RegistryError(f"token server {realm}: {r.status_code} {r.reason_phrase}")
        try:
            doc = r.json()
        except ValueError:
            raise RegistryError(f"token server {realm}: answer is not JSON") from None
        token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"token server {realm}: answer has no token or access_token")
        ttl = doc.get("expires_in")
        ttl = float(ttl) if isinstance(ttl, int | float) and ttl > 0 else _DEFAULT_TOKEN_TTL
        # expire a little early: the token must still be valid when the registry sees it
        lifetime = max(_MIN_TOKEN_TTL, ttl * 0.9 - 1)
        value = f"Bearer {token}"
        self._tokens[(host, scope)] = _Token(value, self._clock() + lifetime)
        return value
