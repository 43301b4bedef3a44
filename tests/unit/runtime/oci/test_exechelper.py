"""The sealed exec helper: a real ELF that execs argv[1] with argv[2:]."""

from __future__ import annotations

import os
import platform
import subprocess

import pytest

from runtime.oci import exechelper

pytestmark = pytest.mark.skipif(exechelper.elf_image() is None,
                                reason=f"no helper code for {platform.machine()}")


def test_elf_header() -> None:
    img = exechelper.elf_image()
    assert img is not None
    assert img[:4] == b"\x7fELF" and img[4] == 2 and len(img) < 200


def run_helper(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    fd = exechelper.sealed_memfd()
    assert fd is not None
    try:
        return subprocess.run([f"/proc/self/fd/{fd}", *argv], env=env, pass_fds=(fd,),
                              stdout=subprocess.PIPE, check=False)
    finally:
        os.close(fd)


def test_helper_execs_with_argv0_and_env() -> None:
    # busybox picks its applet from argv[0]: "echo" proves argv[0] is passed as given.
    assert run_helper(["/bin/busybox", "echo", "hi", "there"], {}).stdout == b"hi there\n"
    p = run_helper(["/bin/busybox", "sh", "-c", 'echo "$FOO|$#"', "x", "y"], {"FOO": "bar"})
    assert p.stdout == b"bar|1\n"


def test_helper_exits_127_when_exec_fails() -> None:
    assert run_helper(["/nonexistent", "x"], {}).returncode == 127


def test_memfd_is_sealed() -> None:
    fd = exechelper.sealed_memfd()
    assert fd is not None
    try:
        with pytest.raises(PermissionError):
            os.write(fd, b"x")
    finally:
        os.close(fd)
