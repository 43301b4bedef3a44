"""containerd's runc shim and podman (through conmon) with corral-runc as their runtime.

    containerd  one daemon for the module: its own root, state, socket and config (CRI
                plugin off). Each test gets a containerd namespace named after its tag,
                imports a busybox OCI archive built here, and runs
                `ctr run --runc-binary corral-runc`; the shim then calls
                `corral-runc --root /run/containerd/runc/<tag> --log ... create|start|...`.
    podman      --root/--runroot/--tmpdir under a temp dir of each test's own, vfs
                storage, no network, cgroupfs with --cgroup-parent /<tag>; the image
                comes from `podman import`. conmon and podman call
                `corral-runc create|start|exec|kill|delete ...` with corral-runc's
                default --root.

Tests check what the client reports (exit codes, output, task and container status) and,
where that is about one container, what corral-runc's own `state` says, which proves that
corral-runc (not the system's runc) ran it. Containers, cgroups and mounts carry the tag, so
the leak check (conftest) sees whatever a client leaves behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import platform
import select
import shutil
import struct
import subprocess
import tarfile
import tempfile
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import RUNC

pytestmark = pytest.mark.integration

IMAGE = "docker.io/library/corral-busybox:latest"
# This host's root lacks CAP_SYS_RESOURCE and its hard NOFILE limit is 20000: podman's
# default ulimits exceed that, and setrlimit fails in any runtime.
ULIMITS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]
# Directories on the host that the clients create and never remove (containerd's shim
# sockets, runc roots and fifos; netavark's run dir; corral-runc's default root).
HOST_DIRS = ["/run/containerd/fifo", "/run/containerd/runc", "/run/containerd/s",
             "/run/containerd", "/run/containers/networks", "/run/containers",
             "/run/corral-runc"]


# -- running commands ------------------------------------------------------------------

def run(argv: list[str], *, check: bool = True,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """ARGV with output in files, not pipes: a daemon it starts (shim, conmon) must not
    hold our pipe open."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                           timeout=timeout, check=False)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {p.returncode}:\n{stderr}{stdout}")
    return subprocess.CompletedProcess(argv, p.returncode, stdout, stderr)


def run_in_pty(argv: list[str], *, timeout: float = 30) -> tuple[int, str]:
    """ARGV with a pseudo-terminal as stdin, stdout and stderr, as an interactive `ctr run
    -t` needs: returns its exit code and everything it wrote."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    try:
        p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave,
                             start_new_session=True)
    finally:
        os.close(slave)
    out = b""
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 4096)
                except OSError:  # EIO: the last slave fd is closed
                    data = b""
                if not data:
                    break
                out += data
            elif p.poll() is not None:
                break
        try:
            rc = p.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise AssertionError(
                f"{' '.join(argv)} did not finish in {timeout}s: {out!r}") from None
    finally:
        os.close(master)
    return rc, out.decode(errors="replace")


def runc_state(root: str | None, cid: str) -> dict[str, object] | None:
    """corral-runc's own view of container CID (None if it does not know it)."""
    p = run([RUNC, *(["--root", root] if root else []), "state", cid], check=False)
    if p.returncode != 0:
        assert "does not exist" in p.stderr, p.stderr
        return None
    state: dict[str, object] = json.loads(p.stdout)
    return state


def wait_for(what: str, probe: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def remove_cgroup_dirs(*relative: str, timeout: float = 5) -> None:
    """rmdir /sys/fs/cgroup/*/REL for each REL, children first: the empty parents the
    clients make. A cgroup still in use is left for the leak check to report."""
    deadline = time.monotonic() + timeout
    for rel in relative:
        for top in sorted(os.listdir("/sys/fs/cgroup")):
            path = os.path.join("/sys/fs/cgroup", top, rel.strip("/"))
            while os.path.isdir(path):
                try:
                    os.rmdir(path)
                except OSError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.05)  # its last process (conmon, a shim) is exiting


