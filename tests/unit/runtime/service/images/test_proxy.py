"""The proxy decision (proxy.py) against Go's httpproxy rules, table by table: which
variable is read (case, scheme), each NO_PROXY form, the loopback bypass, and proxy URLs
(default scheme and port, credentials, unsupported schemes)."""

from __future__ import annotations

import base64

import pytest

from runtime.service.images.proxy import Proxy, ProxySettings, parse_proxy

P = "http://127.0.0.1:3128"


@pytest.mark.parametrize(
    ("env", "scheme", "want"),
    [pytest.param({"HTTP_PROXY": P}, "http", P, id="upper-http"),
     pytest.param({"http_proxy": P}, "http", P, id="lower-http"),
     pytest.param({"HTTPS_PROXY": P}, "https", P, id="upper-https"),
     pytest.param({"https_proxy": P}, "https", P, id="lower-https"),
     pytest.param({"HTTP_PROXY": P, "http_proxy": "http://10.9.9.9:1"}, "http", P,
                  id="upper-wins-over-lower"),
     pytest.param({"HTTP_PROXY": "", "http_proxy": P}, "http", P, id="empty-upper-skipped"),
     pytest.param({"HTTP_PROXY": P}, "https", None, id="https-does-not-use-http-proxy"),
     pytest.param({"HTTPS_PROXY": P}, "http", None, id="http-does-not-use-https-proxy"),
     pytest.param({}, "https", None, id="no-variables"),
     pytest.param({"ALL_PROXY": P}, "https", None, id="all-proxy-is-not-read")],
)
def test_variables(env: dict[str, str], scheme: str, want: str | None) -> None:
    got = ProxySettings.from_environment(env).proxy_for(scheme, "registry.example", 5000)
    assert (str(got) if got else None) == want


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "bypass"),
    [pytest.param("", "registry.example", 443, False, id="empty"),
     pytest.param("*", "registry.example", 443, True, id="star"),
     pytest.param("a.test, *", "registry.example", 443, True, id="star-in-list"),
     # host names
     pytest.param("registry.example", "registry.example", 443, True, id="domain-itself"),
     pytest.param("example", "registry.example", 443, True, id="domain-suffix"),
     pytest.param("gistry.example", "registry.example", 443, False, id="not-a-label-suffix"),
     pytest.param(".example", "registry.example", 443, True, id="dot-domain-subdomain"),
     pytest.param(".registry.example", "registry.example", 443, False,
                  id="dot-domain-not-itself"),
     pytest.param("*.example", "registry.example", 443, True, id="star-dot-domain"),
     pytest.param("*.registry.example", "registry.example", 443, False,
                  id="star-dot-domain-not-itself"),
     pytest.param("REGISTRY.Example", "registry.EXAMPLE", 443, True, id="case-insensitive"),
     pytest.param(" other.test ,registry.example ", "registry.example", 443, True,
                  id="spaces-and-list"),
     pytest.param("registry.example:5000", "registry.example", 5000, True,
                  id="domain-port-same"),
     pytest.param("registry.example:5000", "registry.example", 443, False,
                  id="domain-port-other"),
     pytest.param("registry.example:443", "registry.example", None, True,
                  id="default-port-of-scheme"),
     # IPs
     pytest.param("10.0.0.2", "10.0.0.2", 5000, True, id="ip"),
     pytest.param("10.0.0.2", "10.0.0.3", 5000, False, id="other-ip"),
     pytest.param("10.0.0.2:5000", "10.0.0.2", 5000, True, id="ip-port-same"),
     pytest.param("10.0.0.2:5000", "10.0.0.2", 5001, False, id="ip-port-other"),
     pytest.param("10.0.0.0/8", "10.1.2.3", 5000, True, id="cidr-inside"),
     pytest.param("10.0.0.0/8", "11.1.2.3", 5000, False, id="cidr-outside"),
     pytest.param("10.0.0.0/8", "registry.example", 5000, False, id="cidr-not-a-name"),
     pytest.param("fd00::/8", "fd00::2", 5000, True, id="cidr-v6"),
     pytest.param("fd00::2", "[fd00::2]", 5000, True, id="ipv6-bracketed-host"),
     pytest.param("[fd00::2]:5000", "fd00::2", 5000, True, id="ipv6-port-same"),
     pytest.param("[fd00::2]:5000", "fd00::2", 5001, False, id="ipv6-port-other"),
     pytest.param("::ffff:10.0.0.2", "10.0.0.2", 5000, True, id="ipv4-mapped-is-ipv4"),
     pytest.param(":5000, garbage/99, ,", "registry.example", 5000, False,
                  id="malformed-entries-skipped"),
     # never through a proxy, whatever NO_PROXY says
     pytest.param("", "localhost", 5000, True, id="localhost"),
     pytest.param("", "LOCALHOST", 5000, True, id="localhost-any-case"),
     pytest.param("", "127.0.0.1", 5000, True, id="loopback-v4"),
     pytest.param("", "127.8.9.10", 5000, True, id="loopback-v4-whole-net"),
     pytest.param("", "::1", 5000, True, id="loopback-v6"),
     pytest.param("", "[::1]", 5000, True, id="loopback-v6-bracketed"),
     pytest.param("", "registry.localhost", 5000, False, id="only-localhost-itself")],
)
def test_no_proxy(no_proxy: str, host: str, port: int | None, bypass: bool) -> None:
    settings = ProxySettings.of(https=P, no_proxy=no_proxy)
    got = settings.proxy_for("https", host, port)
    assert (got is None) is bypass


