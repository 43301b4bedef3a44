"""The kind state machine, Mount command lines, layer targets, and overlay's mount shapes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtime.service.snapshots import (
    TRANSITIONS,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    Kind,
    Mount,
    NotFound,
    Op,
    OverlaySnapshotter,
    check_transition,
    layer_target,
)

ALL = [(k, op) for k in [None, *Kind] for op in Op]


@pytest.mark.parametrize(("current", "op"), [
    pytest.param(k, op, id=f"{k.value if k else 'none'}-{op.value}") for k, op in ALL])
def test_every_cell_of_the_transition_table(current: Kind | None, op: Op) -> None:
    if (current, op) in TRANSITIONS:
        assert check_transition("k", current, op) is TRANSITIONS[(current, op)]
        return
    want = (NotFound if current is None
            else AlreadyExists if op in (Op.PREPARE, Op.VIEW) else FailedPrecondition)
    with pytest.raises(want, match="snapshot 'k'") as err:
        check_transition("k", current, op)
    assert err.value.key == "k"


def test_only_active_snapshots_commit() -> None:
    assert [k for k in Kind if (k, Op.COMMIT) in TRANSITIONS] == [Kind.ACTIVE]


@pytest.mark.parametrize(
    ("mount", "want"),
    [
        pytest.param(Mount("bind", "/s", ("rbind", "ro")), ["mount", "-o", "rbind,ro", "/s", "/t"],
                     id="bind-ro"),
        pytest.param(Mount("overlay", "overlay", ("workdir=/w", "upperdir=/u", "lowerdir=/a:/b")),
                     ["mount", "-t", "overlay", "-o", "workdir=/w,upperdir=/u,lowerdir=/a:/b",
                      "overlay", "/t"], id="overlay"),
    ],
)
def test_mount_command(mount: Mount, want: list[str]) -> None:
    assert mount.command("/t") == want


@pytest.mark.parametrize(
    ("mounts", "want"),
    [
        pytest.param([Mount("bind", "/s", ("rbind", "rw"))], ("/s", "native"), id="bind"),
        pytest.param([Mount("overlay", "overlay", ("upperdir=/u", "lowerdir=/l"))],
                     ("/u", "overlay"), id="overlay"),
        pytest.param([Mount("overlay", "overlay", ("lowerdir=/a:/b",))], None, id="no-upper"),
        pytest.param([], None, id="none"),
    ],
)
def test_layer_target(mounts: list[Mount], want: tuple[str, str] | None) -> None:
    if want is None:
        with pytest.raises(InvalidArgument, match="mounts"):
            layer_target(mounts)
    else:
        assert layer_target(mounts) == want


def test_overlay_mount_shapes(tmp_path: Path) -> None:
    s = OverlaySnapshotter(str(tmp_path))
    try:
        def fs(name: str) -> str:
            return s.fs_dir(s._meta.get(name).id)

        base = s.prepare("e0")
        assert base == [Mount("bind", fs("e0"), ("rbind", "rw"))]
        s.commit("l0", "e0")
        s.prepare("e1", "l0")
        s.commit("l1", "e1")
        assert s.view("v1", "l0") == [Mount("bind", fs("l0"), ("rbind", "ro"))]
        assert s.view("v2", "l1") == [Mount("overlay", "overlay",
                                            (f"lowerdir={fs('l1')}:{fs('l0')}",))]
        c = s.prepare("c", "l1")
        upper = fs("c")
        work = os.path.join(os.path.dirname(upper), "work")
        assert c == [Mount("overlay", "overlay", (f"workdir={work}", f"upperdir={upper}",
                                                  f"lowerdir={fs('l1')}:{fs('l0')}"))]
        assert os.path.isdir(work) and os.listdir(upper) == []
        assert s.view("v0") == [Mount("bind", fs("v0"), ("rbind", "ro"))]
    finally:
        s.close()
