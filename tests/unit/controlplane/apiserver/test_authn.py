"""Authentication: client certificates, the static token file, bearer headers."""

from __future__ import annotations

import hmac
from pathlib import Path

import pytest

from controlplane.apiserver import authn, pki
from controlplane.apiserver.authn import TokenFile, TokenFileError, Unauthenticated, User

TOKENS = """\
# token,user,uid,"groups"
s3cret-admin,admin,uid-1,"system:masters,ops"

s3cret-alice, alice, uid-2, "corral:view"
  # an indented comment
s3cret-bob,bob,uid-3
"""


@pytest.fixture
def tokens(tmp_path: Path) -> TokenFile:
    path = tmp_path / "tokens.csv"
    path.write_text(TOKENS)
    return TokenFile.load(str(path))


@pytest.fixture(scope="module")
def ca() -> pki.KeyPair:
    return pki.create_ca(common_name="authn-ca")


@pytest.mark.parametrize(("token", "want"), [
    pytest.param("s3cret-admin", User("admin", ("system:masters", "ops"), "uid-1"), id="groups"),
    pytest.param("s3cret-alice", User("alice", ("corral:view",), "uid-2"), id="spaces"),
    pytest.param("s3cret-bob", User("bob", (), "uid-3"), id="no-groups"),
    pytest.param("s3cret-bob ", None, id="trailing-space"),
    pytest.param("s3cret", None, id="prefix"),
    pytest.param("", None, id="empty"),
])
def test_token_file_lookup(tokens: TokenFile, token: str, want: User | None) -> None:
    assert len(tokens) == 3
    assert tokens.lookup(token) == want


@pytest.mark.parametrize(("text", "message"), [
    pytest.param("a,b\n", "line 1: want 3 or 4 columns (token, user name, uid[, groups]), "
                 "found 2", id="too-few"),
    pytest.param("# c\n\na,b,c,d,e\n", "line 3: want 3 or 4 columns", id="too-many"),
    pytest.param("ok,u,1\n,u,2\n", "line 2: token: must not be empty", id="empty-token"),
    pytest.param("ok,,1\n", "line 1: user name: must not be empty", id="empty-user"),
    pytest.param("t,u,1\n\nt,v,2\n", "line 3: token: duplicates the token on line 1",
                 id="duplicate"),
    pytest.param('t,u,1,"a,b\n', "line 1: not valid CSV", id="open-quote"),
])
def test_token_file_errors_name_the_file_and_line(tmp_path: Path, text: str,
                                                  message: str) -> None:
    path = tmp_path / "tokens.csv"
    path.write_text(text)
    with pytest.raises(TokenFileError) as err:
        TokenFile.load(str(path))
    assert str(err.value).startswith(f"token file {path}: ")
    assert message in str(err.value)


def test_token_file_errors_never_echo_a_token(tmp_path: Path) -> None:
    path = tmp_path / "tokens.csv"
    path.write_text("hunter2,u,1\nhunter2,v,2\n")
    with pytest.raises(TokenFileError) as err:
        TokenFile.load(str(path))
    assert "hunter2" not in str(err.value)


def test_a_missing_token_file_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(TokenFileError, match=f"token file {tmp_path}/nope: cannot read"):
        TokenFile.load(str(tmp_path / "nope"))


def test_user_from_certificate_reads_cn_and_organizations(ca: pki.KeyPair) -> None:
    pair = pki.issue(ca, common_name="system:node:n1", organizations=["system:nodes"],
                     client=True)
    assert authn.user_from_certificate(pair.cert_pem) == User(
        "system:node:n1", ("system:nodes", "system:authenticated"))


def test_user_from_certificate_refuses_garbage() -> None:
    with pytest.raises(Unauthenticated, match="not a PEM certificate"):
        authn.user_from_certificate(b"junk")


@pytest.mark.parametrize(("use_cert", "authorization", "want"), [
    pytest.param(True, "Bearer s3cret-admin", User("carol", ("dev", "system:authenticated")),
                 id="certificate-wins-over-token"),
    pytest.param(False, "Bearer s3cret-alice",
                 User("alice", ("corral:view", "system:authenticated"), "uid-2"), id="bearer"),
    pytest.param(False, "bearer   s3cret-bob",
                 User("bob", ("system:authenticated",), "uid-3"), id="scheme-any-case"),
])
def test_authenticate_identifies(ca: pki.KeyPair, tokens: TokenFile, use_cert: bool,
                                 authorization: str, want: User) -> None:
    cert = pki.issue(ca, common_name="carol", organizations=["dev"], client=True).cert_pem
    user = authn.authenticate(cert_pem=cert if use_cert else None,
                              authorization=authorization, tokens=tokens)
    assert user == want


@pytest.mark.parametrize(("authorization", "has_tokens", "message"), [
    pytest.param(None, True, "no client certificate and no bearer token", id="nothing"),
    pytest.param("", True, "no client certificate and no bearer token", id="empty-header"),
    pytest.param("Bearer wrong-token-xyz", True, "invalid bearer token", id="wrong-token"),
    pytest.param("Bearer wrong-token-xyz", False, "invalid bearer token", id="no-token-file"),
    pytest.param("Basic d3Jvbmc6eHl6", True, 'want "Bearer <token>"', id="basic-auth"),
    pytest.param("Bearer", True, 'want "Bearer <token>"', id="no-token"),
    pytest.param("Bearer a b", True, 'want "Bearer <token>"', id="two-tokens"),
])
def test_authenticate_refuses(tokens: TokenFile, authorization: str | None,
                              has_tokens: bool, message: str) -> None:
    with pytest.raises(Unauthenticated) as err:
        authn.authenticate(cert_pem=None, authorization=authorization,
                           tokens=tokens if has_tokens else None)
    assert message in str(err.value)
    assert "xyz" not in str(err.value)  # never echo what the client sent


def test_lookup_compares_every_entry_in_constant_time(
        tokens: TokenFile, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return bool(real(a, b))

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert tokens.lookup("s3cret-admin") is not None  # the first entry
    assert len(calls) == 3  # no early exit on a match...
    calls.clear()
    assert tokens.lookup("x") is None
    assert len(calls) == 3 and {len(a) for a, _ in calls} == {32}  # ...and fixed lengths