def unmount_under(path: str) -> None:
    with open("/proc/self/mountinfo") as f:
        targets = [line.split()[4] for line in f]
    for t in sorted((t for t in targets if t.startswith(path + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", t], check=False)


# -- a busybox image, built here ---------------------------------------------------------

def layer_tar(rootfs: str, dest: str) -> str:
    with tarfile.open(dest, "w") as t:
        t.add(rootfs, arcname=".")
    return dest


def oci_archive(layer: str, ref: str, dest: str) -> str:
    """An OCI image layout (as `ctr images import` takes it) with LAYER as its one layer."""
    blobs: dict[str, bytes] = {}

    def blob(media_type: str, data: bytes) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

    with open(layer, "rb") as f:
        layer_data = f.read()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    config = {"architecture": arch, "os": "linux",
              "config": {"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]},
              "rootfs": {"type": "layers",
                         "diff_ids": ["sha256:" + hashlib.sha256(layer_data).hexdigest()]}}
    manifest = {"schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": blob("application/vnd.oci.image.config.v1+json",
                               json.dumps(config).encode()),
                "layers": [blob("application/vnd.oci.image.layer.v1.tar", layer_data)]}
    entry = blob("application/vnd.oci.image.manifest.v1+json", json.dumps(manifest).encode())
    entry["platform"] = {"architecture": arch, "os": "linux"}
    entry["annotations"] = {"io.containerd.image.name": ref,
                            "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[1]}
    index = {"schemaVersion": 2, "manifests": [entry]}
    with tarfile.open(dest, "w") as t:
        def put(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            t.addfile(info, io.BytesIO(data))
        put("oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        put("index.json", json.dumps(index).encode())
        for digest, data in blobs.items():
            put(f"blobs/sha256/{digest}", data)
    return dest


@pytest.fixture(scope="module")
def image_files(rootfs: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(rootfs tar for `podman import`, OCI archive for `ctr images import`)."""
    d = tmp_path_factory.mktemp("corral-image")
    layer = layer_tar(rootfs, str(d / "rootfs.tar"))
    return layer, oci_archive(layer, IMAGE, str(d / "oci.tar"))


@pytest.fixture(scope="module", autouse=True)
def host_dirs() -> Iterator[None]:
    """Remove the (empty) host directories the clients made, if they were not there."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    new = [d for d in HOST_DIRS if not os.path.exists(d)]
    yield
    for d in new:  # children before parents: HOST_DIRS is in that order
        try:
            os.rmdir(d)
        except OSError:
            pass


# -- containerd --------------------------------------------------------------------------

class Containerd:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.address = str(base / "ctd.sock")
        self.fifo_dir = str(base / "fifo")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        config = self.base / "config.toml"
        config.write_text(
            "version = 2\n"
            f'root = "{self.base}/root"\nstate = "{self.base}/state"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\n  address = "{self.address}"\n'
            f'[ttrpc]\n  address = "{self.address}.ttrpc"\n'
            f'[plugins."io.containerd.internal.v1.opt"]\n  path = "{self.base}/opt"\n')
        with open(self.base / "containerd.log", "wb") as log:
            self.proc = subprocess.Popen(
                ["containerd", "--root", f"{self.base}/root", "--state", f"{self.base}/state",
                 "--address", self.address, "--config", str(config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + 30
        while run(["ctr", "-a", self.address, "version"], check=False).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("containerd did not start:\n" + self.log())
            time.sleep(0.1)

    def log(self) -> str:
        return (self.base / "containerd.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in self.shims():  # left by a test that could not clean up
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        unmount_under(str(self.base))
        shutil.rmtree(self.base, ignore_errors=True)

    def shims(self) -> list[int]:
        """The shims this daemon started: their command line names its socket."""
        pids = []
        for name in os.listdir("/proc"):
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except (OSError, ValueError):
                continue
            if b"-address" in argv and self.address.encode() in argv and name.isdigit():
                pids.append(int(name))
        return pids


@pytest.fixture(scope="module")
def containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    for binary in ("containerd", "ctr", "containerd-shim-runc-v2"):
        if shutil.which(binary) is None:
            pytest.skip(f"{binary} is not installed")
    daemon = Containerd(tmp_path_factory.mktemp("corral-ctd"))
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.stop()


class Ctr:
    """ctr against our containerd, in the namespace TAG (so cgroups are /<tag>/<id>)."""

    def __init__(self, daemon: Containerd, namespace: str) -> None:
        self.daemon = daemon
        self.namespace = namespace
        self.runc_root = f"/run/containerd/runc/{namespace}"  # where the shim points --root

    def argv(self, *args: str) -> list[str]:
        return ["ctr", "-a", self.daemon.address, "-n", self.namespace, *args]

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(self.argv(*args), check=check)

    def run_argv(self, cid: str, *command: str, flags: tuple[str, ...] = ()) -> list[str]:
        return self.argv("run", "--runc-binary", RUNC, "--fifo-dir", self.daemon.fifo_dir,
                         *flags, IMAGE, cid, *command)

    def tasks(self) -> dict[str, tuple[int, str]]:
        """`ctr task ls`: id -> (pid, status)."""
        rows = [line.split() for line in self("task", "ls").stdout.splitlines()[1:]]
        return {r[0]: (int(r[1]), r[2]) for r in rows if len(r) == 3}

    def cleanup(self) -> None:
        for cid in self("containers", "ls", "-q", check=False).stdout.split():
            self("task", "delete", "--force", cid, check=False)
            self("containers", "delete", cid, check=False)
        if os.path.isdir(self.runc_root):  # what the shim did not delete
            for cid in os.listdir(self.runc_root):
                run([RUNC, "--root", self.runc_root, "delete", "--force", cid], check=False)
            try:
                os.rmdir(self.runc_root)
            except OSError:
                pass
        self("images", "rm", "--sync", IMAGE, check=False)
        self("namespaces", "rm", self.namespace, check=False)
        remove_cgroup_dirs(self.namespace)


@pytest.fixture
def ctr(containerd: Containerd, image_files: tuple[str, str], tag: str,
        leak_check: None) -> Iterator[Ctr]:
    c = Ctr(containerd, tag)
    try:
        c("images", "import", image_files[1])
        yield c
    finally:
        c.cleanup()


def test_ctr_run_rm_reports_exit_code_and_output(ctr: Ctr, tag: str) -> None:
    p = run(ctr.run_argv(f"{tag}-true", "/bin/true", flags=("--rm",)), check=False)
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")
    p = run(ctr.run_argv(f"{tag}-exit3", "sh", "-c", "echo out pid=$$; echo err >&2; exit 3",
                         flags=("--rm",)), check=False)
    assert p.returncode == 3, p.stderr
    assert p.stdout == "out pid=1\n"  # its own pid namespace
    assert p.stderr == "err\n"
    assert ctr("containers", "ls", "-q").stdout == ""
    assert os.listdir(ctr.runc_root) == []  # the shim deleted them through corral-runc


def test_ctr_detached_lifecycle(ctr: Ctr, tag: str) -> None:
    cid = f"{tag}-sleep"
    run(ctr.run_argv(cid, "sleep", "1000", flags=("-d",)))
    pid, status = ctr.tasks()[cid]
    assert status == "RUNNING"
    state = runc_state(ctr.runc_root, cid)
    assert state is not None and (state["status"], state["pid"]) == ("running", pid)
    with open(f"/sys/fs/cgroup/pids/{tag}/{cid}/cgroup.procs") as f:
        assert int(f.read().split()[0]) == pid  # cgroupsPath /<namespace>/<id>

    p = ctr("task", "exec", "--exec-id", "e1", "--fifo-dir", ctr.daemon.fifo_dir, cid,
            "sh", "-c", "echo hello from exec; tr '\\0' ' ' </proc/1/cmdline; echo; exit 4",
            check=False)
    assert p.returncode == 4, p.stderr
    assert p.stdout.splitlines() == ["hello from exec", "sleep 1000 "]

    ctr("task", "exec", "--detach", "--exec-id", "e2", "--fifo-dir", ctr.daemon.fifo_dir,
        cid, "sleep", "999")
    ps = ctr("task", "ps", cid).stdout.split()
    pids = {int(x) for x in ps[2::2]}
    assert ps[:2] == ["PID", "INFO"] and pid in pids and len(pids) == 2

    ctr("task", "pause", cid)
    assert ctr.tasks()[cid] == (pid, "PAUSED")
    state = runc_state(ctr.runc_root, cid)
    assert state is not None and state["status"] == "paused"
    ctr("task", "resume", cid)
    assert ctr.tasks()[cid] == (pid, "RUNNING")

    ctr("task", "kill", "-s", "SIGKILL", cid)
    wait_for("task STOPPED", lambda: ctr.tasks()[cid][1] == "STOPPED")
    p = ctr("task", "delete", cid)
    assert "exit code 137" in p.stderr  # ctr reports the init's SIGKILL
    assert cid not in ctr.tasks()
    assert runc_state(ctr.runc_root, cid) is None
    assert not os.path.exists(f"/sys/fs/cgroup/pids/{tag}/{cid}")
    ctr("containers", "delete", cid)
    assert ctr("containers", "ls", "-q").stdout == ""


def test_ctr_run_missing_program_fails_and_leaves_nothing(ctr: Ctr, tag: str) -> None:
    p = run(ctr.run_argv(f"{tag}-missing", "/nonexistent", flags=("--rm",)), check=False)
    assert p.returncode != 0
    assert "OCI runtime create failed" in p.stderr
    assert "'/nonexistent': no such file or directory" in p.stderr
    assert ctr("containers", "ls", "-q").stdout == ""
    assert os.listdir(ctr.runc_root) == []


def test_ctr_run_tty(ctr: Ctr, tag: str) -> None:
    # (ctr sizes the terminal only after start: `stty size` would race with it.)
    rc, out = run_in_pty(ctr.run_argv(f"{tag}-tty", "sh", "-c", "tty; exit 5",
                                      flags=("--rm", "--tty")))
    assert rc == 5, out
    assert "/dev/pts/0" in out  # the pty made inside the container (its own devpts)


def test_ctr_exec_tty(ctr: Ctr, tag: str) -> None:
    cid = f"{tag}-sleep"
    run(ctr.run_argv(cid, "sleep", "1000", flags=("-d",)))
    rc, out = run_in_pty(ctr.argv("task", "exec", "--tty", "--exec-id", "t1", "--fifo-dir",
                                  ctr.daemon.fifo_dir, cid, "sh", "-c", "tty; exit 6"))
    assert rc == 6, out
    assert "/dev/pts/" in out
    ctr("task", "delete", "--force", cid)
    ctr("containers", "delete", cid)


# -- podman ------------------------------------------------------------------------------

class Podman:
    """podman with private storage under BASE; containers' cgroups under /<tag>."""

    def __init__(self, base: Path, tag: str) -> None:
        self.base = base
        self.tag = tag
        self.global_flags = [
            "--runtime", RUNC, "--root", f"{base}/root", "--runroot", f"{base}/runroot",
            "--tmpdir", f"{base}/tmp", "--cgroup-manager", "cgroupfs",
            "--storage-driver", "vfs", "--events-backend", "file",
            "--network-config-dir", f"{base}/net"]

    def argv(self, *args: str) -> list[str]:
        return ["podman", *self.global_flags, *args]

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(self.argv(*args), check=check)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`podman run` with the flags every run needs here; ARGS end with image, command."""
        return self("run", "--network", "none", "--cgroup-parent", f"/{self.tag}", *ULIMITS,
                    *args, check=check)

    def status(self, name: str) -> str:
        return self("inspect", "-f", "{{.State.Status}}", name).stdout.strip()

    def cleanup(self) -> None:
        self("rm", "--all", "--force", "--time", "0", check=False)
        self("system", "reset", "--force", check=False)
        remove_cgroup_dirs(f"{self.tag}/conmon", self.tag)
        unmount_under(str(self.base))
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def podman(image_files: tuple[str, str], tag: str, leak_check: None) -> Iterator[Podman]:
    for binary in ("podman", "conmon"):
        if shutil.which(binary) is None:
            pytest.skip(f"{binary} is not installed")
    # Not under tmp_path: podman refuses a --runroot longer than 50 characters.
    p = Podman(Path(tempfile.mkdtemp(prefix="corral-podman-")), tag)
    try:
        p("import", image_files[0], "corral-busybox")
        yield p
    finally:
        p.cleanup()


def test_podman_run_rm_reports_exit_code_and_output(podman: Podman, tag: str) -> None:
    p = podman.run("--rm", "--name", f"{tag}-exit3", "--hostname", "podman-box",
                   "corral-busybox",
                   "sh", "-c", "echo out pid=$$ $(hostname); echo err >&2; exit 3",
                   check=False)
    assert p.returncode == 3, p.stderr
    assert p.stdout == "out pid=1 podman-box\n"  # its own pid and uts namespaces
    assert p.stderr == "err\n"
    assert podman("ps", "--all", "--quiet").stdout == ""


def test_podman_detached_lifecycle(podman: Podman, tag: str) -> None:
    name = f"{tag}-sleep"
    cid = podman.run("-d", "--name", name, "corral-busybox", "sleep", "1000").stdout.strip()
    assert podman.status(name) == "running"
    pid = int(podman("inspect", "-f", "{{.State.Pid}}", name).stdout)
    state = runc_state(None, cid)  # conmon passes no --root: corral-runc's default
    assert state is not None and (state["status"], state["pid"]) == ("running", pid)

    p = podman("exec", name, "sh", "-c",
               "echo hello from exec; tr '\\0' ' ' </proc/1/cmdline; echo; exit 4", check=False)
    assert p.returncode == 4, p.stderr
    assert p.stdout.splitlines() == ["hello from exec", "sleep 1000 "]

    podman("pause", name)
    assert podman.status(name) == "paused"
    state = runc_state(None, cid)
    assert state is not None and state["status"] == "paused"
    podman("unpause", name)
    assert podman.status(name) == "running"

    podman("kill", name)
    wait_for("container exited", lambda: podman.status(name) == "exited")
    assert podman("inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip() == "137"
    podman("rm", "--force", name)
    assert podman("ps", "--all", "--quiet").stdout == ""
    assert runc_state(None, cid) is None


def test_podman_update_memory_limit(podman: Podman, tag: str) -> None:
    name = f"{tag}-sleep"
    cid = podman.run("-d", "--name", name, "--memory", "128m", "corral-busybox",
                     "sleep", "1000").stdout.strip()
    limit = f"/sys/fs/cgroup/memory/{tag}/libpod-{cid}/memory.limit_in_bytes"
    if not os.path.exists(limit):
        pytest.skip("needs the cgroup v1 memory controller")  # checked through v1 files
    with open(limit) as f:
        assert int(f.read()) == 128 << 20
    podman("update", "--memory", "64m", name)  # corral-runc update --resources=FILE
    with open(limit) as f:
        assert int(f.read()) == 64 << 20
    podman("rm", "--force", "--time", "0", name)


def test_podman_run_missing_program_exits_127(podman: Podman, tag: str) -> None:
    p = podman.run("--rm", "--name", f"{tag}-missing", "corral-busybox", "/nonexistent",
                   check=False)
    assert p.returncode == 127  # podman maps the runtime's "no such file" to 127
    assert "'/nonexistent': no such file or directory" in p.stderr
    assert podman("ps", "--all", "--quiet").stdout == ""


def test_podman_run_tty(podman: Podman, tag: str) -> None:
    p = podman.run("--rm", "--tty", "--name", f"{tag}-tty", "corral-busybox",
                   "sh", "-c", "tty; exit 5", check=False)
    assert p.returncode == 5, p.stderr
    assert p.stdout.startswith("/dev/pts/0\r\n")


def test_podman_run_tty_in_user_namespace(podman: Podman, tag: str) -> None:
    p = podman.run("--rm", "--tty", "--uidmap", "0:0:65536", "--gidmap", "0:0:65536",
                   "--name", f"{tag}-userns", "corral-busybox",
                   "sh", "-c", "tty; cat /proc/self/uid_map; exit 5", check=False)
    assert p.returncode == 5, p.stderr
    assert p.stdout.split() == ["/dev/pts/0", "0", "0", "65536"]


def test_podman_exec_tty(podman: Podman, tag: str) -> None:
    name = f"{tag}-sleep"
    podman.run("-d", "--name", name, "corral-busybox", "sleep", "1000")
    p = podman("exec", "--tty", name, "sh", "-c", "tty; exit 6", check=False)
    assert p.returncode == 6, p.stderr
    assert p.stdout.startswith("/dev/pts/")
    podman("rm", "--force", "--time", "0", name)
