"""nsholder.PinnedNamespaces on the real kernel: new ipc and uts namespaces pinned by bind
mounts (the hostname set inside), a shm tmpfs; unpin releases them, remove deletes the
files; nothing stays mounted."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from runtime.service.cni import netns
from runtime.service.nsholder import PinError, PinnedNamespaces, is_mounted


@pytest.fixture
def holder(tmp_path: object, leak_check: None) -> Iterator[PinnedNamespaces]:
    if os.geteuid() != 0:
        pytest.skip("pinning namespaces needs root")
    h = PinnedNamespaces(os.path.join(str(tmp_path), "pins"))
    yield h
    for sid in os.listdir(h.root) if os.path.isdir(h.root) else []:
        h.remove(sid)


def nsenter(*args: str) -> str:
    return subprocess.run(["nsenter", *args], capture_output=True, text=True, check=True,
                          timeout=10).stdout


def test_pin_unpin_remove(holder: PinnedNamespaces) -> None:
    pinned = holder.pin("s1", hostname="web-0", kinds=("ipc", "uts"))
    paths = dict(pinned.namespaces)
    assert sorted(paths) == ["ipc", "uts"]
    assert all(netns.is_netns(p) for p in paths.values())  # nsfs: a live namespace
    assert holder.alive(pinned)
    assert nsenter(f"--uts={paths['uts']}", "hostname") == "web-0\n"
    assert os.uname().nodename != "web-0"  # the daemon's own is untouched
    own_ipc = os.stat("/proc/self/ns/ipc").st_ino
    assert os.stat(paths["ipc"]).st_ino != own_ipc
    assert os.stat(paths["uts"]).st_ino != os.stat("/proc/self/ns/uts").st_ino
    # the shm is a tmpfs of its own, world-writable with the sticky bit
    assert is_mounted(pinned.shm) and oct(os.stat(pinned.shm).st_mode & 0o7777) == "0o1777"
    holder.unpin("s1")
    assert not holder.alive(pinned) and not is_mounted(pinned.shm)
    assert all(os.path.exists(p) and not netns.is_netns(p) for p in paths.values())
    holder.unpin("s1")  # idempotent
    holder.remove("s1")
    assert not os.path.exists(holder.dir_for("s1"))
    holder.remove("s1")


def test_shm_only(holder: PinnedNamespaces) -> None:
    pinned = holder.pin("s2", hostname="", kinds=())
    assert pinned.namespaces == () and holder.alive(pinned)
    holder.remove("s2")
    assert not is_mounted(pinned.shm)


@pytest.mark.parametrize(("sid", "kw", "message"), [
    pytest.param("s3", {"hostname": "h" * 65}, "hostname: longer than 64", id="long-hostname"),
    pytest.param("s3", {"hostname": "h", "kinds": ("pid",)}, "cannot pin 'pid'",
                 id="unknown-kind"),
    pytest.param("../x", {"hostname": "h"}, "not a sandbox ID", id="bad-id"),
])
def test_bad_pins_leave_nothing(holder: PinnedNamespaces, sid: str, kw: dict[str, object],
                                message: str) -> None:
    with pytest.raises(PinError, match=message):
        holder.pin(sid, **kw)  # type: ignore[arg-type]
    assert not os.path.exists(holder.root) or os.listdir(holder.root) == []
