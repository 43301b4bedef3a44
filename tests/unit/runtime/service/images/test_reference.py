"""Reference parsing: host[:port]/path/name[:tag][@digest], no built-in registry."""

from __future__ import annotations

import pytest

from runtime.service.images import InvalidReference, parse_reference

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("ref", "registry", "repository", "tag", "digest"),
    [
        pytest.param("127.0.0.1:5000/busybox:1", "127.0.0.1:5000", "busybox", "1", None,
                     id="ip-port-tag"),
        pytest.param("localhost/busybox", "localhost", "busybox", "latest", None,
                     id="localhost-default-tag"),
        pytest.param("reg.example.test/a/b/c:v1.2-rc_3", "reg.example.test", "a/b/c",
                     "v1.2-rc_3", None, id="nested-path"),
        pytest.param(f"127.0.0.1:5000/busybox@{D}", "127.0.0.1:5000", "busybox", None, D,
                     id="digest-only"),
        pytest.param(f"127.0.0.1:5000/busybox:1@{D}", "127.0.0.1:5000", "busybox", "1", D,
                     id="tag-and-digest"),
        pytest.param("[::1]:5000/x/y:2", "[::1]:5000", "x/y", "2", None, id="ipv6"),
        pytest.param("reg.test:443/my-app__x.y:3", "reg.test:443", "my-app__x.y", "3", None,
                     id="separators"),
    ],
)
def test_parses(ref: str, registry: str, repository: str, tag: str | None,
                digest: str | None) -> None:
    r = parse_reference(ref)
    assert (r.registry, r.repository, r.tag, r.digest) == (registry, repository, tag, digest)
    assert r.object == (digest or tag)
    if tag and not digest and ref.endswith(f":{tag}"):
        assert str(r) == ref


def test_default_registry_is_only_used_when_given() -> None:
    with pytest.raises(InvalidReference, match=r"'busybox:1': no registry host"):
        parse_reference("busybox:1")
    r = parse_reference("library/busybox:1", default_registry="127.0.0.1:5000")
    assert (r.registry, r.repository, r.tag) == ("127.0.0.1:5000", "library/busybox", "1")
    assert r.name == "127.0.0.1:5000/library/busybox"


def test_host_part_is_host_without_port() -> None:
    assert parse_reference("127.0.0.1:5000/a").host == "127.0.0.1"
    assert parse_reference("[::1]:5000/a").host == "[::1]"
    assert parse_reference("reg.test/a").host == "reg.test"


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        pytest.param("", "must be a non-empty string", id="empty"),
        pytest.param("127.0.0.1:5000/BusyBox:1", "path component 'BusyBox'", id="uppercase"),
        pytest.param("127.0.0.1:5000/busybox:-x", "tag '-x'", id="bad-tag"),
        pytest.param("127.0.0.1:5000/busybox@sha256:abc", "digest:", id="short-digest"),
        pytest.param("127.0.0.1:5000/busybox@md5:" + "a" * 32, "digest:", id="bad-algorithm"),
        pytest.param("127.0.0.1:5000/", "repository name is empty", id="no-name"),
        pytest.param("127.0.0.1:5000/a//b", "path component ''", id="empty-component"),
        pytest.param("127.0.0.1:5000/a_-b", "path component 'a_-b'", id="bad-separator"),
        pytest.param("bad_host.test:5000/a", "registry host 'bad_host.test:5000'", id="bad-host"),
    ],
)
def test_rejects_naming_the_reference(ref: str, message: str) -> None:
    with pytest.raises(InvalidReference) as e:
        parse_reference(ref)
    assert f"image reference {ref!r}" in str(e.value)
    assert message in str(e.value)
