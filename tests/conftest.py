"""Fixtures shared by every test: the busybox rootfs, corral-runc as a command, and the
leak check that fails a test which leaves a mount, cgroup, namespace or process behind
(tests/support/leaks.py: only what carries the test's tag or sits under its tmp dir)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator

import pytest

# Several tests fork the pytest process (seccomp and cgroup tests run code in a forked
# child). Once the controlplane tests have imported grpc, its fork handlers would start
# threads in such children, so a child killed by SECCOMP_RET_KILL_THREAD would live on and
# pids.current would count extra tasks. Our children never use grpc.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from tests.support import busybox
from tests.support.leaks import Leaks

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