@pytest.mark.parametrize("name", [pytest.param("NO_PROXY", id="upper"),
                                  pytest.param("no_proxy", id="lower")])
def test_no_proxy_variable_case(name: str) -> None:
    settings = ProxySettings.from_environment({"HTTPS_PROXY": P, name: "registry.example"})
    assert settings.proxy_for("https", "registry.example", 443) is None
    assert settings.proxy_for("https", "other.example", 443) is not None


@pytest.mark.parametrize(
    ("value", "want", "auth"),
    [pytest.param("http://proxy.test:3128", "http://proxy.test:3128", None, id="url"),
     pytest.param("proxy.test:3128", "http://proxy.test:3128", None, id="no-scheme"),
     pytest.param("10.1.1.1:3128", "http://10.1.1.1:3128", None, id="ip-no-scheme"),
     pytest.param("http://proxy.test", "http://proxy.test:80", None, id="default-port"),
     pytest.param("HTTP://proxy.test:1", "http://proxy.test:1", None, id="scheme-case"),
     pytest.param("http://[fd00::1]:3128", "http://[fd00::1]:3128", None, id="ipv6"),
     pytest.param("http://alice:s3cret@proxy.test:3128", "http://proxy.test:3128",
                  "alice:s3cret", id="credentials-not-shown"),
     pytest.param("http://al%40ce:p%3Ass@proxy.test:3128", "http://proxy.test:3128",
                  "al@ce:p:ss", id="credentials-unescaped"),
     pytest.param("http://alice@proxy.test:3128", "http://proxy.test:3128", "alice:",
                  id="user-only")],
)
def test_proxy_urls(value: str, want: str, auth: str | None) -> None:
    proxy = parse_proxy(value, variable="HTTPS_PROXY")
    assert str(proxy) == want
    assert auth is None or "s3cret" not in repr(proxy)
    if auth is None:
        assert proxy.authorization is None
    else:
        assert proxy.authorization == "Basic " + base64.b64encode(auth.encode()).decode()


@pytest.mark.parametrize(
    ("value", "message"),
    [pytest.param("socks5://proxy.test:1080", "HTTPS_PROXY: socks5://proxy.test: unsupported",
                  id="socks5"),
     pytest.param("https://proxy.test:443", "HTTPS_PROXY: https://proxy.test: unsupported",
                  id="https-proxy"),
     pytest.param("http://proxy.test:99999", "HTTPS_PROXY: Port out of range", id="bad-port"),
     pytest.param("http://:3128", "HTTPS_PROXY: no proxy host", id="no-host"),
     pytest.param("http://alice:s3cret@:3128",
                  "HTTPS_PROXY: no proxy host in 'http://:3128'$", id="no-host-no-secret")],
)
def test_unusable_proxy_names_the_variable(value: str, message: str) -> None:
    settings = ProxySettings.from_environment({"HTTPS_PROXY": value})
    with pytest.raises(ValueError, match=message):
        settings.proxy_for("https", "registry.example", 443)
    assert settings.proxy_for("https", "localhost", 443) is None  # bypassed: never parsed


def test_proxy_str_has_no_credentials() -> None:
    assert str(Proxy(host="p.test", port=1, authorization="Basic eA==")) == "http://p.test:1"
