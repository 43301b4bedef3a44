"""Container metadata: create, get, list by namespace and labels, update, delete."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.service.containers import AlreadyExists, Container, ContainerStore, NotFound


@pytest.fixture
def store(tmp_path: Path) -> ContainerStore:
    return ContainerStore(str(tmp_path / "containers.db"))


def test_crud(store: ContainerStore, tmp_path: Path) -> None:
    c = store.create(Container(namespace="a", id="web", image="busybox", labels={"app": "w"},
                               spec={"process": {"args": ["sh"]}}))
    assert c.created_at_ns > 0 and c.created_at_ns == c.updated_at_ns
    assert store.get("a", "web") == c
    u = store.update("a", "web", labels={"app": "x"})
    assert u.labels == {"app": "x"} and u.spec == c.spec and u.updated_at_ns > c.updated_at_ns
    assert ContainerStore(str(tmp_path / "containers.db")).get("a", "web") == u  # persisted
    store.delete("a", "web")
    with pytest.raises(NotFound, match="Container a/web: not found"):
        store.get("a", "web")
    with pytest.raises(NotFound):
        store.delete("a", "web")


def test_namespaces_do_not_see_each_other(store: ContainerStore) -> None:
    store.create(Container(namespace="a", id="x"))
    store.create(Container(namespace="b", id="x", labels={"k": "v"}))
    store.create(Container(namespace="b", id="y"))
    assert [c.id for c in store.list("a")] == ["x"]
    assert [c.id for c in store.list("b")] == ["x", "y"]
    assert [c.id for c in store.list("b", labels={"k": "v"})] == ["x"]
    assert store.list("c") == []


def test_create_twice_is_already_exists(store: ContainerStore) -> None:
    store.create(Container(namespace="a", id="x"))
    with pytest.raises(AlreadyExists, match="Container a/x: already exists"):
        store.create(Container(namespace="a", id="x"))


@pytest.mark.parametrize("ns,cid,field", [
    pytest.param("", "x", "namespace", id="empty-namespace"),
    pytest.param("a", "", "id", id="empty-id"),
    pytest.param("a", "x/y", "id", id="slash-in-id"),
])
def test_invalid_names(store: ContainerStore, ns: str, cid: str, field: str) -> None:
    with pytest.raises(ValueError, match=f": {field}: must be"):
        store.create(Container(namespace=ns, id=cid))


def test_rows_decode_once_per_version(store: ContainerStore, tmp_path: Path) -> None:
    store.create(Container(namespace="a", id="x", spec={"cri": {"name": "c"}}))
    first = store.list("a")[0]
    assert store.list("a")[0] is first and store.get("a", "x") is first  # not decoded again
    u = store.update("a", "x", spec={"cri": {"name": "d"}})
    assert store.get("a", "x") is not first and store.get("a", "x").spec == u.spec
    other = ContainerStore(str(tmp_path / "containers.db"))  # another writer of the file
    other.update("a", "x", labels={"k": "v"})
    assert store.list("a")[0].labels == {"k": "v"}
    store.delete("a", "x")
    store.create(Container(namespace="a", id="x", spec={"cri": {"name": "e"}}))
    assert store.get("a", "x").spec == {"cri": {"name": "e"}}  # a new row, decoded anew
