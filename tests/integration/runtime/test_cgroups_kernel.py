"""runtime.oci.cgroups against the real kernel of this machine (root, cgroupfs mounted).

Every cgroup made here is named "corral-test-<pid>-<random>" and removed in a finally
block; a module fixture fails the run if any is left behind. The host's own layout (v1,
hybrid or v2) is tested through /sys/fs/cgroup; on a hybrid host the v2 code paths
(cgroup.freeze, cgroup.kill, subtree_control, hugetlb.*.max, the eBPF device filter) are
also run for real against the cgroup2 mount at /sys/fs/cgroup/unified.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import time

import pytest

from runtime.oci import cgroups
from runtime.oci.cgroups import host
from runtime.oci.errors import ConfigError, Unsupported

pytestmark = pytest.mark.integration

ROOT = "/sys/fs/cgroup"
UNIFIED = "/sys/fs/cgroup/unified"
TAG = f"corral-test-{os.getpid()}-"

if os.geteuid() != 0 or not os.path.isdir(ROOT):
    pytest.skip("needs root and a cgroup filesystem", allow_module_level=True)


def unique() -> str:
    return TAG + os.urandom(4).hex()


def leftovers() -> list[str]:
    found = []
    for dirpath, dirnames, _ in os.walk(ROOT):
        found += [os.path.join(dirpath, d) for d in dirnames if d.startswith(TAG)]
    return found


@pytest.fixture(scope="module", autouse=True)
def nothing_left_behind():
    yield
    assert leftovers() == []


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


class Child:
    """A forked process that obeys one-line commands on a pipe and answers one line:
    "mem" (allocate and touch 32 MiB, burn 50 ms of CPU), "open PATH MODE" (r / w)."""

    def __init__(self) -> None:
        to_child, self._w = os.pipe()
        self._r, from_child = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - the child
            code = 0
            try:
                os.close(self._w)
                os.close(self._r)
                self._serve(to_child, from_child)
            except BaseException:
                code = 1
            os._exit(code)
        os.close(to_child)
        os.close(from_child)
        self.status: int | None = None

    @staticmethod
    def _serve(rfd: int, wfd: int) -> None:  # pragma: no cover - the child
        hog = bytearray()
        with os.fdopen(rfd, "r") as commands:
            for line in commands:
                cmd = line.split()
                if cmd[0] == "mem":
                    hog = bytearray(32 << 20)
                    for i in range(0, len(hog), 4096):
                        hog[i] = 1
                    start = time.monotonic()
                    while time.monotonic() - start < 0.05:
                        pass
                    answer = "ok"
                elif cmd[0] == "open":
                    try:
                        os.close(os.open(cmd[1], os.O_RDONLY if cmd[2] == "r" else os.O_WRONLY))
                        answer = "ok"
                    except OSError as e:
                        answer = errno.errorcode[e.errno]
                os.write(wfd, (answer + "\n").encode())
        del hog

    def ask(self, command: str, timeout: float = 10.0) -> str:
        os.write(self._w, (command + "\n").encode())
        out = b""
        while not out.endswith(b"\n"):
            ready, _, _ = select.select([self._r], [], [], timeout)
            assert ready, f"the child did not answer {command!r} within {timeout}s"
            chunk = os.read(self._r, 64)
            assert chunk, "the child died"
            out += chunk
        return out.decode().strip()

    def state(self) -> str:
        for line in read(f"/proc/{self.pid}/status").splitlines():
            if line.startswith("State:"):
                return line.split()[1]
        raise AssertionError("no State line")

    def wait(self, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = status
            elif time.monotonic() > deadline:
                raise AssertionError(f"child {self.pid} did not exit within {timeout}s")
            else:
                time.sleep(0.005)
        return self.status

    def close(self) -> None:
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.wait()
            except AssertionError:  # still frozen somehow: reap it later rather than hang
                pass
        for fd in (self._w, self._r):
            try:
                os.close(fd)
            except OSError:
                pass


def cleanup(m: cgroups.Manager, *children: Child) -> None:
    """Kill, thaw and remove whatever a failed test left; never raise over its error."""
    for c in children:
        try:
            m.thaw()
        except Exception:
            pass
        c.close()
    for d in m.dirs.values():
        for dirpath, _, _ in os.walk(d, topdown=False):  # deepest first
            try:
                os.rmdir(dirpath)
            except OSError:
                pass


def manager(cgroups_path: str | None = None, root: str = ROOT) -> cgroups.Manager:
    return cgroups.open_manager(container_id=unique(), cgroups_path=cgroups_path, root=root)


HOST = host.read_host(ROOT)
IS_V2 = HOST.mode == "v2"
HAS_MEMSW = not IS_V2 and os.path.exists(f"{ROOT}/memory/memory.memsw.limit_in_bytes")


def readback(m: cgroups.Manager) -> dict[str, str]:
    if IS_V2:
        d = m.dirs["unified"]
        return {"memory": read(f"{d}/memory.max"), "cpu": read(f"{d}/cpu.max"),
                "shares": read(f"{d}/cpu.weight"), "pids": read(f"{d}/pids.max")}
    return {"memory": read(f"{m.dirs['memory']}/memory.limit_in_bytes"),
            "cpu": read(f"{m.dirs['cpu']}/cpu.cfs_quota_us") + " "
            + read(f"{m.dirs['cpu']}/cpu.cfs_period_us"),
            "shares": read(f"{m.dirs['cpu']}/cpu.shares"),
            "pids": read(f"{m.dirs['pids']}/pids.max")}


def test_lifecycle_on_this_host():
    m = manager()
    child = None
    try:
        m.create()
        assert m.exists()
        resources = {"memory": {"limit": 256 << 20}, "pids": {"limit": 32},
                     "cpu": {"shares": 512, "quota": 50000, "period": 100000}}
        if HAS_MEMSW:
            resources["memory"]["swap"] = 512 << 20
        cgroups.validate(resources)
        m.apply(resources)
        assert readback(m) == {"memory": str(256 << 20), "cpu": "50000 100000",
                               "shares": "20" if IS_V2 else "512", "pids": "32"}
        if HAS_MEMSW:
            assert read(f"{m.dirs['memory']}/memory.memsw.limit_in_bytes") == str(512 << 20)

        child = Child()
        m.add_pid(child.pid)
        assert m.pids() == [child.pid]
        name = os.path.basename(next(iter(m.dirs.values())))
        lines = [line.split(":", 2) for line in read(f"/proc/{child.pid}/cgroup").splitlines()]
        joined = {ctrls or "unified" for _, ctrls, path in lines if path == f"/{name}"}
        assert joined == set(m.dirs)  # every hierarchy, the unified one on hybrid hosts too
        assert child.ask("mem") == "ok"

        stats = m.stats()
        assert stats["memory"]["usage"]["usage"] >= 16 << 20
        assert stats["memory"]["usage"]["limit"] == 256 << 20
        assert stats["cpu"]["usage"]["total"] > 0
        # tasks, not processes: a library of the test process (grpc) may add threads in
        # a forked child
        assert stats["pids"]["current"] >= 1 and stats["pids"]["limit"] == 32

        assert child.state() in ("R", "S")  # just answered: may still be running
        m.freeze()
        assert m.frozen()
        assert child.state() == ("D" if not IS_V2 else "S")  # v1 freezer: uninterruptible
        m.thaw()
        assert not m.frozen()
        assert child.state() in ("R", "S")
        assert child.ask("open /dev/null r") == "ok"  # alive and answering after the thaw

        m.kill_all(signal.SIGKILL)
        status = child.wait()
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        assert m.oom_kill_count() == 0

        m.destroy()
        for key, d in m.dirs.items():
            assert not os.path.exists(d), key
        assert not m.exists()
    finally:
        cleanup(m, *(c for c in [child] if c))


def test_kill_all_with_sigterm_goes_through_the_freezer():
    m = manager()
    children: list[Child] = []
    try:
        m.create()
        children = [Child(), Child()]
        for c in children:
            m.add_pid(c.pid)
        assert sorted(m.pids()) == sorted(c.pid for c in children)
        m.kill_all(signal.SIGTERM)
        for c in children:
            status = c.wait()
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
        assert not m.frozen()  # thawed again, or the dead could not leave
        m.destroy()
        assert not m.exists()
    finally:
        cleanup(m, *children)


def test_kill_all_sigkill_a_paused_container():
    m = manager()
    child = None
    try:
        m.create()
        child = Child()
        m.add_pid(child.pid)
        m.freeze()
        m.kill_all(signal.SIGTERM)  # stays paused: the signal waits for the thaw
        assert m.frozen()
        m.kill_all(signal.SIGKILL)
        status = child.wait()
        assert os.WIFSIGNALED(status)
        m.destroy()
    finally:
        cleanup(m, *(c for c in [child] if c))


def test_state_survives_another_process():
    m = manager()
    child = None
    try:
        m.create()
        child = Child()
        m.add_pid(child.pid)
        again = cgroups.Manager.from_state(m.to_state())
        assert again.pids() == [child.pid]
        again.kill_all(signal.SIGKILL)
        child.wait()
        again.destroy()
        assert not m.exists()
    finally:
        cleanup(m, *(c for c in [child] if c))


@pytest.mark.skipif(not HAS_MEMSW, reason="needs v1 memory with swap accounting")
@pytest.mark.parametrize("steps", [
    pytest.param([(64, 128), (256, 512)], id="raise-both"),
    pytest.param([(256, 512), (32, 48)], id="lower-both"),
    pytest.param([(64, 128), (96, -1), (32, 64)], id="unlimited-swap-and-back"),
])
def test_v1_memory_and_swap_in_an_order_the_kernel_accepts(steps):
    m = manager()
    try:
        m.create()
        for limit, swap in steps:
            m.apply({"memory": {"limit": limit << 20, "swap": swap if swap < 0 else swap << 20}})
            assert read(f"{m.dirs['memory']}/memory.limit_in_bytes") == str(limit << 20)
            memsw = read(f"{m.dirs['memory']}/memory.memsw.limit_in_bytes")
            assert memsw == (str(swap << 20) if swap > 0 else "9223372036854771712")
        m.destroy()
    finally:
        cleanup(m)


@pytest.mark.skipif(IS_V2, reason="v1 memory semantics")
def test_v1_memory_limit_below_usage_is_a_config_error():
    m = manager()
    child = None
    try:
        m.create()
        child = Child()
        m.add_pid(child.pid)
        assert child.ask("mem") == "ok"
        with pytest.raises(ConfigError, match=r"linux.resources.memory.limit: the kernel refused "
                                              r"'4194304' in memory.limit_in_bytes: below the "
                                              r"current usage \d+ \(peak \d+\)"):
            m.apply({"memory": {"limit": 4 << 20}})
    finally:
        cleanup(m, *(c for c in [child] if c))


def test_kernel_refusal_names_the_field():
    m = manager()
    try:
        m.create()
        with pytest.raises(ConfigError, match=r"^config.json: linux.resources.cpu.cpus: the kernel "
                                              r"refused '0-1023' in cpuset.cpus: "):
            m.apply({"cpu": {"cpus": "0-1023"}})
        with pytest.raises(ConfigError, match=r"linux.resources.cpu.cpus: CPU .* is not online"):
            cgroups.validate({"cpu": {"cpus": "0-1023"}})
        m.destroy()
    finally:
        cleanup(m)


@pytest.mark.skipif(IS_V2, reason="v1 devices controller")
def test_v1_device_rules_are_enforced():
    m = manager()
    child = None
    try:
        m.create()
        m.apply({"devices": [{"allow": False, "access": "rwm"},
                             {"allow": True, "type": "c", "major": 1, "minor": 3,
                              "access": "rw"}]})
        assert read(f"{m.dirs['devices']}/devices.list") == "c 1:3 rw"
        child = Child()
        m.add_pid(child.pid)
        assert child.ask("open /dev/null w") == "ok"
        assert child.ask("open /dev/zero r") == "EPERM"
        m.kill_all(signal.SIGKILL)
        child.wait()
        m.destroy()
    finally:
        cleanup(m, *(c for c in [child] if c))


def test_nested_and_relative_paths():
    top = unique()
    nested = cgroups.open_manager(container_id="x", cgroups_path=f"/{top}/pod/ctr")
    rel_name = unique()
    relative = cgroups.open_manager(container_id="x", cgroups_path=rel_name)
    try:
        nested.create()
        nested.destroy()
        for key, d in nested.dirs.items():
            assert not os.path.exists(d), key
            assert os.path.isdir(os.path.dirname(d)), key  # parents are never removed
        own = host.parse_self_cgroup(read("/proc/self/cgroup"))
        for h in HOST.hierarchies:
            mine = own[h.controllers[0] if h.controllers else "unified"]
            assert relative.dirs[h.key] == f"{h.mountpoint}{mine.rstrip('/')}/{rel_name}"
        relative.create()
        assert all(os.path.isdir(d) for d in relative.dirs.values())
        relative.destroy()
        assert not relative.exists()
    finally:
        cleanup(nested)
        cleanup(relative)
        for h in HOST.hierarchies:
            for sub in ("/pod", ""):
                try:
                    os.rmdir(f"{h.mountpoint}/{top}{sub}")
                except OSError:
                    pass


# --- the v2 code paths, for real, on the hybrid host's cgroup2 mount ---------------------

_unified = HOST.unified()
needs_unified = pytest.mark.skipif(
    IS_V2 or _unified is None or _unified.mountpoint != UNIFIED,
    reason="needs a hybrid host with cgroup2 at /sys/fs/cgroup/unified")


@pytest.fixture
def unified_root():
    """Restore the unified root's cgroup.subtree_control after the test."""
    before = read(f"{UNIFIED}/cgroup.subtree_control").split()
    yield UNIFIED
    for c in read(f"{UNIFIED}/cgroup.subtree_control").split():
        if c not in before:
            try:
                with open(f"{UNIFIED}/cgroup.subtree_control", "w") as f:
                    f.write("-" + c)
            except OSError:
                pass


