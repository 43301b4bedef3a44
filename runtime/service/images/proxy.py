"""Which proxy a registry request goes through: the rules of Go's http.ProxyFromEnvironment
(golang.org/x/net/http/httpproxy), which containerd's pulls follow. Pure: no I/O.

    ProxySettings.from_environment(os.environ)      read once, by the first pull
        HTTP_PROXY  | http_proxy    for http:// requests   (upper case first, first non-empty)
        HTTPS_PROXY | https_proxy   for https:// requests  (no fallback to HTTP_PROXY)
        NO_PROXY    | no_proxy      comma-separated exceptions, case-insensitive
    settings.proxy_for(scheme, host, port) ──► Proxy(host, port, authorization) | None
        localhost, 127.0.0.0/8, ::1           never through a proxy (NO_PROXY or not)
        NO_PROXY  *                           nothing through a proxy
                  10.0.0.0/8, fd00::/8        an IP host inside the CIDR
                  10.0.0.2, ::1               that IP, any port
                  10.0.0.2:5000, [::1]:5000   that IP on that port
                  example.com[:port]          example.com and its subdomains (on that port)
                  .example.com, *.example.com its subdomains only
    A proxy value without a scheme is http://; ``http://user:pass@host:port`` gives
    ``Proxy-Authorization: Basic``. Only http proxies are supported (the request to the
    proxy is plain; https registries are reached through a CONNECT tunnel): another scheme
    is a ``ValueError`` naming the variable, raised by ``proxy_for`` when it is needed.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Proxy:
    """An http proxy; ``str()`` is its URL without credentials (for messages)."""

    host: str
    port: int
    authorization: str | None = field(default=None, repr=False)  # "Basic …"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def _ip(host: str) -> IP | None:
    """HOST as an IP address (IPv4-mapped IPv6 as IPv4, as Go compares them), or None."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _split_host_port(value: str) -> tuple[str, str] | None:
    """Go's net.SplitHostPort: "host:port" or "[v6]:port" -> (host, port); else None."""
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or value[end + 1:end + 2] != ":":
            return None
        return value[1:end], value[end + 2:]
    host, sep, port = value.rpartition(":")
    if not sep or ":" in host:
        return None
    return host, port


def _ascii(host: str) -> str:
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host


@dataclass(frozen=True)
class _IPMatch:
    ip: IP
    port: str

    def match(self, host: str, port: str, ip: IP | None) -> bool:
        return ip is not None and ip == self.ip and self.port in ("", port)


@dataclass(frozen=True)
class _CIDRMatch:
    network: ipaddress.IPv4Network | ipaddress.IPv6Network

    def match(self, host: str, port: str, ip: IP | None) -> bool:
        return ip is not None and ip.version == self.network.version and ip in self.network


@dataclass(frozen=True)
class _DomainMatch:
    suffix: str  # always starts with "."
    exact_too: bool  # "example.com" (not ".example.com"): the host itself matches too
    port: str

    def match(self, host: str, port: str, ip: IP | None) -> bool:
        hit = host.endswith(self.suffix) or (self.exact_too and host == self.suffix[1:])
        return hit and self.port in ("", port)


_Matcher = _IPMatch | _CIDRMatch | _DomainMatch


def parse_no_proxy(value: str) -> tuple[bool, list[_Matcher]]:
    """NO_PROXY -> (everything bypasses: "*", the matchers). Malformed entries are skipped,
    as Go does."""
    matchers: list[_Matcher] = []
    for raw in value.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True, []
        if "/" in entry:
            try:
                matchers.append(_CIDRMatch(ipaddress.ip_network(entry, strict=False)))
            except ValueError:
                pass
            continue
        split = _split_host_port(entry)
        host, port = split if split is not None else (entry, "")
        if not host:
            continue
        ip = _ip(host)
        if ip is not None:
            matchers.append(_IPMatch(ip, port))
            continue
        if host.startswith("*."):
            host = host[1:]
        exact_too = not host.startswith(".")
        suffix = _ascii(host if not exact_too else "." + host)
        matchers.append(_DomainMatch(suffix, exact_too, port))
    return False, matchers


def parse_proxy(value: str, *, variable: str) -> Proxy:
    """A proxy variable's value -> Proxy. ValueError names VARIABLE."""
    url = value.strip()
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        parts = urlsplit("http://" + url)  # "proxy:3128", "10.0.0.1:3128": Go adds http://
    if parts.scheme.lower() != "http":
        raise ValueError(f"{variable}: {parts.scheme}://{parts.hostname or ''}: unsupported"
                         " proxy scheme (http only)")
    try:
        host, port = parts.hostname, parts.port
    except ValueError as e:
        raise ValueError(f"{variable}: {e}") from None
    if not host:  # (the value's credentials are not repeated in the message)
        shown = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
        raise ValueError(f"{variable}: no proxy host in {shown!r}")
    authorization = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    return Proxy(host=host, port=port or 80, authorization=authorization)


def _first(env: Mapping[str, str], *names: str) -> tuple[str, str]:
    for name in names:
        if env.get(name):
            return name, env[name]
    return names[0], ""


@dataclass(frozen=True)
class ProxySettings:
    """The proxy variables as read (name and value); ``proxy_for`` decides per request."""

    http: tuple[str, str] = ("HTTP_PROXY", "")
    https: tuple[str, str] = ("HTTPS_PROXY", "")
    no_proxy: str = ""

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> ProxySettings:
        return cls(http=_first(env, "HTTP_PROXY", "http_proxy"),
                   https=_first(env, "HTTPS_PROXY", "https_proxy"),
                   no_proxy=_first(env, "NO_PROXY", "no_proxy")[1])

    @classmethod
    def of(cls, *, http: str = "", https: str = "", no_proxy: str = "") -> ProxySettings:
        return cls(http=("HTTP_PROXY", http), https=("HTTPS_PROXY", https), no_proxy=no_proxy)

    def bypasses(self, host: str, port: str) -> bool:
        """NO_PROXY (or the loopback rule) says HOST:PORT is reached directly."""
        host = _ascii(host.strip().strip("[]").lower())
        if host == "localhost":
            return True
        ip = _ip(host)
        if ip is not None and ip.is_loopback:
            return True
        everything, matchers = parse_no_proxy(self.no_proxy)
        return everything or any(m.match(host, port, ip) for m in matchers)

    def proxy_for(self, scheme: str, host: str, port: int | None = None) -> Proxy | None:
        """The proxy for a request to SCHEME://HOST:PORT, or None to go direct."""
        variable, value = {"http": self.http, "https": self.https}.get(scheme, ("", ""))
        if not value:
            return None
        if self.bypasses(host, str(port or DEFAULT_PORTS[scheme])):
            return None
        return parse_proxy(value, variable=variable)
