"""Fixtures shared by every test: the busybox rootfs, corral-runc as a command, and the
leak check that fails a test which leaves a mount, cgroup, namespace or process behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

# Several tests fork the pytest process (seccomp and cgroup tests run code in a forked
# child). Once the controlplane tests have imported grpc, its fork handlers would start
# threads in such children, so a child killed by SECCOMP_RET_KILL_THREAD would live on and
# pids.current would count extra tasks. Our children never use grpc.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from tests.support import busybox

MakeBundle = Callable[..., str]
# test folders whose tests use grpc in the pytest process: they run after the forking ones
GRPC_USERS = ("/controlplane/", "/agent/")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNC = os.path.join(ROOT, ".venv", "bin", "corral-runc")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
    # Several runtime tests fork the pytest process and run code in the child (seccomp,
    # cgroups). Forking a process with threads is only safe for code that takes no lock
    # another thread may hold, and once the controlplane tests have used grpc, its threads
    # live on in this process: those children then hang now and then. So the grpc users
    # run last.
    items.sort(key=lambda item: any(part in str(item.fspath) for part in GRPC_USERS))


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> str:
    return busybox.build_rootfs(str(tmp_path_factory.mktemp("busybox") / "rootfs"))


def _mounts() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {line.split()[4] for line in f}


def _cgroups() -> set[str]:
    found = set()
    for top in os.listdir("/sys/fs/cgroup"):
        base = os.path.join("/sys/fs/cgroup", top)
        for dirpath, dirnames, _ in os.walk(base):
            for d in dirnames:
                # a test's own cgroups carry its tag; a daemon's defaults are /corral*
                if "corral-test" in d or (dirpath == base and d.startswith("corral")):
                    found.add(os.path.join(dirpath, d))
            if dirpath.count("/") > 6:
                dirnames[:] = []
    return found


NETNS_DIRS = ("/run/netns", "/run/corral/netns")  # ip netns's, and the runtime service's


def _netns() -> set[str]:
    found = set()
    for d in NETNS_DIRS:
        try:
            found |= {os.path.join(d, n) for n in os.listdir(d)}
        except FileNotFoundError:
            pass
    return found


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:200]
    except OSError:
        return "gone"


def _tagged_processes(tag: str) -> set[int]:
    """Live processes whose command line or cgroup mentions TAG."""
    pids = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read()
            with open(f"/proc/{name}/cgroup", "rb") as f:
                cg = f.read()
            with open(f"/proc/{name}/stat", "rb") as f:
                st = f.read()
        except OSError:
            continue
        if st[st.rindex(b")") + 2:][:1] == b"Z":
            continue
        if tag.encode() in cmd or tag.encode() in cg:
            pids.add(int(name))
    return pids


class Leaks:
    """What a test made that must be gone when it ends."""

    def __init__(self, tag: str, tmp: str) -> None:
        self.tag = tag
        self.tmp = tmp
        self.mounts = _mounts()
        self.cgroups = _cgroups()
        self.netns = _netns()

    def check(self) -> list[str]:
        problems = []
        deadline = time.monotonic() + 5
        while True:
            procs = _tagged_processes(self.tag)
            mounts = {m for m in _mounts() - self.mounts
                      if self.tmp in m or "corral" in m}
            cgroups = _cgroups() - self.cgroups
            netns = {n for n in _netns() - self.netns if "corral" in n}
            if not (procs or mounts or cgroups or netns) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if procs:
            problems.append("processes left running: " + ", ".join(
                f"{pid} ({_cmdline(pid)})" for pid in sorted(procs)))
            for pid in procs:  # clean up so one leak does not fail every later test
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
        if mounts:
            problems.append(f"mounts left: {sorted(mounts)}")
            for m in sorted(mounts, key=len, reverse=True):
                subprocess.run(["umount", "-l", m], check=False)
        if cgroups:
            problems.append(f"cgroups left: {sorted(cgroups)}")
            for c in sorted(cgroups, key=len, reverse=True):
                for dirpath, _, _ in sorted(os.walk(c), key=lambda w: -len(w[0])):
                    try:
                        os.rmdir(dirpath)  # children first
                    except OSError:
                        pass
        if netns:
            problems.append(f"network namespaces left: {sorted(netns)}")
        return problems


@pytest.fixture
def tag() -> str:
    """A unique name for this test's containers: cgroups, IDs and the leak check use it."""
    return f"corral-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def leak_check(tag: str, tmp_path: object) -> Iterator[None]:
    leaks = Leaks(tag, str(tmp_path))
    yield
    problems = leaks.check()
    assert not problems, "test left resources behind: " + "; ".join(problems)


class Runc:
    """corral-runc (or another runtime binary) with a private --root."""

    def __init__(self, binary: str, root: str) -> None:
        self.binary = binary
        self.root = root

    def __call__(self, *args: str, check: bool = True, input: bytes | None = None,
                 timeout: float = 30, **kw: object) -> subprocess.CompletedProcess[bytes]:
        # Files, not pipes: a detached container inherits our stdout/stderr and would hold
        # a pipe open for as long as it runs.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            p = subprocess.run([self.binary, "--root", self.root, *args], input=input,
                               stdout=out, stderr=err, timeout=timeout,
                               **kw)  # type: ignore[call-overload]
            out.seek(0)
            err.seek(0)
            p.stdout, p.stderr = out.read(), err.read()
        if check and p.returncode != 0:
            raise AssertionError(f"{self.binary} {' '.join(args)} exited {p.returncode}: "
                                 f"{p.stderr.decode()}{p.stdout.decode()}")
        return p  # type: ignore[no-any-return]

    def cleanup(self) -> None:
        if not os.path.isdir(self.root):
            return
        for cid in os.listdir(self.root):
            self("delete", "--force", cid, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def runc(tmp_path: object, leak_check: None) -> Iterator[Runc]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if not os.path.exists(RUNC):
        pytest.fail(f"{RUNC} is missing: run `make deps` (scripts/install-deps.sh)")
    r = Runc(RUNC, os.path.join(str(tmp_path), "state"))
    yield r
    r.cleanup()


@pytest.fixture
def bundle(tmp_path: object, rootfs: str, tag: str) -> MakeBundle:
    """make_bundle(args, **config overrides) -> bundle dir with cgroupsPath /<tag>."""
    def make(args: list[str], name: str = "bundle", **overrides: object) -> str:
        cfg = busybox.config(args, **overrides)
        linux = cfg["linux"]
        assert isinstance(linux, dict)
        linux.setdefault("cgroupsPath", f"/{tag}-{name}")
        return busybox.write_bundle(os.path.join(str(tmp_path), name), rootfs, cfg)
    return make