@needs_unified
def test_v2_paths_on_the_unified_mount(unified_root):
    m = manager(root=unified_root)
    assert m.mode == "v2"
    child = None
    try:
        m.create()
        d = m.dirs["unified"]
        available = read(f"{UNIFIED}/cgroup.controllers").split()
        assert read(f"{UNIFIED}/cgroup.subtree_control").split() == available
        if "hugetlb" in available:
            m.apply({"hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}]})
            assert read(f"{d}/hugetlb.2MB.max") == str(4 << 20)
        if "pids" not in available:
            with pytest.raises(Unsupported, match=r"linux.resources.pids.limit: pids.max does not "
                                                  "exist in .*: the controller is not available"):
                m.apply({"pids": {"limit": 5}})

        child = Child()
        m.add_pid(child.pid)
        assert m.pids() == [child.pid]
        assert child.ask("mem") == "ok"
        assert m.stats()["cpu"]["usage"]["total"] > 0  # cpu.stat exists in every v2 cgroup

        m.freeze()
        assert m.frozen()
        assert read(f"{d}/cgroup.freeze") == "1"
        m.thaw()
        assert not m.frozen()
        assert child.ask("open /dev/null r") == "ok"

        m.kill_all(signal.SIGKILL)  # cgroup.kill
        status = child.wait()
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        m.destroy()
        assert not os.path.exists(d)
    finally:
        cleanup(m, *(c for c in [child] if c))


@needs_unified
@pytest.mark.parametrize(("rules", "answers"), [
    pytest.param([{"allow": False, "access": "rwm"},
                  {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "r"}],
                 {"open /dev/zero r": "ok", "open /dev/zero w": "EPERM",
                  "open /dev/null r": "EPERM"}, id="allow-list"),
    pytest.param([{"allow": True, "access": "rwm"},
                  {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "w"}],
                 {"open /dev/null r": "ok", "open /dev/null w": "EPERM",
                  "open /dev/zero w": "ok"}, id="deny-list"),
])
def test_v2_ebpf_device_filter(unified_root, rules, answers):
    from runtime.oci.cgroups import bpf

    m = manager(root=unified_root)
    child = None
    try:
        m.create()
        child = Child()
        m.add_pid(child.pid)
        m.apply({"devices": rules})
        assert {q: child.ask(q) for q in answers} == answers
        m.apply({"devices": [{"allow": True, "access": "rwm"}]})  # an update replaces it
        assert child.ask("open /dev/null w") == "ok"
        fd = os.open(m.dirs["unified"], os.O_RDONLY | os.O_DIRECTORY)
        try:
            assert len(bpf.attached(fd)) == 1
        finally:
            os.close(fd)
        m.kill_all(signal.SIGKILL)
        child.wait()
        m.destroy()
    finally:
        cleanup(m, *(c for c in [child] if c))
