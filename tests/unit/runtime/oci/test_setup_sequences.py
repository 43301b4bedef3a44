"""Setup logic against RecordingSyscalls: what the runtime asks of the kernel, without root."""

from __future__ import annotations

import pytest

from runtime.oci import capabilities, mounts
from runtime.oci.errors import ConfigError, Unsupported
from runtime.oci.linux import (
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_SLAVE,
    PR_CAP_AMBIENT,
    PR_CAP_AMBIENT_RAISE,
    PR_CAPBSET_DROP,
    RecordingSyscalls,
)


@pytest.mark.parametrize("options,flags,data,propagation", [
    pytest.param(["nosuid", "noexec", "nodev", "ro"], MS_NOSUID | MS_NOEXEC | MS_NODEV
                 | MS_RDONLY, "", [], id="flags"),
    pytest.param(["ro", "rw"], 0, "", [], id="last-wins"),
    pytest.param(["mode=755", "size=65536k", "nosuid"], MS_NOSUID, "mode=755,size=65536k", [],
                 id="data"),
    pytest.param(["rbind", "rprivate"], MS_BIND | MS_REC, "", [MS_PRIVATE | MS_REC],
                 id="rbind-rprivate"),
])
def test_mount_options(options: list[str], flags: int, data: str,
                       propagation: list[int]) -> None:
    m = mounts.MountSpec({"destination": "/x", "type": "tmpfs", "source": "s",
                          "options": options}, "mounts[0]")
    assert m.flags == flags
    assert m.data == data
    assert m.propagation == propagation


@pytest.mark.parametrize("mount,error,field", [
    pytest.param({"destination": "/x", "type": "bind", "options": ["rbind"]}, ConfigError,
                 "mounts[0].source", id="bind-without-source"),
    pytest.param({"destination": "/x"}, ConfigError, "mounts[0].type", id="no-type"),
    pytest.param({"destination": "/x", "type": "tmpfs", "options": ["idmap"]}, Unsupported,
                 "mounts[0].options[0]", id="idmap"),
    pytest.param({"destination": "/x", "type": "tmpfs", "options": ["nosuid", "rro"]},
                 Unsupported, "mounts[0].options[1]", id="recursive-ro"),
])
def test_mount_errors(mount: dict[str, object], error: type[Exception], field: str) -> None:
    with pytest.raises(error) as e:
        mounts.MountSpec(mount, "mounts[0]")
    assert e.value.field == field  # type: ignore[attr-defined]


def test_prepare_root_makes_host_mounts_slave_then_binds_rootfs() -> None:
    rec = RecordingSyscalls()
    mounts.prepare_root("/r", None, sys=rec)
    assert rec.calls == [
        ("mount", None, "/", None, MS_SLAVE | MS_REC, None),
        ("mount", "/r", "/r", "bind", MS_BIND | MS_REC, None),
        ("mount", None, "/r", None, MS_PRIVATE, None),
    ]


def test_pivot_detaches_old_root(tmp_path: object) -> None:
    rec = RecordingSyscalls()
    cwd = __import__("os").getcwd()
    try:
        mounts.pivot(str(tmp_path), sys=rec)
    finally:
        __import__("os").chdir(cwd)
    names = [c[0] for c in rec.calls]
    assert names == ["pivot_root", "mount", "umount2"]
    assert rec.calls[0] == ("pivot_root", ".", ".")


CAPS = {"bounding": ["CAP_KILL", "CAP_CHOWN"], "effective": ["CAP_KILL"],
        "permitted": ["CAP_KILL"], "inheritable": [], "ambient": ["CAP_KILL"]}


def test_drop_bounding_drops_everything_else() -> None:
    rec = RecordingSyscalls()
    capabilities.drop_bounding(CAPS, sys=rec)
    dropped = {c[2] for c in rec.calls if c[:2] == ("prctl", PR_CAPBSET_DROP)}
    last = capabilities.last_cap()
    assert dropped == set(range(last + 1)) - {capabilities.NUMBER["CAP_KILL"],
                                              capabilities.NUMBER["CAP_CHOWN"]}


def test_capset_grants_only_what_is_listed() -> None:
    rec = RecordingSyscalls()
    capabilities.apply(CAPS, sys=rec)
    kill = 1 << capabilities.NUMBER["CAP_KILL"]
    assert rec.calls[0] == ("capset", kill, kill, 0)
    # ambient CAP_KILL is not inheritable, so the kernel would refuse it: not raised
    assert not [c for c in rec.calls if c[:3] == ("prctl", PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE)]


def test_ambient_raised_when_inheritable() -> None:
    rec = RecordingSyscalls()
    capabilities.apply({**CAPS, "inheritable": ["CAP_KILL"]}, sys=rec)
    raised = [c[3] for c in rec.calls if c[:3] == ("prctl", PR_CAP_AMBIENT,
                                                   PR_CAP_AMBIENT_RAISE)]
    assert raised == [capabilities.NUMBER["CAP_KILL"]]
