"""CRI Attach with stdin and tty against a real corral-runtimed, and the task layer under it.

Through CRI (a real daemon, busybox containers, our WebSocket client cri/stream.py):
stdin echoed by `cat` and in its CRI log; the shim keeps stdin while no one is attached;
stdin_once ends `cat` when the first session leaves; a tty `sh` sees a resize; the daemon
killed with -9 and started again attaches to the same stdin (the shim held the pipe).
Through TaskManager: the same stdin and tty with the compiled holder and with the Python
shim (holder=False), and the errors that name the container and the field.
"""

from __future__ import annotations

import asyncio
import fcntl
import glob
import os
import select
import struct
import subprocess
import termios
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from runtime.service import bundle as B
from runtime.service.cri import api_pb2 as pb
from runtime.service.cri import stream as W
from runtime.service.cri.client import CRIClient, InvalidArgument
from runtime.service.shim import protocol as P
from runtime.service.tasks import FailedPrecondition, TaskManager, TaskState, holder_path
from tests.integration.runtime.service.test_cri_containerd import (
    container_config,
    sandbox_config,
    until,
)
from tests.integration.runtime.service.test_runtimed import PYTHON, ROOT, Runtimed

NS = "default"


# ---- through CRI --------------------------------------------------------------------------


async def pod_with(cri: CRIClient, rt: Runtimed, image: str, command: list[str], *,
                   stdin: bool = True, stdin_once: bool = False, tty: bool = False
                   ) -> tuple[str, str]:
    """(sandbox id, container id) of a started container with the given stdio."""
    await cri.pull_image(pb.ImageSpec(image=image))
    sandbox = sandbox_config(rt, "web")
    pod = await cri.run_pod_sandbox(sandbox)
    config = container_config(image, "main", command)
    config.stdin, config.stdin_once, config.tty = stdin, stdin_once, tty
    cid = await cri.create_container(pod, config, sandbox_config=sandbox)
    await cri.start_container(cid)
    return pod, cid


async def read_until(s: W.ChannelStream, want: bytes, timeout: float = 15) -> bytes:
    """Stdout until WANT is in it."""
    got = b""
    deadline = time.monotonic() + timeout
    while want not in got:
        frame = await asyncio.wait_for(s.recv(), max(0.1, deadline - time.monotonic()))
        assert frame is not None, f"session closed; stdout so far {got!r}"
        if frame[0] == W.STDOUT:
            got += frame[1]
    return got


def log_of(rt: Runtimed, name: str = "main") -> str:
    paths = glob.glob(os.path.join(rt.log_dir, "*", f"{name}.log"))
    assert len(paths) == 1, paths
    with open(paths[0], newline="") as f:
        return f.read()


async def echo_once(cri: CRIClient, cid: str, text: bytes) -> None:
    s = await W.connect(await cri.attach(cid, stdin=True))
    try:
        await s.send_stdin(text)
        assert await read_until(s, text) == text
    finally:
        await s.close()


@pytest.mark.asyncio
async def test_attach_stdin_reaches_cat_and_its_log(cri: CRIClient, rtd: Runtimed,
                                                    busybox: str) -> None:
    _, cid = await pod_with(cri, rtd, busybox, ["cat"])
    await echo_once(cri, cid, b"hello\n")
    assert " stdout F hello\n" in log_of(rtd)
    # no one attached: the shim still holds stdin, cat sees no EOF and runs on
    await asyncio.sleep(0.5)
    status = (await cri.container_status(cid)).status
    assert status.state == pb.CONTAINER_RUNNING
    await echo_once(cri, cid, b"again\n")
    assert " stdout F again\n" in log_of(rtd)


@pytest.mark.asyncio
async def test_stdin_once_ends_cat_when_the_session_leaves(cri: CRIClient, rtd: Runtimed,
                                                           busybox: str) -> None:
    _, cid = await pod_with(cri, rtd, busybox, ["cat"], stdin_once=True)
    await echo_once(cri, cid, b"once\n")

    async def exited() -> bool:
        return (await cri.container_status(cid)).status.state == pb.CONTAINER_EXITED
    await until("cat to see EOF after the stdin_once session", exited)
    assert (await cri.container_status(cid)).status.exit_code == 0
    assert " stdout F once\n" in log_of(rtd)


