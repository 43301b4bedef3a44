"""ImageStore: records per namespace, one transaction per operation, errors naming the image."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.service.content import Digest
from runtime.service.images.store import (
    Image,
    ImageAlreadyExists,
    ImageNotFound,
    ImageStore,
    InvalidImage,
    Target,
)

D1 = Digest("sha256:" + "1" * 64)
D2 = Digest("sha256:" + "2" * 64)
T1 = Target("application/vnd.oci.image.manifest.v1+json", D1, 100)
T2 = Target("application/vnd.oci.image.index.v1+json", D2, 200)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ImageStore]:
    now = iter(range(1000, 2000))
    s = ImageStore(str(tmp_path / "images.db"), clock=lambda: float(next(now)))
    yield s
    s.close()


def test_create_get_and_timestamps(store: ImageStore) -> None:
    made = store.create(Image("default", "r.io/a:1", T1, {"k": "v"}))
    got = store.get("default", "r.io/a:1")
    assert got == made
    assert got.target == T1 and got.labels == {"k": "v"}
    assert got.created_at == got.updated_at == 1000.0


def test_create_twice_is_already_exists(store: ImageStore) -> None:
    store.create(Image("default", "r.io/a:1", T1))
    with pytest.raises(ImageAlreadyExists, match=r"image default/r.io/a:1: already exists"):
        store.create(Image("default", "r.io/a:1", T2))
    assert store.get("default", "r.io/a:1").target == T1


def test_namespaces_are_isolated(store: ImageStore) -> None:
    store.create(Image("team-a", "r.io/a:1", T1))
    store.create(Image("team-b", "r.io/a:1", T2))
    assert store.get("team-a", "r.io/a:1").target == T1
    assert store.get("team-b", "r.io/a:1").target == T2
    assert [i.name for i in store.list("team-c")] == []
    store.delete("team-a", "r.io/a:1")
    assert store.get("team-b", "r.io/a:1").target == T2
    with pytest.raises(ImageNotFound, match=r"image team-a/r.io/a:1: not found"):
        store.get("team-a", "r.io/a:1")
    assert store.namespaces() == ["team-b"]
    assert store.targets() == {D2}


@pytest.mark.parametrize(("prefix", "labels", "want"), [
    pytest.param("", None, ["r.io/a:1", "r.io/a:2", "r.io/b:1"], id="all"),
    pytest.param("r.io/a", None, ["r.io/a:1", "r.io/a:2"], id="prefix"),
    pytest.param("", {"tier": "web"}, ["r.io/a:1", "r.io/b:1"], id="label-value"),
    pytest.param("", {"tier": None}, ["r.io/a:1", "r.io/a:2", "r.io/b:1"], id="label-any"),
    pytest.param("r.io/a", {"tier": "web"}, ["r.io/a:1"], id="prefix-and-label"),
    pytest.param("%", None, [], id="like-wildcard-is-literal"),
])
def test_list_filters(store: ImageStore, prefix: str, labels: dict[str, str | None] | None,
                      want: list[str]) -> None:
    store.create(Image("default", "r.io/b:1", T1, {"tier": "web"}))
    store.create(Image("default", "r.io/a:2", T1, {"tier": "db"}))
    store.create(Image("default", "r.io/a:1", T2, {"tier": "web"}))
    store.create(Image("other", "r.io/a:3", T2, {"tier": "web"}))
    assert [i.name for i in store.list("default", prefix=prefix, labels=labels)] == want


def test_update_retargets_and_merges_labels(store: ImageStore) -> None:
    store.create(Image("default", "r.io/a:1", T1, {"keep": "1", "drop": "2"}))
    new = store.update("default", "r.io/a:1", target=T2, labels={"drop": None, "add": "3"})
    assert new.target == T2
    assert new.labels == {"keep": "1", "add": "3"}
    assert new.created_at == 1000.0 and new.updated_at > new.created_at
    assert store.get("default", "r.io/a:1") == new


def test_put_is_all_or_nothing(store: ImageStore) -> None:
    store.create(Image("default", "r.io/a:1", T1))
    with pytest.raises(InvalidImage, match=r"target\.digest"):
        store.put([Image("default", "r.io/a:1", T2),
                   Image("default", "r.io/b:1", Target("x", "sha256:nothex", 1))])  # type: ignore[arg-type]
    assert store.get("default", "r.io/a:1").target == T1
    assert [i.name for i in store.list("default")] == ["r.io/a:1"]
    store.put([Image("default", "r.io/a:1", T2), Image("default", "r.io/b:1", T1)])
    assert store.get("default", "r.io/a:1").target == T2
    assert store.get("default", "r.io/a:1").created_at == 1000.0


@pytest.mark.parametrize(("image", "message"), [
    pytest.param(Image("bad ns", "r.io/a:1", T1), "namespace 'bad ns'", id="namespace"),
    pytest.param(Image("default", "", T1), "name: must be a non-empty", id="empty-name"),
    pytest.param(Image("default", "r.io/a:1", Target("", D1, 1)), "target.media_type",
                 id="media-type"),
    pytest.param(Image("default", "r.io/a:1", Target("m", D1, -1)), "target.size: must be >= 0",
                 id="size"),
    pytest.param(Image("default", "r.io/a:1", T1, {"": "v"}), "labels", id="label"),
])
def test_invalid_images_are_refused(store: ImageStore, image: Image, message: str) -> None:
    with pytest.raises(InvalidImage, match=message):
        store.create(image)
    assert store.namespaces() == []


def test_missing_images(store: ImageStore) -> None:
    with pytest.raises(ImageNotFound, match=r"image default/r.io/x:1: not found"):
        store.update("default", "r.io/x:1", labels={"a": "b"})
    with pytest.raises(ImageNotFound, match=r"image default/r.io/x:1: not found"):
        store.delete("default", "r.io/x:1")


def test_records_survive_reopening(tmp_path: Path) -> None:
    path = str(tmp_path / "images.db")
    s = ImageStore(path)
    s.create(Image("default", "r.io/a:1", T1, {"k": "v"}))
    s.close()
    s = ImageStore(path)
    try:
        got = s.get("default", "r.io/a:1")
        assert (got.target, got.labels) == (T1, {"k": "v"})
    finally:
        s.close()
