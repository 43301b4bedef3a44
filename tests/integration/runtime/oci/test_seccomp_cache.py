"""The compiled seccomp filter (seccomp_bpf.py) on the real kernel and through corral-runc:
the cached program filters exactly as libseccomp's own load, and a bad cache file is never
loaded."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any

import pytest

from runtime.oci import seccomp, seccomp_bpf
from runtime.oci.linux import PR_SET_NO_NEW_PRIVS, SYS
from tests.conftest import MakeBundle, Runc
from tests.support import busybox

if not seccomp.features()["enabled"]:
    pytest.skip("libseccomp is not installed", allow_module_level=True)


def in_child(load: Callable[[], None], probe: Callable[[], int]) -> int:
    """Run LOAD (with no_new_privs set), then PROBE, in a forked child; its exit code."""
    pid = os.fork()
    if pid == 0:
        code = 100
        try:
            SYS.prctl(PR_SET_NO_NEW_PRIVS, 1)
            load()
            code = probe()
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def mkdir_errno(path: str) -> int:
    try:
        os.mkdir(path)
        os.rmdir(path)
        return 0
    except OSError as e:
        return e.errno or 0


def getpid_ok() -> int:
    return 0 if os.getpid() > 0 else 1


PROFILES: dict[str, dict[str, Any]] = {
    "errno-28": {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 28}]},
    "default-errno-ret": {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
                          "syscalls": [{"names": [n for n in seccomp.default_profile()[
                              "syscalls"][0]["names"] if n not in ("mkdir", "mkdirat")],
                              "action": "SCMP_ACT_ALLOW"}]},
}


@pytest.mark.parametrize("name, probe, expected", [
    pytest.param("errno-28", "mkdir", errno.ENOSPC, id="errno-ret"),
    pytest.param("errno-28", "getpid", 0, id="allowed"),
    pytest.param("default-errno-ret", "mkdir", errno.ENOSYS, id="default-action"),
])
def test_cached_program_filters_as_libseccomp_does(tmp_path: os.PathLike[str], name: str,
                                                   probe: str, expected: int) -> None:
    profile = PROFILES[name]
    target = os.path.join(str(tmp_path), "d")
    run = (lambda: mkdir_errno(target)) if probe == "mkdir" else getpid_ok
    prog = seccomp_bpf.program(profile, os.path.join(str(tmp_path), "cache"))
    ours = in_child(lambda: seccomp_bpf.install(prog), run)
    theirs = in_child(lambda: seccomp.load(profile), run)
    assert (ours, theirs) == (expected, expected)


KERNEL_FLAG = {"SECCOMP_FILTER_FLAG_TSYNC": 1, "SECCOMP_FILTER_FLAG_LOG": 2,
               "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4, "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": 32}


@pytest.mark.parametrize("flag", [pytest.param(f, id=f)
                                  for f in seccomp.features()["supportedFlags"]])
def test_profile_flags_reach_the_kernel_call(tmp_path: os.PathLike[str], flag: str) -> None:
    profile = {**PROFILES["errno-28"], "flags": [flag]}
    prog = seccomp_bpf.program(profile, os.path.join(str(tmp_path), "cache"))
    assert prog.flags & KERNEL_FLAG[flag]
    target = os.path.join(str(tmp_path), "d")
    assert in_child(lambda: seccomp_bpf.install(prog), lambda: mkdir_errno(target)) \
        == errno.ENOSPC


def test_export_is_deterministic_and_is_what_the_cache_holds(tmp_path: os.PathLike[str]
                                                            ) -> None:
    profile = seccomp.default_profile()
    cache = os.path.join(str(tmp_path), "cache")
    flags, code = seccomp.compile_bpf(profile)
    assert seccomp.compile_bpf(profile) == (flags, code)
    assert len(code) % 8 == 0 and 0 < len(code) // 8 <= seccomp_bpf.MAX_INSNS
    assert flags & seccomp_bpf.SECCOMP_FILTER_FLAG_TSYNC  # as runc: tsync where supported
    prog = seccomp_bpf.program(profile, cache)
    assert (prog.flags, prog.code) == (flags, code)
    [name] = os.listdir(cache)
    with open(os.path.join(cache, name), "rb") as f:
        assert f.read().endswith(code)


def test_libseccomp_version_without_ctypes_matches() -> None:
    assert seccomp_bpf.libseccomp_version() == seccomp.version()


def sh(script: str) -> list[str]:
    return ["/bin/sh", "-c", script]


def test_containers_share_one_compiled_profile(runc: Runc, bundle: MakeBundle,
                                               tag: str) -> None:
    def with_default_profile(c: dict[str, object]) -> None:
        linux = c["linux"]
        proc = c["process"]
        assert isinstance(linux, dict) and isinstance(proc, dict)
        linux["seccomp"] = seccomp.default_profile(proc["capabilities"]["bounding"])

    script = sh("unshare -n true 2>&1 | grep -c 'not permitted'; echo ok")
    b = busybox.edit_config(bundle(script), with_default_profile)
    assert runc("run", "--bundle", b, tag + "-1").stdout.decode().split() == ["1", "ok"]
    cache = os.path.join(runc.root, seccomp_bpf.CACHE_DIR)
    [name] = os.listdir(cache)
    path = os.path.join(cache, name)
    first = os.stat(path)
    assert runc("run", "--bundle", b, tag + "-2").stdout.decode().split() == ["1", "ok"]
    assert os.stat(path).st_ino == first.st_ino  # read, not compiled again
    # a spoilt file (here: no longer a whole program) is compiled again, never loaded
    with open(path, "r+b") as f:
        f.truncate(first.st_size - 4)
    assert runc("run", "--bundle", b, tag + "-3").stdout.decode().split() == ["1", "ok"]
    assert os.stat(path).st_size == first.st_size
    assert os.listdir(cache) == [name]
    assert runc("list", "-q").stdout.decode().split() == []  # not a container


def test_exec_loads_the_containers_compiled_profile(runc: Runc, bundle: MakeBundle,
                                                    tag: str) -> None:
    def with_profile(c: dict[str, object]) -> None:
        linux = c["linux"]
        assert isinstance(linux, dict)
        linux["seccomp"] = PROFILES["errno-28"]

    b = busybox.edit_config(bundle(["/bin/sleep", "1000"]), with_profile)
    runc("run", "-d", "--bundle", b, tag)
    try:
        cache = os.path.join(runc.root, seccomp_bpf.CACHE_DIR)
        [name] = os.listdir(cache)
        inode = os.stat(os.path.join(cache, name)).st_ino
        for _ in range(2):
            out = runc("exec", tag, "/bin/sh", "-c", "mkdir /tmp/x 2>&1; echo done").stdout
            assert out.decode() == "mkdir: can't create directory '/tmp/x': " \
                                   "No space left on device\ndone\n"
        assert os.listdir(cache) == [name]
        assert os.stat(os.path.join(cache, name)).st_ino == inode  # not compiled again
    finally:
        runc("delete", "--force", tag)
