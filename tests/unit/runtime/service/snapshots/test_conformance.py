"""One suite every Snapshotter passes (CONVENTIONS 5), without mounting: lifecycle, errors,
labels, walk, usage, persistence. The mounting half is in tests/integration/.../
test_snapshots.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.service.snapshots import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    Kind,
    MetaSnapshotter,
    NotFound,
    layer_target,
)
from tests.unit.runtime.service.snapshots.conftest import MAKERS

S = MetaSnapshotter


def put(s: S, key: str, files: dict[str, bytes], parent: str | None = None) -> str:
    """prepare KEY, write FILES into it, return the directory written."""
    target, _ = layer_target(s.prepare(key, parent))
    for name, data in files.items():
        path = os.path.join(target, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    return target


def chain(s: S, n: int) -> list[str]:
    """Committed layers l0..l{n-1}, each on the one before."""
    names: list[str] = []
    for i in range(n):
        put(s, f"extract-{i}", {f"f{i}": b"x"}, names[-1] if names else None)
        s.commit(f"l{i}", f"extract-{i}")
        names.append(f"l{i}")
    return names


def test_prepare_commit_stat(snapshotter: S) -> None:
    mounts = snapshotter.prepare("active", labels={"a": "1"})
    assert len(mounts) == 1 and mounts[0].type == "bind" and "rw" in mounts[0].options
    info = snapshotter.stat("active")
    assert (info.name, info.kind, info.parent, dict(info.labels)) == (
        "active", Kind.ACTIVE, None, {"a": "1"})
    assert info.created_at > 0 and info.updated_at == info.created_at
    assert snapshotter.mounts("active") == mounts
    snapshotter.commit("layer", "active", labels={"b": "2"})
    with pytest.raises(NotFound, match="snapshot 'active': not found"):
        snapshotter.stat("active")
    info = snapshotter.stat("layer")
    assert (info.kind, dict(info.labels)) == (Kind.COMMITTED, {"b": "2"})


def test_chain_parents_and_walk(snapshotter: S) -> None:
    chain(snapshotter, 3)
    snapshotter.prepare("container", "l2")
    snapshotter.view("look", "l1")
    assert snapshotter.stat("container").parent == "l2"
    assert snapshotter.stat("l2").parent == "l1"
    assert snapshotter.stat("l0").parent is None
    walked = {i.name: (i.kind, i.parent) for i in snapshotter.walk()}
    assert walked == {
        "l0": (Kind.COMMITTED, None), "l1": (Kind.COMMITTED, "l0"),
        "l2": (Kind.COMMITTED, "l1"), "container": (Kind.ACTIVE, "l2"),
        "look": (Kind.VIEW, "l1"),
    }


def test_view_is_read_only_and_cannot_be_committed(snapshotter: S) -> None:
    chain(snapshotter, 1)
    mounts = snapshotter.view("v", "l0")
    assert all("ro" in m.options for m in mounts if m.type == "bind")
    with pytest.raises(InvalidArgument, match="read-only"):
        layer_target(mounts)
    with pytest.raises(FailedPrecondition, match="snapshot 'v': cannot commit a view snapshot"):
        snapshotter.commit("x", "v")
    assert snapshotter.stat("v").kind is Kind.VIEW


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        pytest.param(lambda s: s.prepare("l0"), AlreadyExists,
                     "snapshot 'l0': already exists", id="prepare-existing"),
        pytest.param(lambda s: s.view("a"), AlreadyExists, "snapshot 'a': already exists",
                     id="view-existing"),
        pytest.param(lambda s: s.prepare("b", "missing"), NotFound,
                     "snapshot 'b': parent 'missing' not found", id="missing-parent"),
        pytest.param(lambda s: s.prepare("b", "a"), FailedPrecondition,
                     "snapshot 'b': parent 'a' is active, not committed", id="active-parent"),
        pytest.param(lambda s: s.commit("l0", "a"), AlreadyExists,
                     "snapshot 'l0': already exists", id="commit-onto-existing-name"),
        pytest.param(lambda s: s.commit("x", "l0"), FailedPrecondition,
                     "snapshot 'l0': cannot commit a committed snapshot", id="commit-twice"),
        pytest.param(lambda s: s.commit("x", "missing"), NotFound,
                     "snapshot 'missing': not found", id="commit-missing"),
        pytest.param(lambda s: s.remove("missing"), NotFound, "snapshot 'missing': not found",
                     id="remove-missing"),
        pytest.param(lambda s: s.remove("l0"), FailedPrecondition,
                     "snapshot 'l0': cannot remove, it is the parent of 'a'",
                     id="remove-with-children"),
        pytest.param(lambda s: s.mounts("l0"), FailedPrecondition,
                     "snapshot 'l0': committed snapshots have no mounts", id="mounts-committed"),
        pytest.param(lambda s: s.mounts("missing"), NotFound, "snapshot 'missing'",
                     id="mounts-missing"),
        pytest.param(lambda s: s.usage("missing"), NotFound, "snapshot 'missing'",
                     id="usage-missing"),
        pytest.param(lambda s: s.prepare(""), InvalidArgument, "snapshot key '': must be",
                     id="empty-key"),
        pytest.param(lambda s: s.prepare("k", labels={"x": 1}), InvalidArgument,
                     r"labels\['x'\]: want a string", id="bad-label"),
    ],
)
def test_errors_name_the_key(snapshotter: S, call: object, error: type[Exception],
                             message: str) -> None:
    chain(snapshotter, 1)
    snapshotter.prepare("a", "l0")
    before = sorted((i.name, i.kind.value) for i in snapshotter.walk())
    with pytest.raises(error, match=message):
        call(snapshotter)  # type: ignore[operator]
    assert sorted((i.name, i.kind.value) for i in snapshotter.walk()) == before
    assert not [n for n in os.listdir(os.path.join(snapshotter.root, "snapshots"))
                if n.startswith(("new-", "rm-"))]


def test_remove_children_then_parent(snapshotter: S) -> None:
    chain(snapshotter, 2)
    snapshotter.view("v", "l1")
    snapshotter.remove("v")
    snapshotter.remove("l1")
    snapshotter.remove("l0")
    assert list(snapshotter.walk()) == []
    assert os.listdir(os.path.join(snapshotter.root, "snapshots")) == []


def test_labels_update_and_delete(snapshotter: S) -> None:
    snapshotter.prepare("a", labels={"keep": "1", "drop": "2"})
    info = snapshotter.update("a", {"drop": None, "new": "3"})
    assert dict(info.labels) == {"keep": "1", "new": "3"}
    assert dict(snapshotter.stat("a").labels) == {"keep": "1", "new": "3"}
    assert info.updated_at >= info.created_at
    with pytest.raises(NotFound, match="snapshot 'nope'"):
        snapshotter.update("nope", {"a": "b"})


def test_usage_counts_blocks_and_inodes_once(snapshotter: S) -> None:
    target = put(snapshotter, "a", {"big": b"x" * (1 << 20)})
    os.link(os.path.join(target, "big"), os.path.join(target, "big2"))
    os.mkdir(os.path.join(target, "d"))
    usage = snapshotter.usage("a")
    assert usage.inodes == 3  # the root, big (linked twice), d
    assert (1 << 20) <= usage.size < (1 << 20) + 64 * 1024


def test_child_usage_is_its_own_layer_for_overlay_whole_tree_for_native(
        snapshotter: S, kind: str) -> None:
    put(snapshotter, "e", {"big": b"x" * (1 << 20)})
    snapshotter.commit("base", "e")
    snapshotter.prepare("child", "base")
    size = snapshotter.usage("child").size
    assert (size >= 1 << 20) == (kind == "native")


def test_state_survives_reopening(snapshotter: S, kind: str) -> None:
    chain(snapshotter, 2)
    snapshotter.prepare("c", "l1", labels={"x": "y"})
    mounts = snapshotter.mounts("c")
    snapshotter.close()
    again = MAKERS[kind](snapshotter.root)
    try:
        assert again.stat("c").labels == {"x": "y"}
        assert again.mounts("c") == mounts
        assert [i.name for i in again.walk()] == ["c", "l0", "l1"]
    finally:
        again.close()


def test_another_process_sees_and_changes_the_same_state(snapshotter: S, kind: str) -> None:
    chain(snapshotter, 1)
    code = (
        "import sys\n"
        f"from runtime.service.snapshots import {type(snapshotter).__name__} as S\n"
        "s = S(sys.argv[1])\n"
        "s.prepare('from-child', 'l0')\n"
        "print(s.stat('l0').kind.value)\n"
        "s.close()\n"
    )
    out = subprocess.run([sys.executable, "-c", code, snapshotter.root], check=True,
                         capture_output=True, text=True, cwd=Path(__file__).parents[5])
    assert out.stdout.strip() == "committed"
    assert snapshotter.stat("from-child").parent == "l0"
    with pytest.raises(FailedPrecondition, match="parent of 'from-child'"):
        snapshotter.remove("l0")
