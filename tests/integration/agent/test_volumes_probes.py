"""agent volumes and probes on the real kernel and real servers (root): tmpfs emptyDir and
secret volumes mounted and unmounted, the atomic `..data` swap under a reader, hostPath
types, http and tcp probes against servers on 127.0.0.1, an exec probe running a process."""

from __future__ import annotations

import asyncio
import http.server
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from agent import probes as p
from agent import volumes as v
from tests.unit.agent.test_env import FakeClient, b64

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def read_text(path: str) -> str:
    with open(path) as f:
        return f.read()


def mounts() -> dict[str, str]:
    with open("/proc/self/mountinfo") as f:
        out = {}
        for line in f:
            fields = line.split()
            out[fields[4]] = fields[fields.index("-") + 1]
        return out


def pod(uid: str, *vols: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "shop", "uid": uid},
            "spec": {"containers": [{"name": "app", "image": "x"}], "volumes": list(vols)}}


# ---- volumes -------------------------------------------------------------------------

def test_tmpfs_volumes_are_mounted_and_unmounted(tmp_path: Any, tag: str,
                                                 leak_check: None) -> None:
    objects = {("secrets", "shop", "db"): {"data": {"pw": b64("s3cret"), "user": b64("me")}}}
    spec = pod(tag, {"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
               {"name": "disk", "emptyDir": {}},
               {"name": "creds", "secret": {"secretName": "db",
                                            "items": [{"key": "pw", "path": "db/pw"}]}},
               {"name": "all", "secret": {"secretName": "db", "defaultMode": 0o440}})
    pods = str(tmp_path / "pods")
    try:
        vols = asyncio.run(v.prepare(spec, pod_dir=pods, client=FakeClient(objects)))
        m = mounts()
        assert m[vols["cache"].host_path] == "tmpfs" and vols["cache"].tmpfs
        assert vols["disk"].host_path not in m
        assert m[vols["creds"].host_path] == "tmpfs" and m[vols["all"].host_path] == "tmpfs"
        st = os.statvfs(vols["cache"].host_path)
        assert st.f_blocks * st.f_frsize == 8 * 1024 * 1024
        pw = os.path.join(vols["creds"].host_path, "db", "pw")
        assert read_text(pw) == "s3cret"
        assert stat.S_IMODE(os.stat(pw).st_mode) == 0o400  # corral's default for secrets
        assert stat.S_IMODE(os.stat(os.path.join(vols["all"].host_path, "user")).st_mode) \
            == 0o440
        # the agent restarts: prepare again mounts nothing twice
        asyncio.run(v.prepare(spec, pod_dir=pods, client=FakeClient(objects)))
        with open("/proc/self/mountinfo") as f:
            assert sum(vols["cache"].host_path in line.split()[4] for line in f) == 1
    finally:
        v.teardown(tag, pod_dir=pods)
    assert not any(k.startswith(pods) for k in mounts())
    assert os.listdir(pods) == []


def test_readers_never_see_a_missing_or_mixed_file(tmp_path: Any, tag: str,
                                                   leak_check: None) -> None:
    size = 256 * 1024  # several pages: a torn write would show two versions in one file

    def content(n: int) -> str:
        return (f"v{n:06d}\n" * (size // 8))[:size]

    objects: dict[tuple[str, str, str], dict[str, Any]] = {
        ("secrets", "shop", "s"): {"data": {"a": b64(content(0)), "b": b64(content(0))}}}
    spec = pod(tag, {"name": "s", "secret": {"secretName": "s"}})
    pods = str(tmp_path / "pods")
    client = FakeClient(objects)
    problems: list[str] = []
    reads = [0]
    stop = threading.Event()
    try:
        vols = asyncio.run(v.prepare(spec, pod_dir=pods, client=client))
        path = vols["s"].host_path

        def reader() -> None:
            last = 0
            while not stop.is_set():
                for key in ("a", "b"):
                    try:
                        with open(os.path.join(path, key)) as f:
                            text = f.read()
                    except OSError as err:
                        problems.append(f"{key}: {err}")
                        continue
                    versions = set(text.split("\n")) - {""}
                    if len(text) != size or len(versions) != 1:
                        problems.append(f"{key}: mixed {sorted(versions)[:3]} len {len(text)}")
                        continue
                    n = int(versions.pop()[1:])
                    if n < last:
                        problems.append(f"{key}: went back from {last} to {n}")
                    last = n
                    reads[0] += 1

        threads = [threading.Thread(target=reader) for _ in range(2)]
        for t in threads:
            t.start()

        async def update() -> None:
            for n in range(1, 60):
                objects[("secrets", "shop", "s")] = {
                    "data": {"a": b64(content(n)), "b": b64(content(n))}}
                assert await v.refresh(spec, pod_dir=pods, client=client) == ["s"]
                await asyncio.sleep(0.002)
        asyncio.run(update())
        stop.set()
        for t in threads:
            t.join()
        assert not problems, problems[:5]
        assert reads[0] > 50
        assert read_text(os.path.join(path, "a")) == content(59)
        # older versions removed: the current one and the one it replaced are left
        data_dirs = [n for n in os.listdir(path) if n.startswith("..") and n != "..data"]
        assert len(data_dirs) == 2 and os.readlink(os.path.join(path, "..data")) in data_dirs
    finally:
        stop.set()
        v.teardown(tag, pod_dir=pods)


@pytest.fixture
def host_things(tmp_path: Any) -> Iterator[dict[str, str]]:
    d = tmp_path / "host"
    d.mkdir()
    (d / "file").write_text("x")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(d / "sock"))
    os.mknod(str(d / "blk"), stat.S_IFBLK | 0o600, os.makedev(7, 200))
    yield {"dir": str(d), "file": str(d / "file"), "sock": str(d / "sock"),
           "chr": "/dev/null", "blk": str(d / "blk"), "new": str(d / "new"),
           "nodir": str(d / "nodir" / "f")}
    sock.close()


@pytest.mark.parametrize(("path", "kind", "problem"), [
    pytest.param("dir", "Directory", None, id="directory"),
    pytest.param("file", "Directory", "is not a directory", id="file-is-not-directory"),
    pytest.param("new", "Directory", "does not exist", id="directory-missing"),
    pytest.param("new", "DirectoryOrCreate", None, id="directory-created"),
    pytest.param("file", "File", None, id="file"),
    pytest.param("dir", "File", "is not a file", id="dir-is-not-file"),
    pytest.param("new", "FileOrCreate", None, id="file-created"),
    pytest.param("nodir", "FileOrCreate", "its directory does not either", id="no-parent"),
    pytest.param("sock", "Socket", None, id="socket"),
    pytest.param("file", "Socket", "is not a socket", id="file-is-not-socket"),
    pytest.param("chr", "CharDevice", None, id="char-device"),
    pytest.param("blk", "CharDevice", "is not a character device", id="block-is-not-char"),
    pytest.param("blk", "BlockDevice", None, id="block-device"),
    pytest.param("chr", "BlockDevice", "is not a block device", id="char-is-not-block"),
    pytest.param("new", "", None, id="no-type-no-check"),
])
def test_host_path_types(tmp_path: Any, host_things: dict[str, str], path: str, kind: str,
                         problem: str | None) -> None:
    spec = pod("uid-h", {"name": "h", "hostPath": {"path": host_things[path], "type": kind}})
    run = v.prepare(spec, pod_dir=str(tmp_path / "pods"), client=FakeClient({}))
    if problem:
        with pytest.raises(v.VolumeError, match=rf"^Pod web: volumes\[h\].hostPath.path: "
                                                rf".*{problem}"):
            asyncio.run(run)
        return
    vols = asyncio.run(run)
    assert vols["h"] == v.Volume("h", "hostPath", host_things[path], False)
    if kind == "DirectoryOrCreate":
        assert os.path.isdir(host_things[path])
    if kind == "FileOrCreate":
        assert os.path.isfile(host_things[path])
        assert stat.S_IMODE(os.stat(host_things[path]).st_mode) & 0o644 == 0o644
    v.teardown("uid-h", pod_dir=str(tmp_path / "pods"))
    assert os.path.lexists(host_things[path]) == (kind != "")  # never removed by teardown


# ---- probes --------------------------------------------------------------------------

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        port = self.server.server_address[1]  # type: ignore[index]
        routes = {
            "/ok": (200, {}),
            "/created": (204, {}),
            "/fail": (500, {}),
            "/missing": (404, {}),
            "/hop": (302, {"Location": "/ok"}),
            "/hop-fail": (301, {"Location": f"http://127.0.0.1:{port}/fail"}),
            "/away": (302, {"Location": f"http://localhost:{port}/fail"}),
            "/loop": (302, {"Location": "/loop"}),
            "/header": ((200, {}) if self.headers.get("X-Probe") == "yes"
                        and self.headers.get("Host") == "svc.local" else (403, {})),
        }
        if self.path == "/slow":
            time.sleep(1.5)
        status, headers = routes.get(self.path, (200, {}))
        self.send_response(status)
        for k, val in headers.items():
            self.send_header(k, val)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"hi")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = False  # server_close() joins the handler threads
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.mark.parametrize(("get", "want", "message"), [
    pytest.param({"path": "/ok"}, p.Result.SUCCESS, "HTTP 200", id="200"),
    pytest.param({"path": "/created"}, p.Result.SUCCESS, "HTTP 204", id="204"),
    pytest.param({"path": "/fail"}, p.Result.FAILURE, "HTTP probe failed with statuscode: 500",
                 id="500"),
    pytest.param({"path": "/missing"}, p.Result.FAILURE, "HTTP probe failed with statuscode: "
                 "404", id="404"),
    pytest.param({"path": "/hop"}, p.Result.SUCCESS, "HTTP 200", id="same-host-redirect"),
    pytest.param({"path": "/hop-fail"}, p.Result.FAILURE, "HTTP probe failed with "
                 "statuscode: 500", id="redirect-followed-to-failure"),
    pytest.param({"path": "/away"}, p.Result.SUCCESS, "HTTP 302: redirect to another host",
                 id="other-host-redirect-not-followed"),
    pytest.param({"path": "/loop"}, p.Result.FAILURE, "stopped after 10 redirects",
                 id="redirect-loop"),
    pytest.param({"path": "/header", "httpHeaders": [{"name": "X-Probe", "value": "yes"},
                                                     {"name": "Host", "value": "svc.local"}]},
                 p.Result.SUCCESS, "HTTP 200", id="headers"),
    pytest.param({"path": "/header"}, p.Result.FAILURE, "HTTP probe failed with statuscode: "
                 "403", id="headers-missing"),
    pytest.param({"path": "/slow"}, p.Result.FAILURE, "probe timed out after 1s",
                 id="timeout"),
    pytest.param({"path": "/ok", "port": "web"}, p.Result.SUCCESS, "HTTP 200",
                 id="named-port"),
])
def test_http_probe(http_port: int, get: dict[str, Any], want: p.Result,
                    message: str) -> None:
    target = p.Target("cid", pod_ip="127.0.0.1", ports={"web": http_port})
    got = asyncio.run(p.check({"httpGet": {"port": http_port, **get}, "timeoutSeconds": 1},
                              target))
    assert got[0] is want and got[1].startswith(message), got


def test_tcp_probe(leak_check: None) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    target = p.Target("cid", pod_ip="127.0.0.1")
    spec = {"tcpSocket": {"port": port}, "timeoutSeconds": 1}
    try:
        assert asyncio.run(p.check(spec, target))[0] is p.Result.SUCCESS
    finally:
        listener.close()
    result, message = asyncio.run(p.check(spec, target))
    assert result is p.Result.FAILURE and "probe failed" in message


def test_readiness_worker_follows_a_real_server(http_port: int) -> None:
    """A ProbeWorker on real time and a real server: ready, then not after 2 failures."""
    updates: list[p.ProbeUpdate] = []
    spec = {"httpGet": {"port": http_port, "path": "/ok"}, "periodSeconds": 1,
            "failureThreshold": 2}
    w = p.ProbeWorker(p.Kind.READINESS, spec, p.Target("cid", pod_ip="127.0.0.1",
                                                       started_at=time.monotonic()),
                      container="app", on_result=updates.append,
                      sleep=lambda s: asyncio.sleep(s / 20))

    async def go() -> None:
        task = asyncio.create_task(w.run())
        while not updates:
            await asyncio.sleep(0.01)
        spec["httpGet"] = {"port": http_port, "path": "/fail"}
        while len(updates) < 2:
            await asyncio.sleep(0.01)
        w.stop()
        await asyncio.wait_for(task, 5)
    asyncio.run(asyncio.wait_for(go(), 20))
    assert [u.result for u in updates] == [p.Result.SUCCESS, p.Result.FAILURE]


async def exec_sync(container_id: str, cmd: list[str], timeout: float) -> tuple[int, bytes]:
    """What the worker does through CRI ExecSync, here as a process of our own (killed
    and reaped by subprocess.run when it outlives TIMEOUT)."""
    try:
        done = await asyncio.to_thread(subprocess.run, cmd, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise TimeoutError from None
    return done.returncode, done.stdout


@pytest.mark.parametrize(("command", "want", "message"), [
    pytest.param(["sh", "-c", "echo alive"], p.Result.SUCCESS, "alive\n", id="exit-0"),
    pytest.param(["sh", "-c", "echo dead; exit 3"], p.Result.FAILURE,
                 "command ['sh', '-c', 'echo dead; exit 3'] exited 3: dead", id="exit-3"),
    pytest.param([sys.executable, "-c", "import time; time.sleep(5)", "TAG"], p.Result.FAILURE,
                 "command", id="timeout-kills-it"),
])
def test_exec_probe_runs_a_real_process(tag: str, leak_check: None, command: list[str],
                                        want: p.Result, message: str) -> None:
    command = [c.replace("TAG", tag) for c in command]
    started = time.monotonic()
    result, text = asyncio.run(p.check({"exec": {"command": command}, "timeoutSeconds": 1},
                                       p.Target("cid"), exec_sync=exec_sync))
    assert result is want and text.startswith(message), text
    assert time.monotonic() - started < 4
    if command[-1] == tag:
        assert "timed out after 1s" in text
