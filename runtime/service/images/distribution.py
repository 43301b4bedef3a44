"""The OCI distribution API v2 client: manifests and blobs over HTTP(S), with httpx.

    resolve(ref)      HEAD /v2/<name>/manifests/<tag>   (Accept: index, manifest, list, schema2)
                      └─ no Docker-Content-Digest? GET it instead
    get_manifest()    GET  /v2/<name>/manifests/<digest>  ──► bytes, hashed and checked
    fetch_blob()      GET  /v2/<name>/blobs/<digest>  ──64 KiB chunks──► store.writer(expected
                      digest and size); an interrupted body resumes with Range: bytes=<offset>-;
                      commit verifies, any failure aborts the ingest.

Connections (connections.py): one httpx client per registry, opened by the first request and
closed ``idle_timeout`` s (60) after the last operation that used it ended; requests go over
transport.py (asyncio + h11), with an SSL context (the CA bundle) only for https: verified
unless the registry is in ``insecure_tls`` (decided in ``_new_client``, nowhere else).
Proxies (proxy.py): HTTP_PROXY / HTTPS_PROXY / NO_PROXY as Go reads them, from the
environment at the first pull unless ``proxies`` is given; a proxy that refuses a CONNECT
(https: a 4xx) is named and not retried: ``proxy http://127.0.0.1:3128: CONNECT answered
403 Forbidden``. Through a plain-http proxy request only a 407 is known to be the proxy's:
any other answer reads as the registry's, since the proxy relays those.

Every request goes through ``_send`` (Authorization from the Authorizer; one answer to a 401
challenge) and every attempt through ``_retrying``: connection errors, resets, stalls, 5xx
and 429 (``Retry-After`` seconds honoured) are retried with exponential backoff and jitter;
other 4xx are not. http for 127.0.0.1/localhost/[::1] and hosts marked plain-http, else https.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import json
import random
import re
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from runtime.service.content import ContentStore, Digest, Writer
from runtime.service.content import DigestMismatch as ContentDigestMismatch
from runtime.service.content import SizeMismatch as ContentSizeMismatch
from runtime.service.images.auth import Authorizer, Credentials
from runtime.service.images.errors import (
    BlobMismatch,
    NoSpace,
    NotFound,
    PullError,
    PullTimeout,
    RegistryError,
    RegistryUnavailable,
    Unauthorized,
    short,
)
from runtime.service.images.mediatypes import (
    INDEX_TYPES,
    MANIFEST_ACCEPT,
    MANIFEST_TYPES,
    Descriptor,
    base_type,
    manifest_media_type,
)
from runtime.service.images.reference import Reference

if TYPE_CHECKING:  # loaded by the first pull (connections, _retrying), not by an idle daemon
    import httpx

    from runtime.service.images.connections import ClientPool
    from runtime.service.images.proxy import ProxySettings

T = TypeVar("T")
CHUNK = 64 * 1024
MAX_MANIFEST = 4 << 20
KNOWN_TYPES = INDEX_TYPES | MANIFEST_TYPES
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # tries in all, the first included
    base_delay: float = 0.2  # seconds before the 2nd try; doubled each time after
    max_delay: float = 10.0
    max_retry_after: float = 60.0  # a larger Retry-After is capped to this

    def backoff(self, attempt: int) -> float:
        """Delay after failed try number ATTEMPT (1-based): exponential, jittered 50-100%."""
        delay = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return float(delay * random.uniform(0.5, 1.0))


class _Retry(Exception):
    """One attempt failed in a way worth trying again."""

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        return None  # an HTTP-date: use our own backoff


def _registry_message(r: httpx.Response, body: bytes) -> str:
    """The first ``errors[].message`` of a registry error body, if it has one."""
    try:
        doc = json.loads(body)
        first = doc["errors"][0]
        msg = first.get("message") or first.get("code")
        return str(msg).lower() if msg else r.reason_phrase
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return r.reason_phrase or f"HTTP {r.status_code}"


class RegistryClient:
    """One client for every registry host the daemon pulls from."""

    def __init__(
        self,
        *,
        credentials: Credentials | None = None,
        plain_http: Collection[str] = (),
        insecure_tls: Collection[str] = (),
        retry: RetryPolicy = RetryPolicy(),
        stall_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        idle_timeout: float = 60.0,
        proxies: ProxySettings | None = None,
    ) -> None:
        if idle_timeout <= 0:
            raise ValueError(f"RegistryClient: idle_timeout: must be > 0 seconds, got"
                             f" {idle_timeout}")
        self.auth = Authorizer(credentials)
        self._plain_http = frozenset(plain_http)
        self._insecure_tls = frozenset(insecure_tls)
        self.retry = retry
        self.stall_timeout = stall_timeout
        self.connect_timeout = connect_timeout
        self._transport = transport
        self._sleep = sleep
        self.idle_timeout = idle_timeout
        self._proxies = proxies  # None: read from the environment by the first pull
        self._connections: ClientPool | None = None

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        pool, self._connections = self._connections, None
        if pool is not None:
            await pool.aclose()

    @property
    def connections(self) -> ClientPool:
        """The per-registry clients (created, with httpx loaded, by the first request)."""
        if self._connections is None:
            from runtime.service.images.connections import ClientPool

            self._connections = ClientPool(self._new_client, idle=self.idle_timeout)
        return self._connections

    # ---- plumbing -----------------------------------------------------------------------

    def base_url(self, ref: Reference) -> str:
        plain = ref.host in LOOPBACK_HOSTS or ref.registry in self._plain_http
        plain = plain or ref.host in self._plain_http
        return f"{'http' if plain else 'https'}://{ref.registry}"

    @property
    def proxies(self) -> ProxySettings:
        """The proxy settings: from the environment (read once, on first use) unless given."""
        if self._proxies is None:
            import os

            from runtime.service.images.proxy import ProxySettings

            self._proxies = ProxySettings.from_environment(os.environ)
        return self._proxies

    def _new_client(self, registry: str) -> httpx.AsyncClient:
        import httpx

        from runtime.service.images.connections import tls_context
        from runtime.service.images.transport import H11Transport

        host = registry.rsplit(":", 1)[0] if not registry.startswith("[") else registry
        insecure = registry in self._insecure_tls or host in self._insecure_tls
        timeout = httpx.Timeout(connect=self.connect_timeout, read=self.stall_timeout,
                                write=self.stall_timeout, pool=None)
        # The one place TLS and proxies are decided: httpx, given a transport, reads neither
        # its verify= nor the proxy variables.
        transport = self._transport or H11Transport(
            tls_context=functools.partial(tls_context, verify=not insecure),
            proxies=self.proxies)
        return httpx.AsyncClient(timeout=timeout, follow_redirects=True, transport=transport)

    async def _send(
        self, ref: Reference, method: str, url: str, *, headers: Mapping[str, str]
    ) -> httpx.Response:
        """Send with credentials; answer one 401 challenge. The response is streamed:
        the caller closes it, inside the operation's ``connections.use``."""
        client = self.connections.client(ref.registry)
        host = ref.registry
        scope = f"repository:{ref.repository}:pull"
        h = dict(headers)
        sent = self.auth.cached(host, scope)
        if sent:
            h["Authorization"] = sent
        r = await client.send(client.build_request(method, url, headers=h), stream=True)
        if r.status_code != 401:
            return r
        await r.aclose()
        challenge = r.headers.get("www-authenticate")
        if not challenge:
            raise Unauthorized(f"401 Unauthorized from {host} without a challenge")
        if sent:
            self.auth.forget(host, scope)
        h["Authorization"] = await self.auth.answer(client, host=host, scope=scope,
                                                    header=challenge)
        r = await client.send(client.build_request(method, url, headers=h), stream=True)
        if r.status_code == 401:
            await r.aclose()
            self.auth.forget(host, scope)
            if self.auth.has_credentials(host):
                raise Unauthorized(f"401 Unauthorized: credentials rejected by {host}")
            raise Unauthorized(f"401 Unauthorized: {host} requires credentials (none configured)")
        return r

    def _check(self, r: httpx.Response, *, what: str, body: bytes = b"") -> None:
        """Raise for a non-2xx answer: _Retry for 429/5xx, a PullError for the rest."""
        code = r.status_code
        if 200 <= code < 300:
            return
        status = f"{code} {r.reason_phrase}".strip()
        if code == 429 or code >= 500:
            raise _Retry(f"{status} from {r.url.netloc.decode()}",
                         retry_after=_retry_after(r.headers.get("retry-after")))
        if code == 404:
            raise NotFound(f"{what}: {_registry_message(r, body) if body else 'not found'} (404)")
        if code == 403:
            raise Unauthorized(f"{what}: 403 Forbidden: {_registry_message(r, body)}")
        raise RegistryError(f"{what}: {status}: {_registry_message(r, body)}")

    async def _retrying(self, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        import httpx

        from runtime.service.images.transport import ProxyRefused

        policy = self.retry
        last = ""
        timed_out = False
        for n in range(1, policy.attempts + 1):
            delay: float
            try:
                return await attempt()
            except ProxyRefused as e:  # the proxy's 4xx, or a bad proxy setting: not retried
                error = Unauthorized if e.status in (401, 403, 407) else RegistryError
                raise error(str(e)) from e
            except _Retry as e:
                last, timed_out = e.reason, False
                delay = (min(e.retry_after, policy.max_retry_after)
                         if e.retry_after is not None else policy.backoff(n))
            except httpx.TimeoutException as e:
                last, timed_out = f"{type(e).__name__}: {e}", True
                delay = policy.backoff(n)
            except httpx.TransportError as e:
                last, timed_out = f"{type(e).__name__}: {e}", False
                delay = policy.backoff(n)
            if n < policy.attempts:
                await self._sleep(delay)
        tries = f"gave up after {policy.attempts} attempts"
        if timed_out:
            raise PullTimeout(f"{what}: stalled: no data for {self.stall_timeout:g} s ({tries})")
        raise RegistryUnavailable(f"{what}: {last} ({tries})")

    # ---- manifests ----------------------------------------------------------------------

    def _manifest_url(self, ref: Reference, obj: str) -> str:
        return f"{self.base_url(ref)}/v2/{ref.repository}/manifests/{obj}"

    async def resolve(self, ref: Reference) -> tuple[Descriptor, bytes | None]:
        """What REF points at: its descriptor, and the manifest bytes if they had to be
        fetched to learn the digest (a HEAD without Docker-Content-Digest)."""
        if ref.digest is not None:
            return Descriptor(media_type="", digest=ref.digest, size=-1), None
        what = f"manifest {ref.object}"

        async def head() -> Descriptor | None:
            r = await self._send(ref, "HEAD", self._manifest_url(ref, ref.object),
                                 headers={"Accept": ", ".join(MANIFEST_ACCEPT)})
            try:
                self._check(r, what=what)
            finally:
                await r.aclose()
            dg = r.headers.get("docker-content-digest")
            mt = base_type(r.headers.get("content-type"))
            size = r.headers.get("content-length")
            if not dg or mt not in KNOWN_TYPES or not size or not size.isdigit():
                return None  # GET it, and look at the body
            try:
                return Descriptor(media_type=mt, digest=Digest(dg), size=int(size))
            except ValueError:
                return None

        try:
            async with self.connections.use(ref.registry):
                desc = await self._retrying(what, head)
        except NotFound:
            # a HEAD has no body, so fetch again to say why
            pass
        else:
            if desc is not None:
                return desc, None
        media_type, body, digest = await self.get_manifest(ref, ref.object)
        return Descriptor(media_type=media_type, digest=digest, size=len(body)), body

    async def get_manifest(self, ref: Reference, obj: str) -> tuple[str, bytes, Digest]:
        """GET a manifest or index by tag or digest -> (media type, bytes, digest). By
        digest, the bytes must hash to it; by tag, to Docker-Content-Digest if sent."""
        by_digest = obj.count(":") == 1 and not obj.startswith(":")
        what = f"manifest {short(obj) if by_digest else obj}"

        async def get() -> tuple[str, bytes, Digest]:
            r = await self._send(ref, "GET", self._manifest_url(ref, obj),
                                 headers={"Accept": ", ".join(MANIFEST_ACCEPT)})
            try:
                body = bytearray()
                async for chunk in r.aiter_bytes(CHUNK):
                    body += chunk
                    if len(body) > MAX_MANIFEST:
                        raise RegistryError(f"{what}: larger than {MAX_MANIFEST} bytes")
                self._check(r, what=what, body=bytes(body))
            finally:
                await r.aclose()
            data = bytes(body)
            want = Digest(obj) if by_digest else None
            header = r.headers.get("docker-content-digest")
            if want is None and header:
                try:
                    want = Digest(header)
                except ValueError:
                    want = None
            algorithm = want.algorithm if want else "sha256"
            got = Digest.from_bytes(data, algorithm)
            if want is not None and got != want:
                raise BlobMismatch(f"manifest {short(want)}: digest mismatch (got {got})")
            mt = manifest_media_type(r.headers.get("content-type"), data, what=what)
            return mt, data, got

        async with self.connections.use(ref.registry):
            return await self._retrying(what, get)

    # ---- blobs --------------------------------------------------------------------------

    async def fetch_blob(
        self,
        ref: Reference,
        desc: Descriptor,
        *,
        store: ContentStore,
        what: str,
        labels: Mapping[str, str] | None = None,
    ) -> int:
        """Stream the blob into STORE, verified; return the bytes downloaded. Nothing is
        committed unless size and digest match; on any failure the ingest is aborted."""
        url = f"{self.base_url(ref)}/v2/{ref.repository}/blobs/{desc.digest}"
        ingest_ref = f"pull-{desc.digest}"
        box: list[Writer] = [store.writer(ingest_ref, expected_digest=desc.digest,
                                          expected_size=desc.size)]
        downloaded = 0

        def restart() -> Writer:
            box[0].abort()
            box[0] = store.writer(ingest_ref, expected_digest=desc.digest,
                                  expected_size=desc.size)
            return box[0]

        async def get() -> None:
            nonlocal downloaded
            w = box[0]
            if w.offset >= desc.size and w.offset:
                w = restart()  # a stale ingest that cannot be right: start over
            start = w.offset
            headers = {"Range": f"bytes={start}-"} if start else {}
            r = await self._send(ref, "GET", url, headers=headers)
            try:
                if not 200 <= r.status_code < 300:
                    self._check(r, what=what, body=await r.aread())
                if start and r.status_code != 206:
                    w = restart()  # the server sent the whole blob again
                async for chunk in r.aiter_bytes(CHUNK):
                    if w.offset + len(chunk) > desc.size:
                        raise BlobMismatch(f"{what}: size mismatch: more than the {desc.size}"
                                           " bytes its descriptor says")
                    try:
                        w.write(chunk)
                    except OSError as e:
                        if e.errno == errno.ENOSPC:
                            raise NoSpace(f"{what}: no space left on device writing to the"
                                          " content store") from e
                        raise PullError(f"{what}: writing to the content store: {e}") from e
                    downloaded += len(chunk)
            finally:
                await r.aclose()

        try:
            async with self.connections.use(ref.registry):
                await self._retrying(what, get)
            w = box[0]
            if w.offset != desc.size:
                raise BlobMismatch(
                    f"{what}: size mismatch: expected {desc.size} bytes, got {w.offset}")
            try:
                w.commit(labels=labels)
            except ContentDigestMismatch as e:
                m = re.search(r"got (\S+)$", str(e))
                got = short(m.group(1)) if m else "?"
                raise BlobMismatch(f"{what}: digest mismatch (got {got})") from e
            except ContentSizeMismatch as e:
                raise BlobMismatch(f"{what}: size mismatch: {e}") from e
        except BaseException:
            box[0].abort()
            raise
        return downloaded
