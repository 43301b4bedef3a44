"""Each config.json field corral-runc honours, observed in a real container.

A case is (field, how to set it, a script run in the container, what it must print).
Together with test_runtime.py (lifecycle, exec, user) and test_security.py, this covers
every field of runtime-spec config.md / config-linux.md the runtime accepts.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from collections.abc import Callable

import pytest

from tests.conftest import MakeBundle, Runc
from tests.support import busybox

Config = dict[str, object]


edit = busybox.edit_config


def sh(script: str) -> list[str]:
    return ["/bin/sh", "-c", script]


def _mount(dest: str, typ: str, src: str, opts: list[str]) -> Callable[[dict], None]:  # type: ignore[type-arg]
    return lambda c: c["mounts"].append({"destination": dest, "type": typ, "source": src,
                                         "options": opts})


CASES = [
    pytest.param("cat /proc/self/status | grep -E '^Umask'; umask",
                 lambda c: c["process"]["user"].update(umask=0o027), "Umask:\t0027\n0027",
                 id="process.user.umask"),
    pytest.param("echo $A $B", lambda c: c["process"].update(env=["A=1", "B=two words"]),
                 "1 two words", id="process.env"),
    pytest.param("pwd", lambda c: c["process"].update(cwd="/tmp"), "/tmp", id="process.cwd"),
    pytest.param("ulimit -n; ulimit -Hn",
                 lambda c: c["process"].update(rlimits=[{"type": "RLIMIT_NOFILE", "soft": 123,
                                                         "hard": 456}]),
                 "123\n456", id="process.rlimits"),
    pytest.param("cat /proc/self/oom_score_adj", lambda c: c["process"].update(oomScoreAdj=500),
                 "500", id="process.oomScoreAdj"),
    pytest.param("grep NoNewPrivs /proc/self/status",
                 lambda c: c["process"].update(noNewPrivileges=False), "NoNewPrivs:\t0",
                 id="process.noNewPrivileges-false"),
    pytest.param("hostname; cat /proc/sys/kernel/domainname",
                 lambda c: c.update(hostname="h1", domainname="example.org"),
                 "h1\nexample.org", id="hostname+domainname"),
    pytest.param("touch /x && echo rw", lambda c: c["root"].update(readonly=False), "rw",
                 id="root.readonly-false"),
    pytest.param("cat /proc/sys/net/ipv4/ip_forward; cat /proc/sys/kernel/msgmax",
                 lambda c: c["linux"].update(sysctl={"net.ipv4.ip_forward": "1",
                                                     "kernel.msgmax": "12345"}),
                 "1\n12345", id="linux.sysctl"),
    pytest.param("uname -m", lambda c: c["linux"].update(personality={"domain": "LINUX32"}),
                 "i686", id="linux.personality"),
    pytest.param("ls -l /dev/mynull | cut -c1; echo x > /dev/mynull && echo written",
                 lambda c: c["linux"].update(devices=[{"path": "/dev/mynull", "type": "c",
                                                       "major": 1, "minor": 3,
                                                       "fileMode": 0o666}]),
                 "c\nwritten", id="linux.devices"),
    pytest.param("ls /dev | tr '\\n' ' '", None,
                 ("core " if os.path.exists("/proc/kcore") else "")
                 + "fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom "
                 "zero", id="default-devices"),
    pytest.param("head -c 1 /dev/sda 2>&1 | head -1; mknod /dev/x b 8 0 && head -c1 /dev/x "
                 "2>&1 | grep -c 'not permitted'",
                 lambda c: c["process"]["capabilities"].update(
                     bounding=["CAP_MKNOD"], effective=["CAP_MKNOD"], permitted=["CAP_MKNOD"]),
                 "head: /dev/sda: No such file or directory\n1", id="device-cgroup-denies"),
    pytest.param("cat /sys/fs/cgroup/memory/memory.limit_in_bytes; "
                 "cat /sys/fs/cgroup/pids/pids.max; cat /sys/fs/cgroup/cpu/cpu.shares",
                 lambda c: c["linux"]["resources"].update(memory={"limit": 64 << 20},
                                                          pids={"limit": 50},
                                                          cpu={"shares": 256}),
                 f"{64 << 20}\n50\n256", id="linux.resources"),
    pytest.param("mount | grep ' /data ' | grep -o '(ro,nosuid'; touch /data/x 2>&1 | "
                 "grep -c Read-only",
                 _mount("/data", "bind", "/etc", ["rbind", "ro", "nosuid"]),
                 "(ro,nosuid\n1", id="mounts.bind-ro"),
    pytest.param("mount | grep ' /scratch ' | cut -d' ' -f5,6",
                 _mount("/scratch", "tmpfs", "tmpfs", ["size=1m", "mode=700", "noexec"]),
                 "tmpfs (rw,noexec,relatime,size=1024k,mode=700)", id="mounts.tmpfs"),
    pytest.param("ls /etc/passwd /etc/group | wc -l",
                 _mount("/etc", "tmpfs", "tmpfs", ["tmpcopyup"]), "2", id="mounts.tmpcopyup"),
    pytest.param("mount | grep -c cgroup", None, "10", id="mounts.cgroup-hierarchies"),
    # (host ID 0: the shared test rootfs lies under a 0700 directory of root's)
    pytest.param("cat /proc/self/uid_map | tr -s ' '; id -u; cat /proc/self/gid_map | tr -s ' '",
                 lambda c: (c["linux"]["namespaces"].append({"type": "user"}),
                            c["linux"].update(
                                uidMappings=[{"containerID": 0, "hostID": 0, "size": 2000}],
                                gidMappings=[{"containerID": 0, "hostID": 0, "size": 3000}])),
                 "0 0 2000\n0\n 0 0 3000", id="linux.uidMappings"),
    pytest.param("grep -c . /proc/net/dev",
                 lambda c: c["linux"].update(namespaces=[
                     n for n in c["linux"]["namespaces"] if n["type"] != "network"]),
                 None, id="network-namespace-shared-with-host"),
]


@pytest.mark.parametrize("script,change,expected", CASES)
def test_field(runc: Runc, bundle: MakeBundle, tag: str, script: str,
               change: Callable[[dict], None] | None, expected: str | None) -> None:  # type: ignore[type-arg]
    b = bundle(sh(script))
    if change is not None:
        edit(b, change)
    p = runc("run", "--bundle", b, tag, check=False)
    out = p.stdout.decode().strip()
    assert p.returncode == 0, p.stderr.decode() + out
    if expected is None:  # the host's network devices are visible: more than lo
        assert int(out) > 3
    else:
        assert out == expected


def test_hooks_run_in_order_with_state(runc: Runc, bundle: MakeBundle, tag: str,
                                       tmp_path: object) -> None:
    log = os.path.join(str(tmp_path), "hooks.log")
    hook = os.path.join(str(tmp_path), "hook.sh")
    with open(hook, "w") as f:
        f.write(f'#!/bin/sh\nread -r state\necho "$1 $HOOKVAR $state" >> {log}\n')
    os.chmod(hook, 0o755)
    stages = ["prestart", "createRuntime", "createContainer", "startContainer", "poststart",
              "poststop"]
    b = bundle(["/bin/true"])

    def add(c: dict) -> None:  # type: ignore[type-arg]
        c["hooks"] = {s: [{"path": hook, "args": ["hook.sh", s], "env": ["HOOKVAR=v"]}]
                      for s in stages}
        c["annotations"] = {"org.example": "yes"}
        # startContainer runs inside the container: give it the hook and the log there
        c["mounts"].append({"destination": str(tmp_path), "type": "bind",
                            "source": str(tmp_path), "options": ["rbind"]})
    edit(b, add)
    runc("run", "--bundle", b, tag)
    with open(log) as f:
        lines = f.read().splitlines()
    assert [line.split()[0] for line in lines] == stages
    for line in lines:
        stage, var, state_json = line.split(" ", 2)
        assert var == "v"
        st = json.loads(state_json)
        assert st["id"] == tag and st["annotations"] == {"org.example": "yes"}
        assert st["status"] == {"prestart": "creating", "createRuntime": "creating",
                                "createContainer": "creating", "startContainer": "running",
                                "poststart": "running", "poststop": "stopped"}[stage]


def test_failing_hook_aborts_create_and_leaves_nothing(runc: Runc, bundle: MakeBundle,
                                                        tag: str) -> None:
    b = edit(bundle(["/bin/true"]), lambda c: c.update(hooks={"createRuntime": [
        {"path": "/bin/sh", "args": ["sh", "-c", "echo nope >&2; exit 3"]}]}))
    p = runc("create", "--bundle", b, tag, check=False)
    assert p.returncode == 1
    assert b"hooks.createRuntime[0] (/bin/sh): exit status 3: nope" in p.stderr
    assert runc("list", "-q").stdout == b""


def test_hook_timeout(runc: Runc, bundle: MakeBundle, tag: str) -> None:
    b = edit(bundle(["/bin/true"]), lambda c: c.update(hooks={"prestart": [
        {"path": "/bin/sleep", "args": ["sleep", "10"], "timeout": 1}]}))
    t0 = time.monotonic()
    p = runc("create", "--bundle", b, tag, check=False)
    assert p.returncode == 1 and b"timed out after 1s" in p.stderr
    assert time.monotonic() - t0 < 5


def test_seccomp_from_config(runc: Runc, bundle: MakeBundle, tag: str) -> None:
    b = edit(bundle(sh("mkdir /tmp/d 2>&1; echo done")), lambda c: c["linux"].update(
        seccomp={"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 28}]}))
    out = runc("run", "--bundle", b, tag).stdout.decode()
    assert "No space left on device" in out and out.endswith("done\n")


def test_default_seccomp_profile_in_a_container(runc: Runc, bundle: MakeBundle,
                                                tag: str) -> None:
    from runtime.oci import seccomp
    b = edit(bundle(sh("unshare -n true 2>&1 | grep -c 'not permitted'; echo ok")),
             lambda c: c["linux"].update(seccomp=seccomp.default_profile(
                 c["process"]["capabilities"]["bounding"])))
    assert runc("run", "--bundle", b, tag).stdout.decode().split() == ["1", "ok"]


def test_join_namespaces_by_path(runc: Runc, bundle: MakeBundle, tag: str) -> None:
    runc("run", "-d", "--bundle", bundle(["/bin/sleep", "1000"], name="a"), tag + "-a")
    pid = json.loads(runc("state", tag + "-a").stdout)["pid"]
    b = edit(bundle(sh("hostname; cat /proc/1/cmdline | tr '\\0' ' '"), name="b"),
             lambda c: c["linux"].update(namespaces=[
                 {"type": "mount"}, {"type": "uts", "path": f"/proc/{pid}/ns/uts"},
                 {"type": "pid", "path": f"/proc/{pid}/ns/pid"},
                 {"type": "ipc", "path": f"/proc/{pid}/ns/ipc"}]) or c.pop("hostname"))
    out = runc("run", "--bundle", b, tag + "-b").stdout.decode().split("\n")
    assert out[0] == "corral" and out[1].startswith("/bin/sleep 1000")
    runc("delete", "--force", tag + "-a")


def test_update_events_and_ps(runc: Runc, bundle: MakeBundle, tag: str) -> None:
    runc("run", "-d", "--bundle", bundle(["/bin/sleep", "1000"]), tag)
    runc("update", "--resources", "-", tag,
         input=json.dumps({"memory": {"limit": 32 << 20}, "pids": {"limit": 7}}).encode())
    runc("update", "--cpu-shares", "300", tag)
    ev = json.loads(runc("events", "--stats", tag).stdout)
    assert ev["type"] == "stats" and ev["id"] == tag
    assert ev["data"]["memory"]["usage"]["limit"] == 32 << 20
    assert ev["data"]["pids"] == {"current": 1, "limit": 7}
    pid = json.loads(runc("state", tag).stdout)["pid"]
    table = runc("ps", tag).stdout.decode().splitlines()
    assert table[0].split()[:2] == ["UID", "PID"] and str(pid) in table[1].split()
    listed = json.loads(runc("list", "--format", "json").stdout)
    assert [(c["id"], c["status"]) for c in listed] == [(tag, "running")]
    p = runc("update", "--resources", "-", tag, input=b'{"memory": {"limit": "x"}}',
             check=False)
    assert p.returncode == 1 and b"resources.memory.limit: must be an integer" in p.stderr
    runc("delete", "--force", tag)


def test_console_socket(runc: Runc, bundle: MakeBundle, tag: str, tmp_path: object) -> None:
    import socket
    path = os.path.join(str(tmp_path), "console.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    b = edit(bundle(sh("tty; stty size; echo done")), lambda c: c["process"].update(
        terminal=True, consoleSize={"height": 30, "width": 100}))
    p = subprocess.Popen([runc.binary, "--root", runc.root, "create", "--bundle", b,
                          "--console-socket", path, tag], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    conn, _ = srv.accept()
    msg, fds, _, _ = socket.recv_fds(conn, 64, 1)
    conn.close()
    srv.close()
    assert p.wait(timeout=20) == 0, p.stderr.read()  # type: ignore[union-attr]
    assert msg == b"/dev/ptmx" and len(fds) == 1
    master = fds[0]
    runc("start", tag)
    out = b""
    deadline = time.monotonic() + 10
    while b"done" not in out and time.monotonic() < deadline:
        try:
            out += os.read(master, 4096)
        except OSError:
            break
    os.close(master)
    assert b"/dev/pts/0" in out and b"30 100" in out
    assert stat.S_ISDIR(os.stat(runc.root).st_mode)
    runc("delete", "--force", tag)


def test_preserve_fds(runc: Runc, bundle: MakeBundle, tag: str) -> None:
    r, w = os.pipe()
    os.write(w, b"through fd 3\n")
    os.close(w)
    b = bundle(sh("cat <&3; ls /proc/self/fd | tr '\\n' ' '"))
    # the pipe goes to corral-runc as fd 3, as conmon passes sockets for activation
    saved = os.dup(3)
    os.dup2(r, 3)
    try:
        p = subprocess.run([runc.binary, "--root", runc.root, "run", "--preserve-fds", "1",
                            "--bundle", b, tag], pass_fds=(3,), capture_output=True,
                           check=False)
    finally:
        os.dup2(saved, 3)
        os.close(saved)
        os.close(r)
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode().split("\n")
    assert out[0] == "through fd 3"
    assert out[1].split() == ["0", "1", "2", "3", "4"]  # 4: ls's own /proc/self/fd handle


def test_no_pivot(runc: Runc, bundle: MakeBundle, tag: str) -> None:
    out = runc("run", "--no-pivot", "--bundle", bundle(sh("ls / | head -1")), tag).stdout
    assert out == b"bin\n"


def test_spec_writes_a_valid_config(runc: Runc, tmp_path: object) -> None:
    d = str(tmp_path)
    runc("spec", "--bundle", d)
    from runtime.oci import spec
    with open(os.path.join(d, "config.json")) as f:
        spec.validate(json.load(f))
    p = runc("spec", "--bundle", d, check=False)
    assert p.returncode == 1 and b"exists" in p.stderr


def test_features(runc: Runc) -> None:
    doc = json.loads(runc("features").stdout)
    assert doc["linux"]["seccomp"]["enabled"] is True
    assert "CAP_SYS_ADMIN" in doc["linux"]["capabilities"]
    assert "rbind" in doc["mountOptions"] and "pid" in doc["linux"]["namespaces"]


def test_run_in_the_foreground_with_a_terminal(runc: Runc, bundle: MakeBundle,
                                               tag: str) -> None:
    """`run` with process.terminal and no --console-socket relays the container's pty to
    its own terminal, as runc does."""
    import pty
    b = edit(bundle(["/bin/sh"]), lambda c: c["process"].update(terminal=True))
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(runc.binary, [runc.binary, "--root", runc.root, "run", "--bundle", b, tag])
    import select
    out = b""
    sent = False
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if not sent and b"# " in out:  # the shell's prompt: type the commands
                os.write(fd, b"tty; echo hi-$((40+2)); exit 5\n")
                sent = True
            if not select.select([fd], [], [], 0.5)[0]:
                continue
            try:
                data = os.read(fd, 4096)
            except OSError:  # EIO: the runtime exited and closed our pty
                break
            if not data:
                break
            out += data
    finally:
        if time.monotonic() >= deadline:
            os.kill(pid, 9)
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert b"/dev/pts/0" in out and b"hi-42" in out
    assert os.waitstatus_to_exitcode(status) == 5


def test_events_report_an_oom_kill(runc: Runc, bundle: MakeBundle, tag: str) -> None:
    """`events` streams stats and an "oom" event when the kernel OOM-kills in the
    container's cgroup (memory.oom_control's oom_kill count grows)."""
    b = edit(bundle(sh("sleep 0.5; head -c 300000000 /dev/zero | tail; sleep 1000")),
             lambda c: c["linux"]["resources"].update(memory={"limit": 16 << 20}))
    runc("run", "-d", "--bundle", b, tag)
    p = subprocess.Popen([runc.binary, "--root", runc.root, "events", "--interval", "200ms",
                          tag], stdout=subprocess.PIPE)
    kinds = []
    try:
        deadline = time.monotonic() + 15
        import select
        while "oom" not in kinds and time.monotonic() < deadline:
            assert p.stdout is not None
            if select.select([p.stdout], [], [], 0.5)[0]:
                line = p.stdout.readline()
                if not line:
                    break
                kinds.append(json.loads(line)["type"])
    finally:
        p.kill()
        p.wait()
        runc("delete", "--force", tag)
    assert "stats" in kinds and "oom" in kinds
