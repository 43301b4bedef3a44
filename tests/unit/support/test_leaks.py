"""The leak check's decisions (tests/support/leaks.py), on made-up processes, mountinfo and
cgroup trees: what is the test's own, and what is another test's or a cluster's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import leaks
from tests.support.leaks import Mount, Owner, Proc

TAG = "corral-test-0123456789"
OTHER = "corral-test-9876543210"
TMP = "/tmp/pytest-of-root/pytest-7/test_x1"
OWNER = Owner(TAG, TMP)


@pytest.mark.parametrize(("path", "ours"), [
    pytest.param(TMP, True, id="the-tmp-dir"),
    pytest.param(f"{TMP}/bundle/rootfs", True, id="under-tmp"),
    pytest.param(f"{TMP}0/bundle/rootfs", False, id="a-sibling-tmp-with-a-longer-name"),
    pytest.param(f"/tmp/{TAG}-rtd-abc/root/snapshots/1/fs", True, id="runtimed-dir"),
    pytest.param(f"/tmp/{TAG}-rtd-abc/netns/0f3a", True, id="runtimed-netns"),
    pytest.param(f"/run/netns/{TAG}-node-1", True, id="ip-netns-with-tag"),
    pytest.param("/run/corral/netns/0f3a", False, id="default-netns-dir"),
    pytest.param(f"/tmp/{OTHER}-rtd-abc/root/snapshots/1/fs", False, id="another-tag"),
    pytest.param("/tmp/corral-local/run/rootfs/x", False, id="a-cluster-with-corral-in-path"),
])
def test_owns_path(path: str, ours: bool) -> None:
    assert OWNER.owns_path(path) is ours


def proc(pid: int = 50, *, ppid: int = 1, start: int = 100, zombie: bool = False,
         argv: bytes = b"sleep\x00600\x00", environ: bytes = b"PATH=/bin\x00",
         cgroup: bytes = b"4:memory:/\n") -> Proc:
    return Proc(pid, ppid, start, zombie, argv, environ, cgroup)


ENV = leaks.TAG_ENV.encode()


@pytest.mark.parametrize(("p", "descendants", "before", "ours"), [
    pytest.param(proc(argv=f"holder\0--log-path\0/tmp/{TAG}-rtd/x.log\0".encode()),
                 set(), set(), True, id="tag-in-argv"),
    pytest.param(proc(environ=b"A=1\0" + ENV + b"=" + TAG.encode() + b"\0"),
                 set(), set(), True, id="tag-in-environ"),
    pytest.param(proc(cgroup=f"4:memory:/{TAG}/default/c1\n".encode()),
                 set(), set(), True, id="tag-in-cgroup"),
    pytest.param(proc(), {50}, set(), True, id="new-descendant-of-pytest"),
    pytest.param(proc(), {50}, {(50, 100)}, False, id="descendant-from-before-the-test"),
    pytest.param(proc(), {50}, {(50, 99)}, True, id="pid-reused-since-the-start"),
    pytest.param(proc(), set(), set(), False, id="orphan-without-tag"),
    pytest.param(proc(zombie=True, argv=b"", environ=b"", cgroup=b""), {50}, set(), False,
                 id="zombie"),
    pytest.param(proc(environ=ENV + b"=" + OTHER.encode() + b"\0"), set(), set(), False,
                 id="another-tests-environ"),
    pytest.param(proc(environ=ENV + b"=" + TAG.encode() + b"x\0"), set(), set(), False,
                 id="environ-value-only-starts-with-tag"),
    pytest.param(proc(argv=f"sleep\0{OTHER}\0".encode(),
                      cgroup=f"4:memory:/{OTHER}\n".encode()), set(), set(), False,
                 id="another-tests-argv-and-cgroup"),
])
def test_owns_process(p: Proc, descendants: set[int], before: set[tuple[int, int]],
                      ours: bool) -> None:
    assert OWNER.owns_process(p, descendants=descendants, before=before) is ours


def test_mounts_split_netns_and_deepest_first() -> None:
    mounts = [Mount(f"{TMP}/a", "overlay"), Mount(f"{TMP}/a/b", "tmpfs"),
              Mount(f"/tmp/{TAG}-rtd-1/netns/s1", "nsfs"), Mount("/run/corral/netns/s2", "nsfs"),
              Mount("/tmp/corral-elsewhere/a", "overlay"), Mount("/", "overlay")]
    plain, ns = OWNER.mounts(mounts)
    assert plain == [f"{TMP}/a/b", f"{TMP}/a"]
    assert ns == [f"/tmp/{TAG}-rtd-1/netns/s1"]


def test_ip_netns_by_tag() -> None:
    assert OWNER.ip_netns([f"{TAG}-node-1", f"{OTHER}-node-1", "corral-local-1"]) == [
        f"/run/netns/{TAG}-node-1"]


MOUNTINFO = (
    "22 1 0:21 / / rw,relatime - overlay overlay rw\n"
    "95 22 0:50 / /tmp/with\\040space/m rw - tmpfs tmpfs rw\n"
    "96 22 0:4 net:[4026532] /run/corral/netns/x rw shared:5 master:1 - nsfs nsfs rw\n"
    "garbage\n")


def test_parse_mountinfo() -> None:
    assert leaks.parse_mountinfo(MOUNTINFO) == [
        Mount("/", "overlay"), Mount("/tmp/with space/m", "tmpfs"),
        Mount("/run/corral/netns/x", "nsfs")]


@pytest.mark.parametrize(("stat", "want"), [
    pytest.param(b"7 (sleep) S 1 7 7 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 555 1 2",
                 (1, 555, False), id="plain"),
    pytest.param(b"8 (a) b) (c) Z 9 7 7 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 77 1 2",
                 (9, 77, True), id="comm-with-parens-and-zombie"),
])
def test_parse_stat(stat: bytes, want: tuple[int, int, bool]) -> None:
    assert leaks.parse_stat(7, stat) == want


def test_descendants_of() -> None:
    procs = [proc(10, ppid=1), proc(11, ppid=10), proc(12, ppid=11), proc(13, ppid=1),
             proc(14, ppid=13)]
    assert leaks.descendants_of(10, procs) == {11, 12}
    assert leaks.descendants_of(12, procs) == set()


def test_find_cgroups_by_tag_in_every_hierarchy(tmp_path: Path) -> None:
    for d in (f"memory/{TAG}/default/c1", f"memory/corral/default/{TAG}-c2",
              f"pids/{TAG}-bundle", f"pids/{OTHER}", "pids/corral/default/x", "memory/corral"):
        (tmp_path / d).mkdir(parents=True, exist_ok=True)
    os.symlink(tmp_path / "memory", tmp_path / "memory,alias")
    assert leaks.find_cgroups(TAG, root=str(tmp_path)) == sorted([
        str(tmp_path / f"memory/corral/default/{TAG}-c2"), str(tmp_path / f"pids/{TAG}-bundle"),
        str(tmp_path / f"memory/{TAG}")], key=lambda p: (-len(p), p))
