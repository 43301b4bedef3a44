import hashlib

import pytest

from runtime.service.content import Digest, InvalidDigest

HEX64 = "a" * 64


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("sha256:" + HEX64, id="sha256"),
        pytest.param("sha512:" + "0123456789abcdef" * 8, id="sha512"),
    ],
)
def test_valid(value: str) -> None:
    d = Digest(value)
    assert d == value
    assert f"{d.algorithm}:{d.hex}" == value


@pytest.mark.parametrize(
    ("value", "why"),
    [
        pytest.param("sha256:" + "A" * 64, "lowercase hex", id="uppercase"),
        pytest.param("sha256:" + "a" * 63, "64 lowercase", id="short"),
        pytest.param("sha256:" + "a" * 65, "64 lowercase", id="long"),
        pytest.param("sha256:" + "g" * 64, "hex", id="not-hex"),
        pytest.param("sha512:" + HEX64, "128 lowercase", id="sha512-short"),
        pytest.param("md5:" + "a" * 32, "unsupported algorithm", id="md5"),
        pytest.param(HEX64, "missing", id="no-prefix"),
        pytest.param("", "missing", id="empty"),
        pytest.param("sha256:" + HEX64 + "\n", "64 lowercase", id="newline"),
    ],
)
def test_invalid_names_value(value: str, why: str) -> None:
    with pytest.raises(InvalidDigest, match=why) as e:
        Digest(value)
    assert repr(value) in str(e.value)


def test_not_a_string() -> None:
    with pytest.raises(InvalidDigest, match="must be a string"):
        Digest(b"sha256:" + HEX64.encode())


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_from_bytes(algorithm: str) -> None:
    want = f"{algorithm}:{hashlib.new(algorithm, b'hi').hexdigest()}"
    assert Digest.from_bytes(b"hi", algorithm) == want
