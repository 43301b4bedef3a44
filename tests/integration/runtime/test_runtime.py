"""corral-runc driven through its command line, with real namespaces, mounts and cgroups.

Each test runs busybox in a container built from Debian's busybox-static and checks the
effect of one part of config.json from inside (what the process sees) or outside (what
the host sees). The leak check (conftest) fails any test that leaves something behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from tests.conftest import MakeBundle, Runc


def run(runc: Runc, bundle: str, cid: str, **kw: object) -> subprocess.CompletedProcess[bytes]:
    return runc("run", "--bundle", bundle, cid, **kw)


def sh(script: str) -> list[str]:
    return ["/bin/sh", "-c", script]


def test_run_true_exits_zero(runc: Runc, bundle: MakeBundle, tag: str) -> None:
    p = run(runc, bundle(["/bin/true"]), tag)
    assert p.returncode == 0
    assert runc("list", "--format", "json").stdout.strip() in (b"[]", b"null")


def test_exit_code_and_output(runc: Runc, bundle: MakeBundle, tag: str) -> None:
    p = run(runc, bundle(sh("echo out; echo err >&2; exit 7")), tag, check=False)
    assert p.returncode == 7
    assert p.stdout == b"out\n"
    assert p.stderr == b"err\n"


def test_isolation_seen_from_inside(runc: Runc, bundle: MakeBundle, tag: str) -> None:
    script = "echo pid=$$; hostname; ls /; cat /proc/self/status | grep -E '^(CapEff|NoNewPrivs)'"
    p = run(runc, bundle(sh(script)), tag)
    out = p.stdout.decode()
    assert "pid=1\n" in out  # new pid namespace
    assert "corral\n" in out  # hostname in a new uts namespace
    assert "bin" in out and "work" not in out  # pivot_root into the rootfs
    assert "NoNewPrivs:\t1" in out
    # runc spec's caps: AUDIT_WRITE(29), KILL(5), NET_BIND_SERVICE(10)
    assert "CapEff:\t0000000020000420" in out


def test_lifecycle_create_start_state_kill_delete(runc: Runc, bundle: MakeBundle, tag: str, tmp_path: object) -> None:
    b = bundle(["/bin/sleep", "1000"])
    pidfile = os.path.join(str(tmp_path), "pid")
    runc("create", "--bundle", b, "--pid-file", pidfile, tag)
    st = json.loads(runc("state", tag).stdout)
    assert st["status"] == "created"
    with open(pidfile) as f:
        assert int(f.read()) == st["pid"]
    runc("start", tag)
    st = json.loads(runc("state", tag).stdout)
    assert st["status"] == "running"
    with open(f"/proc/{st['pid']}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[0] == b"/bin/sleep"
    p = runc("delete", tag, check=False)
    assert p.returncode == 1 and b"not stopped: running" in p.stderr
    runc("pause", tag)
    assert json.loads(runc("state", tag).stdout)["status"] == "paused"
    runc("resume", tag)
    assert json.loads(runc("state", tag).stdout)["status"] == "running"
    assert json.loads(runc("ps", "--format", "json", tag).stdout) == [st["pid"]]
    runc("kill", tag, "KILL")
    deadline = time.monotonic() + 5
    while json.loads(runc("state", tag).stdout)["status"] != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    p = runc("kill", tag, "TERM", check=False)
    assert p.returncode == 1 and b"container not running" in p.stderr
    runc("delete", tag)
    p = runc("state", tag, check=False)
    assert p.returncode == 1 and b"container does not exist" in p.stderr


def test_second_create_with_same_id_fails(runc: Runc, bundle: MakeBundle, tag: str) -> None:
    b = bundle(["/bin/sleep", "1000"])
    runc("create", "--bundle", b, tag)
    p = runc("create", "--bundle", b, tag, check=False)
    assert p.returncode == 1 and b"already exists" in p.stderr
    assert json.loads(runc("state", tag).stdout)["status"] == "created"
    runc("delete", "--force", tag)


def test_delete_force_running(runc: Runc, bundle: MakeBundle, tag: str) -> None:
    runc("run", "--detach", "--bundle", bundle(["/bin/sleep", "1000"]), tag)
    runc("delete", "--force", tag)
    assert runc("list", "-q").stdout == b""


def test_exec_into_running(runc: Runc, bundle: MakeBundle, tag: str) -> None:
    runc("run", "--detach", "--bundle", bundle(["/bin/sleep", "1000"]), tag)
    p = runc("exec", "--env", "X=42", tag, "/bin/sh", "-c", "echo $X $$; hostname")
    x, pid, host = p.stdout.decode().split()
    assert x == "42" and int(pid) > 1 and host == "corral"
    p = runc("exec", tag, "/bin/sh", "-c", "exit 3", check=False)
    assert p.returncode == 3
    p = runc("exec", tag, "/nonexistent", check=False)
    assert p.returncode == 255 and b"exec failed" in p.stderr
    runc("delete", "--force", tag)


def test_readonly_root_and_masked_paths(runc: Runc, bundle: MakeBundle, tag: str) -> None:
    script = ("touch /x 2>/dev/null && echo rw || echo ro; "
              "cat /proc/kcore | wc -c; ls /sys/firmware | wc -l; "
              "echo 1 > /proc/sys/kernel/domainname 2>/dev/null && echo sys-rw || echo sys-ro")
    p = run(runc, bundle(sh(script)), tag)
    assert p.stdout.decode().split() == ["ro", "0", "0", "sys-ro"]


def test_user_and_groups(runc: Runc, bundle: MakeBundle, tag: str) -> None:
    b = bundle(sh("id -u; id -g; id -G; echo $HOME; umask"))
    cfg_path = os.path.join(b, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [5], "umask": 0o077}
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    p = run(runc, b, tag)
    assert p.stdout.decode().split() == ["1000", "1000", "1000", "5", "/home/user", "0077"]


def test_bad_config_leaves_nothing(runc: Runc, bundle: MakeBundle, tag: str) -> None:
    b = bundle(["/bin/true"])
    cfg_path = os.path.join(b, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["linux"]["resources"]["memory"] = {"limit": -5}
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    p = runc("create", "--bundle", b, tag, check=False)
    assert p.returncode == 1
    assert b"linux.resources.memory.limit" in p.stderr
    assert not os.path.exists(os.path.join(runc.root, tag))


def test_missing_program_fails_at_create(runc: Runc, bundle: MakeBundle, tag: str) -> None:
    p = runc("create", "--bundle", bundle(["nosuchprog"]), tag, check=False)
    assert p.returncode == 1
    assert b'process.args[0]: exec: \'nosuchprog\': executable file not found' in p.stderr
    assert not os.path.exists(os.path.join(runc.root, tag))


@pytest.mark.parametrize("signal", ["9", "KILL", "SIGKILL"])
def test_kill_signal_forms(runc: Runc, bundle: MakeBundle, tag: str, signal: str) -> None:
    runc("run", "-d", "--bundle", bundle(["/bin/sleep", "1000"]), tag)
    runc("kill", tag, signal)
    deadline = time.monotonic() + 5
    while json.loads(runc("state", tag).stdout)["status"] != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    runc("delete", tag)
