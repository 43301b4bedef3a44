from __future__ import annotations

import base64

import pytest

from controlplane.storage import InvalidArgument, pagination

PREFIX = "/registry/pods/ns1/"


def test_token_round_trip_starts_just_after_the_last_key() -> None:
    token = pagination.encode(prefix=PREFIX, last_key=PREFIX + "b", revision=42)
    start, rev = pagination.decode(token, prefix=PREFIX)
    assert (start, rev) == (PREFIX + "b\0", 42)
    assert PREFIX + "b" < start < PREFIX + "ba"


def test_token_stays_inside_the_listed_prefix() -> None:
    token = pagination.encode(prefix=PREFIX, last_key=PREFIX + "b", revision=42)
    start, _ = pagination.decode(token, prefix="/registry/secrets/ns1/")
    assert start.startswith("/registry/secrets/ns1/")


def b64(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode()


@pytest.mark.parametrize("token", [
    pytest.param("%%%", id="not-base64"),
    pytest.param(b64("not json"), id="not-json"),
    pytest.param(b64("[1]"), id="not-an-object"),
    pytest.param(b64('{"v":2,"rv":5,"start":"a"}'), id="other-version"),
    pytest.param(b64('{"v":1,"rv":0,"start":"a"}'), id="zero-revision"),
    pytest.param(b64('{"v":1,"rv":true,"start":"a"}'), id="bool-revision"),
    pytest.param(b64('{"v":1,"rv":5,"start":3}'), id="start-not-string"),
])
def test_bad_tokens_are_invalid_argument(token: str) -> None:
    with pytest.raises(InvalidArgument, match="continue token"):
        pagination.decode(token, prefix=PREFIX)
