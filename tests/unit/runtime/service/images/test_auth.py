"""WWW-Authenticate parsing and the Authorizer's caching (token endpoint behind a
MockTransport)."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import pytest

from runtime.service.images import Authorizer, Unauthorized, parse_challenges


@pytest.mark.parametrize(
    ("header", "want"),
    [
        pytest.param('Basic realm="corral"', [("basic", {"realm": "corral"})], id="basic"),
        pytest.param(
            'Bearer realm="http://127.0.0.1:1/token",service="reg",'
            'scope="repository:a/b:pull,push"',
            [("bearer", {"realm": "http://127.0.0.1:1/token", "service": "reg",
                         "scope": "repository:a/b:pull,push"})],
            id="bearer-with-comma-in-quotes"),
        pytest.param('bearer realm=http://x/t, service=reg',
                     [("bearer", {"realm": "http://x/t", "service": "reg"})], id="unquoted"),
        pytest.param('Bearer realm="a\\"b",error="insufficient_scope"',
                     [("bearer", {"realm": 'a"b', "error": "insufficient_scope"})],
                     id="escaped-quote"),
        pytest.param('Basic realm="x", Bearer realm="y",service="s"',
                     [("basic", {"realm": "x"}), ("bearer", {"realm": "y", "service": "s"})],
                     id="two-challenges"),
        pytest.param("", [], id="empty"),
    ],
)
def test_parse_challenges(header: str, want: list[tuple[str, dict[str, str]]]) -> None:
    got = [(c.scheme, dict(c.params)) for c in parse_challenges(header)]
    assert got == want


class TokenEndpoint:
    def __init__(self, *, status: int = 200, field: str = "token", expires_in: int = 300) -> None:
        self.calls: list[httpx.Request] = []
        self.status, self.field, self.expires_in = status, field, expires_in

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        if self.status != 200:
            return httpx.Response(self.status)
        body = {self.field: f"tok{len(self.calls)}", "expires_in": self.expires_in}
        return httpx.Response(200, content=json.dumps(body).encode())


CHALLENGE = 'Bearer realm="http://127.0.0.1:9/token",service="reg",scope="repository:a:pull"'


def run_answer(auth: Authorizer, endpoint: TokenEndpoint, header: str = CHALLENGE,
               scope: str = "repository:a:pull") -> str:
    async def go() -> str:
        async with httpx.AsyncClient(transport=httpx.MockTransport(endpoint)) as c:
            return await auth.answer(c, host="127.0.0.1:5000", scope=scope, header=header)
    return asyncio.run(go())


@pytest.mark.parametrize("field", [pytest.param("token", id="token"),
                                   pytest.param("access_token", id="access_token")])
def test_bearer_token_fetched_with_credentials_and_cached(field: str) -> None:
    clock = [100.0]
    auth = Authorizer({"127.0.0.1:5000": ("alice", "pw")}, clock=lambda: clock[0])
    endpoint = TokenEndpoint(field=field, expires_in=100)
    assert run_answer(auth, endpoint) == "Bearer tok1"
    req = endpoint.calls[0]
    assert req.url.params["service"] == "reg"
    assert req.url.params["scope"] == "repository:a:pull"
    assert req.headers["authorization"] == "Basic " + base64.b64encode(b"alice:pw").decode()
    assert auth.cached("127.0.0.1:5000", "repository:a:pull") == "Bearer tok1"
    assert auth.cached("127.0.0.1:5000", "repository:other:pull") is None
    clock[0] += 95  # past 90% of the lifetime: expired
    assert auth.cached("127.0.0.1:5000", "repository:a:pull") is None


def test_bearer_anonymous_sends_no_authorization() -> None:
    auth = Authorizer()
    endpoint = TokenEndpoint()
    run_answer(auth, endpoint)
    assert "authorization" not in endpoint.calls[0].headers


def test_bearer_rejected_credentials_name_the_token_server() -> None:
    auth = Authorizer({"127.0.0.1:5000": ("alice", "wrong")})
    with pytest.raises(Unauthorized, match=r"401 Unauthorized: credentials rejected by token"
                                           r" server http://127.0.0.1:9/token"):
        run_answer(auth, TokenEndpoint(status=401))


def test_basic_needs_credentials_and_is_cached_per_host() -> None:
    with pytest.raises(Unauthorized, match=r"127.0.0.1:5000 requires credentials"):
        run_answer(Authorizer(), TokenEndpoint(), header='Basic realm="r"')
    auth = Authorizer({"127.0.0.1:5000": ("u", "p")})
    value = run_answer(auth, TokenEndpoint(), header='Basic realm="r"')
    assert value == "Basic " + base64.b64encode(b"u:p").decode()
    assert auth.cached("127.0.0.1:5000", "repository:any:pull") == value
    auth.forget("127.0.0.1:5000", "repository:any:pull")
    assert auth.cached("127.0.0.1:5000", "repository:any:pull") is None