@pytest.mark.asyncio
async def test_tty_echoes_and_takes_a_resize(cri: CRIClient, rtd: Runtimed,
                                             busybox: str) -> None:
    _, cid = await pod_with(cri, rtd, busybox, ["sh"], tty=True)
    s = await W.connect(await cri.attach(cid, stdin=True, tty=True))
    try:
        await s.resize(100, 30)
        await s.send_stdin(b"echo tty-$((6*7))\r")
        await read_until(s, b"tty-42\r\n/ # ")  # the prompt, before its line ends
        await s.send_stdin(b"stty size; tty\r")
        got = await read_until(s, b"30 100\r\n")
        got += await read_until(s, b"/dev/pts/")
    finally:
        await s.close()
    log = log_of(rtd)
    assert " stdout F 30 100\r\n" in log, log  # a tty's output is the log's stdout
    assert " stderr " not in log


@pytest.mark.asyncio
async def test_attach_after_the_daemon_was_killed(cri: CRIClient, rtd: Runtimed,
                                                  busybox: str) -> None:
    _, cid = await pod_with(cri, rtd, busybox, ["cat"])
    await echo_once(cri, cid, b"before\n")
    rtd.kill9()
    rtd.start()
    async with CRIClient(rtd.socket, timeout=60) as again:
        await echo_once(again, cid, b"after\n")
    assert " stdout F after\n" in log_of(rtd)


@pytest.mark.asyncio
async def test_stdin_on_a_container_without_it_names_the_field(cri: CRIClient, rtd: Runtimed,
                                                               busybox: str) -> None:
    _, cid = await pod_with(cri, rtd, busybox, ["sleep", "60"], stdin=False)
    with pytest.raises(InvalidArgument, match=f"Container {cid[:13]}: stdin: the container "
                                              "was created without stdin") as e:
        await cri.attach(cid, stdin=True)
    assert e.value.code == "FAILED_PRECONDITION"
    url = await cri.attach(cid)  # without stdin: as before, output only
    assert url.startswith("http://127.0.0.1:")


# ---- corral-ctr run -i / -t: CRI Attach from a command line --------------------------------


def ctr_command(rtd: Runtimed, *args: str) -> tuple[list[str], dict[str, str]]:
    env = {"PATH": os.environ["PATH"], "CORRAL_RUNTIME_SOCKET": rtd.socket}
    return [PYTHON, "-m", "runtime.service.ctr.main", *args], env


def pulled(rtd: Runtimed, image: str) -> str:
    argv, env = ctr_command(rtd, "pull", image)
    subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, timeout=120, check=True)
    return image


def test_ctr_run_interactive_pipes_stdin(rtd: Runtimed, busybox: str) -> None:
    argv, env = ctr_command(rtd, "run", "--rm", "-i", pulled(rtd, busybox), "cat-i", "cat")
    p = subprocess.run(argv, input=b"hello\nworld\n", capture_output=True, env=env,
                       cwd=ROOT, timeout=120, check=False)
    assert (p.returncode, p.stdout) == (0, b"hello\nworld\n"), p.stderr  # EOF ended cat


def test_ctr_run_tty_takes_our_size_and_input(rtd: Runtimed, busybox: str) -> None:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 25, 90, 0, 0))
    argv, env = ctr_command(rtd, "run", "--rm", "-it", pulled(rtd, busybox), "sh-t", "sh", "-c",
                            "read x; stty size; echo got-$x")
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=ROOT,
                            start_new_session=True)
    os.close(slave)
    out = b""
    try:
        os.write(master, b"hi\r")  # typed ahead: ctr reads it once attached
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    out += os.read(master, 4096)
                except OSError:  # EIO: ctr exited and closed the terminal
                    break
        assert proc.wait(10) == 0, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert b"25 90\r\n" in out and b"got-hi" in out, out


# ---- through TaskManager: the holder and the Python shim -----------------------------------


Spec = Callable[..., dict[str, Any]]
HOLDER = [pytest.param(True, id="holder"), pytest.param(False, id="python-shim")]


@pytest.fixture
def spec(rootfs: str, tag: str) -> Spec:
    def make(command: tuple[str, ...], flags: str) -> dict[str, Any]:
        """tasks.run's spec= and stdio keywords for COMMAND with FLAGS ("stdin,tty")."""
        on = flags.split(",")
        cfg = B.ContainerConfig(name="main", command=command, cgroups_path=f"/{tag}",
                                stdin="stdin" in on, stdin_once="stdin_once" in on,
                                tty="tty" in on)
        return {"spec": B.build_spec(config=cfg, image={}, rootfs=rootfs),
                "stdin": cfg.stdin, "stdin_once": cfg.stdin_once, "tty": cfg.tty}
    return make


