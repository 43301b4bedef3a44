"""A tiny Docker-style token server for registry token auth (distribution's auth/token).

::

    with TokenServer(users={"alice": "s3cret"}) as ts:   # 127.0.0.1, a free port, a thread
        ts.realm          # http://127.0.0.1:PORT/token
        ts.write_rootcert(path)   # the self-signed cert: the registry's rootcertbundle

GET /token?service=S&scope=repository:NAME:pull[,push] with Basic credentials -> 200
{"token", "access_token", "expires_in", "issued_at"}; bad credentials -> 401. Tokens are
ES256 JWTs whose header ``kid`` is the libtrust key ID of the signing key (distribution 2.8
looks a ``kid`` up among the keys of its rootcertbundle), with the ``access`` claim for
the requested scopes.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import time
import uuid
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from tests.support import httpserver


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def libtrust_key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """libtrust's key ID: SHA-256 of the DER SubjectPublicKeyInfo, first 240 bits, base32
    without padding, in 12 groups of 4 joined by ':'."""
    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode("ascii").rstrip("=")
    return ":".join(b32[i:i + 4] for i in range(0, len(b32), 4))


class TokenServer(httpserver.Service):
    thread_name = "corral-test-tokenserver"

    def __init__(self, *, users: dict[str, str] | None = None, issuer: str = "corral-test-issuer",
                 service: str = "corral-test-registry", allow_anonymous: bool = False,
                 ttl: int = 300) -> None:
        self.users = dict(users or {})
        self.issuer = issuer
        self.service = service
        self.allow_anonymous = allow_anonymous
        self.ttl = ttl
        self.requests: list[tuple[str | None, list[str]]] = []  # (user, scopes) per token
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.kid = libtrust_key_id(self._key.public_key())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "corral test token issuer")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def write_rootcert(self, path: str) -> str:
        with open(path, "wb") as f:
            f.write(self.cert.public_bytes(serialization.Encoding.PEM))
        return path

    def issue(self, *, user: str | None, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            parts = scope.split(":")
            if len(parts) < 3:
                continue
            type_, name, actions = parts[0], ":".join(parts[1:-1]), parts[-1]
            access.append({"type": type_, "name": name,
                           "actions": [a for a in actions.split(",") if a]})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256", "kid": self.kid}
        claims = {"iss": self.issuer, "sub": user or "", "aud": self.service,
                  "exp": now + self.ttl, "nbf": now - 5, "iat": now,
                  "jti": uuid.uuid4().hex, "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        der = self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return f"{signing_input}.{_b64url(signature)}"

    def _check(self, authorization: str | None) -> tuple[bool, str | None]:
        if not authorization:
            return self.allow_anonymous, None
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "basic":
            return False, None
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False, None
        return self.users.get(user) == password, user

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        ts = self

        class Handler(httpserver.QuietHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                ok, user = ts._check(self.headers.get("Authorization"))
                if url.path != "/token" or not ok:
                    code = 404 if url.path != "/token" else 401
                    body = json.dumps({"details": "access denied"}).encode()
                    self.send_response(code)
                    if code == 401:
                        self.send_header("WWW-Authenticate", 'Basic realm="corral-token"')
                else:
                    scopes = query.get("scope", [])
                    ts.requests.append((user, scopes))
                    token = ts.issue(user=user, scopes=scopes)
                    body = json.dumps({
                        "token": token, "access_token": token, "expires_in": ts.ttl,
                        "issued_at": datetime.datetime.now(datetime.UTC).isoformat(),
                    }).encode()
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler
