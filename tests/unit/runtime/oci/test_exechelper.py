"""The sealed exec helper: a real ELF that execs argv[1] with argv[2:]."""

from __future__ import annotations

import os
import platform
import subprocess
import time

import pytest

from runtime.oci import exechelper

pytestmark = pytest.mark.skipif(exechelper.elf_image() is None,
                                reason=f"no helper code for {platform.machine()}")


def test_elf_header() -> None:
    img = exechelper.elf_image()
    assert img is not None
    assert img[:4] == b"\x7fELF" and img[4] == 2 and len(img) < 300


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
    assert run_helper(["", "", "/bin/busybox", "echo", "hi", "there"], {}).stdout == \
        b"hi there\n"
    p = run_helper(["", "", "/bin/busybox", "sh", "-c", 'echo "$FOO|$#"', "x", "y"],
                   {"FOO": "bar"})
    assert p.stdout == b"bar|1\n"


def test_helper_exits_127_when_exec_fails() -> None:
    assert run_helper(["", "", "/nonexistent", "x"], {}).returncode == 127


def test_helper_waits_on_the_fifo_then_execs(tmp_path: object) -> None:
    """The create path: block opening the fifo for writing until a reader comes, write
    "0", close the O_PATH fd, exec; the fifo reaches EOF at the exec."""
    fifo = os.path.join(str(tmp_path), "exec.fifo")
    os.mkfifo(fifo)
    opath = os.open(fifo, os.O_PATH)
    helper = exechelper.sealed_memfd()
    assert helper is not None
    try:
        p = subprocess.Popen(
            [f"/proc/self/fd/{helper}", f"/proc/self/fd/{opath}", str(opath),
             "/bin/busybox", "sh", "-c", "ls -l /proc/self/fd"],
            pass_fds=(helper, opath), stdout=subprocess.PIPE)
        time.sleep(0.2)
        assert p.poll() is None  # still waiting for a reader
        with open(fifo, "rb") as r:
            assert r.read() == b"0"  # read() returns at EOF: the exec closed the fifo
        out, _ = p.communicate(timeout=10)
    finally:
        os.close(helper)
        os.close(opath)
    assert p.returncode == 0
    # neither the fifo it wrote to nor the O_PATH fd reach the program
    assert b"exec.fifo" not in out and f" {opath} -> ".encode() not in out


def test_memfd_is_sealed() -> None:
    fd = exechelper.sealed_memfd()
    assert fd is not None
    try:
        with pytest.raises(PermissionError):
            os.write(fd, b"x")
    finally:
        os.close(fd)
