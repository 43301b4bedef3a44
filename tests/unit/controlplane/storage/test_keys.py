from __future__ import annotations

import pytest

from controlplane.storage import InvalidArgument, TooLarge, keys


@pytest.mark.parametrize(("args", "want"), [
    pytest.param(("pods", "web", "default"), "/registry/pods/default/web", id="namespaced"),
    pytest.param(("nodes", "n1", None), "/registry/nodes/n1", id="cluster-scoped"),
])
def test_object_key(args: tuple[str, str, str | None], want: str) -> None:
    resource, name, namespace = args
    assert keys.object_key(resource, name, namespace) == want


@pytest.mark.parametrize("name", [
    pytest.param("", id="empty"), pytest.param("a/b", id="slash"),
])
def test_object_key_rejects_bad_segments(name: str) -> None:
    with pytest.raises(InvalidArgument, match="key segment"):
        keys.object_key("pods", name, "default")


@pytest.mark.parametrize(("namespace", "want"), [
    pytest.param("ns1", "/registry/pods/ns1/", id="namespace"),
    pytest.param(None, "/registry/pods/", id="all"),
])
def test_list_prefix_ends_with_slash(namespace: str | None, want: str) -> None:
    assert keys.list_prefix("pods", namespace) == want
    keys.check_prefix(want)


@pytest.mark.parametrize(("prefix", "want"), [
    pytest.param(b"/registry/pods/", b"/registry/pods0", id="slash-plus-one"),
    pytest.param(b"a\xff", b"b", id="carry"),
    pytest.param(b"\xff\xff", b"\0", id="all-ff"),
])
def test_prefix_range_end(prefix: bytes, want: bytes) -> None:
    assert keys.prefix_range_end(prefix) == want


@pytest.mark.parametrize(("extra", "too_large"), [
    pytest.param(0, False, id="at-limit"), pytest.param(1, True, id="one-over"),
])
def test_check_size_boundary(extra: int, too_large: bool) -> None:
    key = "/registry/configmaps/ns/big"
    value = b"x" * (keys.MAX_OBJECT_BYTES - 2 * len(key) + extra)
    if too_large:
        with pytest.raises(TooLarge, match=f"{key}: object is {keys.MAX_OBJECT_BYTES + 1} bytes"):
            keys.check_size(key, value)
    else:
        keys.check_size(key, value)