@pytest.fixture(params=HOLDER)
def tasks(request: pytest.FixtureRequest, tmp_path: Any, leak_check: None
          ) -> Iterator[TaskManager]:
    tm = TaskManager(str(tmp_path / "state"), holder=request.param)
    yield tm
    for info in tm.list():
        tm.delete(info.namespace, info.id, force=True)
    tm.close()


def wait_log(path: str, text: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while True:
        with open(path, newline="") as f:  # a tty's lines end "\r\n": keep the "\r"
            log = f.read()
        if text in log:
            return log
        assert time.monotonic() < deadline, f"{text!r} not in {log!r}"
        time.sleep(0.05)


def test_task_stdin_is_held_between_attaches(tasks: TaskManager, spec: Spec, tag: str) -> None:
    info = tasks.run(namespace=NS, container_id=tag, **spec(("cat",), "stdin"))
    assert tasks.stdio(NS, tag) == {"stdin": True, "stdin_once": False, "tty": False}
    for word in ("one", "two"):
        fd, tty = tasks.attach(NS, tag)
        assert not tty
        os.write(fd, word.encode() + b"\n")
        os.close(fd)
        wait_log(info.log_path, f" stdout F {word}\n")
    time.sleep(0.3)
    assert tasks.get(NS, tag).state == TaskState.RUNNING  # no EOF: the shim holds stdin
    with open(os.path.join(tasks.task_dir(NS, tag), P.PID)) as f:
        exe = os.readlink(f"/proc/{int(f.read())}/exe")
    assert (exe == holder_path()) == (tasks.holder is not None)  # who answered "attach"


def test_task_stdin_once(tasks: TaskManager, spec: Spec, tag: str) -> None:
    tasks.run(namespace=NS, container_id=tag, **spec(("cat",), "stdin,stdin_once"))
    fd, _ = tasks.attach(NS, tag)
    os.write(fd, b"x\n")
    os.close(fd)
    assert tasks.wait(NS, tag, timeout=10).code == 0
    with pytest.raises(FailedPrecondition, match=rf"Task {NS}/{tag}: attach: .*not running"):
        tasks.attach(NS, tag)


def test_task_stdin_once_second_attach_names_the_field(tasks: TaskManager, spec: Spec,
                                                       tag: str) -> None:
    tasks.run(namespace=NS, container_id=tag,
              **spec(("sh", "-c", "exec 0</dev/null; sleep 60"), "stdin,stdin_once"))
    fd, _ = tasks.attach(NS, tag)
    try:
        with pytest.raises(FailedPrecondition,
                           match=rf"container {tag}: stdin: closed: stdin_once"):
            tasks.attach(NS, tag)
    finally:
        os.close(fd)


@pytest.mark.parametrize("runtime", ["corral-runc", "runc"])  # crun: no hybrid cgroups
def test_task_tty_resize(tasks: TaskManager, spec: Spec, tag: str, runtime: str) -> None:
    if runtime not in tasks.runtimes:
        pytest.fail(f"{runtime} is not installed")
    info = tasks.run(namespace=NS, container_id=tag, **spec(("sh",), "stdin,tty"),
                     runtime=runtime)
    fd, tty = tasks.attach(NS, tag)
    try:
        assert tty and os.isatty(fd)
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
        os.write(fd, b"stty size\r")
        log = wait_log(info.log_path, " stdout F 33 111\r\n")
    finally:
        os.close(fd)
    assert " stderr " not in log


@pytest.mark.parametrize(("flags", "match"), [
    pytest.param("", "stdin: the container was created without stdin", id="no-stdin"),
    pytest.param("tty", "stdin: the container was created without stdin", id="tty-only"),
    pytest.param("stdin_once", "stdin: the container was created without stdin",
                 id="once-without-stdin"),
])
def test_task_attach_without_stdin(tasks: TaskManager, spec: Spec, tag: str, flags: str,
                                   match: str) -> None:
    tasks.run(namespace=NS, container_id=tag, **spec(("sleep", "60"), flags))
    assert tasks.stdio(NS, tag) == {"stdin": False, "stdin_once": False, "tty": flags == "tty"}
    with pytest.raises(FailedPrecondition, match=f"Task {NS}/{tag}: {match}"):
        tasks.attach(NS, tag)
