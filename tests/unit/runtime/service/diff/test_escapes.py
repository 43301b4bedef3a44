"""Safe extraction: every way a layer entry could reach outside dest is refused, naming it."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from runtime.service.diff import UnsafeEntry, apply_layer
from tests.unit.runtime.service.diff.layers import dir, file, hardlink, layer, symlink

Entries = list[tuple[tarfile.TarInfo, bytes]]
OUT = "@OUT@"  # replaced by the outside directory's absolute path


def _sub(entries: Entries, outside: str) -> Entries:
    for ti, _ in entries:
        ti.name = ti.name.replace(OUT, outside)
        ti.linkname = ti.linkname.replace(OUT, outside)
    return entries


CASES = [
    pytest.param([file("../x", b"!")], "../x", "'..' component", id="dotdot"),
    pytest.param([file("a/../../x", b"!")], "a/../../x", "'..' component", id="dotdot-inside"),
    pytest.param([file("/etc/x", b"!")], "/etc/x", "is absolute", id="absolute"),
    pytest.param([symlink("d", OUT), file("d/x", b"!")], "d/x", "goes through a symlink",
                 id="symlink-dir-then-file"),
    pytest.param([symlink("d", "../../../../../.."), file("d/x", b"!")], "d/x",
                 "goes through a symlink", id="relative-symlink-dir-then-file"),
    pytest.param([dir("d"), file("d/ok"), symlink("d", OUT), file("d/x", b"!")], "d/x",
                 "goes through a symlink", id="dir-replaced-by-symlink"),
    pytest.param([file("lib/x", b"!")], "lib/x", "goes through a symlink",
                 id="symlink-already-in-dest"),
    pytest.param([hardlink("shadow", "/etc/shadow")], "shadow", "is absolute",
                 id="hardlink-to-etc-shadow"),
    pytest.param([hardlink("shadow", "../../../../etc/shadow")], "shadow", "'..' component",
                 id="hardlink-dotdot"),
    pytest.param([symlink("l", "/etc/shadow"), hardlink("h", "l")], "h",
                 "symlink 'l' pointing outside", id="hardlink-to-absolute-symlink"),
    pytest.param([dir("a"), symlink("a/l", "../../x"), hardlink("h", "a/l")], "h",
                 "symlink 'a/l' pointing outside", id="hardlink-to-escaping-symlink"),
    pytest.param([symlink("d", OUT), hardlink("d/h", "f0")], "d/h", "goes through a symlink",
                 id="hardlink-created-through-symlink"),
    pytest.param([symlink("d", OUT), hardlink("h", "d/secret")], "h", "goes through a symlink",
                 id="hardlink-target-through-symlink"),
    pytest.param([symlink("d", OUT), file("d/.wh.secret")], "d/.wh.secret",
                 "goes through a symlink", id="whiteout-through-symlink"),
    pytest.param([file(".wh...")], ".wh...", "whiteout of '..'", id="whiteout-dotdot"),
    pytest.param([dir("d"), hardlink("h", "d")], "h", "hard link to directory 'd'",
                 id="hardlink-to-directory"),
]


@pytest.mark.parametrize(("entries", "entry", "reason"), CASES)
@pytest.mark.parametrize("fmt", ["native", "overlay"])
def test_escape_is_refused(tmp_path: Path, entries: Entries, entry: str, reason: str,
                           fmt: str) -> None:
    if fmt == "overlay" and os.geteuid() != 0:
        pytest.skip("overlay whiteouts need root")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "f0").write_bytes(b"f0")
    os.symlink(str(outside), dest / "lib")  # a symlink a lower layer left in dest
    before = sorted(os.listdir(outside))
    blob = layer(*_sub(entries, str(outside)))
    with pytest.raises(UnsafeEntry, match=reason) as err:
        apply_layer(io.BytesIO(blob), str(dest), whiteout_format=fmt)  # type: ignore[arg-type]
    assert err.value.entry == entry.replace(OUT, str(outside))
    assert repr(err.value.entry) in str(err.value)
    assert sorted(os.listdir(outside)) == before
    assert (outside / "secret").read_bytes() == b"secret"
    assert not (tmp_path / "x").exists()


def test_symlinks_may_point_anywhere_but_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    apply_layer(io.BytesIO(layer(symlink("abs", str(outside)), symlink("rel", "../../.."),
                                 symlink("abs", "/etc/passwd"), file("rel", b"replaced"))),
                str(dest), whiteout_format="native")
    assert os.readlink(dest / "abs") == "/etc/passwd"
    assert (dest / "rel").read_bytes() == b"replaced" and not (dest / "rel").is_symlink()
    assert os.listdir(outside) == []
