"""runtime.oci.seccomp_bpf: the compiled-filter cache and its loader (no filter is loaded)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from runtime.oci import libc, linux, seccomp, seccomp_bpf
from runtime.oci.errors import SetupError
from runtime.oci.seccomp_bpf import Program

PROFILE = {"defaultAction": "SCMP_ACT_ALLOW",
           "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}
HOST = "x86_64 6.1.0 libseccomp 2.5.4"
CODE = bytes(range(8)) * 3  # three sock_filter instructions


def what(prog: Program | None) -> tuple[int, bytes] | None:
    """What a program is to the kernel: its seccomp(2) flags and its instructions."""
    return None if prog is None else (prog.flags, prog.code)


# ---- the key ------------------------------------------------------------------------------

@pytest.mark.parametrize("other, host", [
    pytest.param({**PROFILE, "defaultAction": "SCMP_ACT_LOG"}, HOST, id="profile"),
    pytest.param({"syscalls": PROFILE["syscalls"], "defaultAction": "SCMP_ACT_ALLOW"}, HOST,
                 id="key-order"),
    pytest.param(PROFILE, HOST.replace("6.1.0", "6.2.0"), id="kernel"),
    pytest.param(PROFILE, HOST.replace("2.5.4", "2.6.0"), id="libseccomp"),
    pytest.param(PROFILE, HOST.replace("x86_64", "aarch64"), id="machine"),
])
def test_key_changes_with_what_decides_the_program(other: dict[str, Any], host: str) -> None:
    assert seccomp_bpf.key(other, host=host) != seccomp_bpf.key(PROFILE, host=HOST)


def test_key_is_stable() -> None:
    assert seccomp_bpf.key(dict(PROFILE), host=HOST) == seccomp_bpf.key(PROFILE, host=HOST)
    assert len(seccomp_bpf.key(PROFILE, host=HOST)) == 32


# ---- the file format ---------------------------------------------------------------------

DIGEST = seccomp_bpf.key(PROFILE, host=HOST)
GOOD = seccomp_bpf.encode(DIGEST, Program(5, CODE))


def test_encode_decode_round_trip() -> None:
    assert what(seccomp_bpf.decode(GOOD, DIGEST)) == (5, CODE)


@pytest.mark.parametrize("data, digest", [
    pytest.param(b"", DIGEST, id="empty"),
    pytest.param(GOOD[:-len(CODE)], DIGEST, id="no-code"),
    pytest.param(GOOD[:-1], DIGEST, id="truncated-instruction"),
    pytest.param(b"X" + GOOD[1:], DIGEST, id="bad-magic"),
    pytest.param(GOOD, bytes(32), id="another-key"),
    pytest.param(seccomp_bpf.encode(DIGEST, Program(0, bytes(8 * 4097))), DIGEST,
                 id="longer-than-BPF_MAXINSNS"),
])
def test_decode_refuses(data: bytes, digest: bytes) -> None:
    assert seccomp_bpf.decode(data, digest) is None


# ---- program(): compile once, then from the cache -----------------------------------------

class Compiler:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, profile: dict[str, Any]) -> tuple[int, bytes]:
        self.calls += 1
        return 1, CODE


@pytest.fixture
def compiler(monkeypatch: pytest.MonkeyPatch) -> Compiler:
    c = Compiler()
    monkeypatch.setattr(seccomp, "compile_bpf", c)
    monkeypatch.setattr(seccomp_bpf, "host_identity", lambda: HOST)
    return c


def cache_file(cache: str) -> str:
    [name] = os.listdir(cache)
    return os.path.join(cache, name)


def test_program_compiles_once_and_keeps_it(tmp_path: Any, compiler: Compiler) -> None:
    cache = str(tmp_path / "root" / "@seccomp")
    assert what(seccomp_bpf.program(PROFILE, cache)) == (1, CODE)
    assert what(seccomp_bpf.program(PROFILE, cache)) == (1, CODE)
    assert compiler.calls == 1
    path = cache_file(cache)
    assert path.endswith(DIGEST.hex() + ".bpf")
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.stat(cache).st_mode & 0o777 == 0o700


def spoil_truncate(path: str) -> None:
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 3)


def spoil_group_writable(path: str) -> None:
    os.chmod(path, 0o620)


def spoil_foreign_owner(path: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("chown needs root")
    os.chown(path, 65534, 65534)


def spoil_symlink(path: str) -> None:
    os.rename(path, path + ".real")
    os.symlink(path + ".real", path)


MAIN = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))))


def test_a_cache_hit_imports_neither_seccomp_nor_ctypes(tmp_path: Any) -> None:
    """A fresh interpreter, as an exec'd corral-runc create: the cached program is read
    without libseccomp's ctypes set-up (~3.5 ms); a miss would import both."""
    try:
        host = seccomp_bpf.host_identity()
    except SetupError:
        pytest.skip("libseccomp is not installed")
    cache = str(tmp_path / "@seccomp")
    os.mkdir(cache, 0o700)
    digest = seccomp_bpf.key(PROFILE, host=host)
    fd = os.open(os.path.join(cache, digest.hex() + ".bpf"), os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, seccomp_bpf.encode(digest, Program(1, CODE)))
    os.close(fd)
    code = ("import json, sys\n"
            "from runtime.oci import seccomp_bpf\n"
            f"p = seccomp_bpf.program({PROFILE!r}, {cache!r})\n"
            "print(json.dumps([p.flags, p.code.hex(), sorted({'ctypes', "
            "'runtime.oci.seccomp'} & set(sys.modules))]))\n")
    out = subprocess.run([sys.executable, "-S", "-B", "-c", code], cwd=MAIN, check=True,
                         capture_output=True, text=True, env={"PYTHONPATH": MAIN})
    assert json.loads(out.stdout) == [1, CODE.hex(), []]


@pytest.mark.parametrize("spoil", [
    pytest.param(spoil_truncate, id="truncated"),
    pytest.param(spoil_group_writable, id="group-writable"),
    pytest.param(spoil_foreign_owner, id="foreign-owner"),
    pytest.param(spoil_symlink, id="symlink"),
])
def test_program_recompiles_over_an_unsound_file(tmp_path: Any, compiler: Compiler,
                                                 spoil: Any) -> None:
    cache = str(tmp_path / "@seccomp")
    seccomp_bpf.program(PROFILE, cache)
    path = os.path.join(cache, DIGEST.hex() + ".bpf")
    spoil(path)
    assert what(seccomp_bpf.program(PROFILE, cache)) == (1, CODE)
    assert compiler.calls == 2
    st = os.lstat(path)  # replaced by a sound file of our own
    assert (st.st_uid, st.st_mode & 0o777) == (os.geteuid(), 0o600)
    assert what(seccomp_bpf.program(PROFILE, cache)) == (1, CODE)
    assert compiler.calls == 2


def test_program_without_a_writable_cache_still_compiles(tmp_path: Any,
                                                         compiler: Compiler) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    cache = str(blocker / "@seccomp")  # under a file: cannot be made
    assert what(seccomp_bpf.program(PROFILE, cache)) == (1, CODE)
    assert what(seccomp_bpf.program(PROFILE, cache)) == (1, CODE)
    assert compiler.calls == 2
    assert os.listdir(tmp_path) == ["file"]  # no temporary file left behind


def test_program_reports_what_libseccomp_refuses(tmp_path: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(profile: dict[str, Any]) -> tuple[int, bytes]:
        raise SetupError("seccomp: flag SECCOMP_FILTER_FLAG_LOG is not supported")
    monkeypatch.setattr(seccomp, "compile_bpf", refuse)
    monkeypatch.setattr(seccomp_bpf, "host_identity", lambda: HOST)
    with pytest.raises(SetupError, match="SECCOMP_FILTER_FLAG_LOG"):
        seccomp_bpf.program(PROFILE, str(tmp_path / "@seccomp"))
    assert not os.path.exists(tmp_path / "@seccomp")


# ---- install(): the one syscall --------------------------------------------------------------

def test_install_makes_the_seccomp_call(monkeypatch: pytest.MonkeyPatch) -> None:
    rec = linux.RecordingSyscalls()
    monkeypatch.setattr(seccomp_bpf, "SYS", rec)
    seccomp_bpf.install(Program(3, CODE))
    assert rec.calls == [("seccomp_filter", 3, CODE)]


@pytest.mark.parametrize("err, message", [
    pytest.param(13, "Permission denied (set no_new_privs or hold CAP_SYS_ADMIN first)",
                 id="eacces"),
    pytest.param(22, "loading the filter: Invalid argument", id="einval"),
])
def test_install_failure_names_the_cause(monkeypatch: pytest.MonkeyPatch, err: int,
                                         message: str) -> None:
    class Refusing(linux.Syscalls):
        def seccomp_filter(self, flags: int, code: bytes) -> int:
            raise OSError(err, os.strerror(err))
    monkeypatch.setattr(seccomp_bpf, "SYS", Refusing())
    with pytest.raises(SetupError, match=message.replace("(", r"\(").replace(")", r"\)")):
        seccomp_bpf.install(Program(0, CODE))


def test_install_tsync_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    class OtherThread(linux.Syscalls):
        def seccomp_filter(self, flags: int, code: bytes) -> int:
            return 4321  # the thread that could not be synchronised
    monkeypatch.setattr(seccomp_bpf, "SYS", OtherThread())
    with pytest.raises(SetupError, match="No such process"):
        seccomp_bpf.install(Program(seccomp_bpf.SECCOMP_FILTER_FLAG_TSYNC, CODE))


# ---- the host's identity -----------------------------------------------------------------

def test_libseccomp_missing_is_a_setup_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> None:
        raise OSError(f"{name}: cannot open shared object file")
    monkeypatch.setattr(libc, "Library", missing)
    with pytest.raises(SetupError, match=r"cannot load libseccomp\.so\.2"):
        seccomp_bpf.libseccomp_version()


def test_host_identity_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[int] = []

    def version() -> str:
        asked.append(1)
        return "9.9.9"
    monkeypatch.setattr(seccomp_bpf, "_host", None)
    monkeypatch.setattr(seccomp_bpf, "libseccomp_version", version)
    first = seccomp_bpf.host_identity()
    assert first == seccomp_bpf.host_identity()
    assert first.endswith("libseccomp 9.9.9") and os.uname().release in first
    assert asked == [1]


def test_for_root_without_a_seccomp_syscall_number_leaves_it_to_libseccomp(
        tmp_path: Any, compiler: Compiler, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seccomp_bpf, "has_syscall", lambda name: False)
    assert seccomp_bpf.for_root(PROFILE, str(tmp_path)) is None
    assert compiler.calls == 0 and os.listdir(tmp_path) == []


def test_for_root_caches_under_the_root(tmp_path: Any, compiler: Compiler) -> None:
    assert what(seccomp_bpf.for_root(PROFILE, str(tmp_path))) == (1, CODE)
    assert os.listdir(tmp_path) == [seccomp_bpf.CACHE_DIR]
