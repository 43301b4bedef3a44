"""corral-runtimed as a real process: CRI over its socket, real shims, corral-runc, CNI.

``Runtimed`` (also used by test_ctr.py, test_cri_compat.py and the agent's tests) runs one
daemon in a temp dir named after the test's tag (root, state, socket, CNI conf, IPAM data
and the sandboxes' netns_dir), with a bridge network and cgroup parent of its own and the
tag in its environment (tests/support/leaks.py: the leak check finds what it left by the
tag alone); ``cleanup()`` removes every sandbox through CRI, stops the daemon by PID, then
removes what a killed daemon may have left (tasks, mounts, cgroups, netns, the bridge) and
the dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import grpc  # type: ignore[import-untyped]
import pytest
import pytest_asyncio

from runtime.service.cri import api_pb2 as pb
from runtime.service.cri import api_pb2_grpc as pb_grpc
from runtime.service.cri.client import AlreadyExists, CRIClient, InvalidArgument, NotFound
from runtime.service.tasks import TaskManager
from tests.support import containerd, leaks, process, sockets
from tests.support.registry import Registry

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))))
PYTHON = os.path.join(ROOT, ".venv", "bin", "python")
CGROUP_ROOT = "/sys/fs/cgroup"


def subnet(tag: str) -> str:
    h = hashlib.sha256(tag.encode()).digest()
    return f"10.{208 + h[0] % 8}.{h[1]}.0/24"


class Runtimed:
    def __init__(self, *, tag: str, sandbox_image: str, registries: list[str],
                 state_base: str = "") -> None:
        """STATE_BASE: where the daemon's state (tasks, pinned namespaces) goes, in a dir of
        its own named after the tag; default: beside the rest under /tmp. A tmpfs there is
        what /run is on a systemd host (benches: this machine's /run is on disk)."""
        self.tag = tag
        self.dir = tempfile.mkdtemp(prefix=f"{tag}-rtd-", dir="/tmp")
        self.root = os.path.join(self.dir, "root")
        self.state = tempfile.mkdtemp(prefix=f"{tag}-state-", dir=state_base) if state_base \
            else os.path.join(self.dir, "state")
        self.socket = os.path.join(self.dir, "cri.sock")
        self.cni_conf_dir = os.path.join(self.dir, "cni")
        self.log_dir = os.path.join(self.dir, "pods")
        # not /run/corral/netns; with STATE_BASE, beside the state (as /run/corral/netns)
        self.netns_dir = os.path.join(self.state if state_base else self.dir, "netns")
        self.cgroup_parent = f"/{tag}"
        self.bridge = "cr" + tag.replace("-", "")[-10:]
        self.config_path = os.path.join(self.dir, "runtimed.toml")
        self.log_path = os.path.join(self.dir, "runtimed.log")
        os.makedirs(self.cni_conf_dir)
        os.makedirs(self.log_dir)
        regs = "".join(f'[registries."{r}"]\nplain_http = true\n' for r in registries)
        with open(self.config_path, "w") as f:
            # every cgroup of this daemon under the test's tag, also for `corral-ctr run`
            # (no pod cgroup parent): the leak check sees whatever is left
            # and its sandboxes' network namespaces in a dir of its own, under self.dir
            f.write(f'sandbox_image = "{sandbox_image}"\n'
                    f'cgroup_parent = "{self.cgroup_parent}"\n{regs}\n[cni]\n'
                    f'bin_dirs = ["{containerd.CNI_BIN}"]\nconf_dir = "{self.cni_conf_dir}"\n'
                    f'netns_dir = "{self.netns_dir}"\n')
        self.proc: subprocess.Popen[bytes] | None = None

    def write_cni_conflist(self) -> None:
        conf = {"cniVersion": "1.0.0", "name": f"{self.tag}-net", "plugins": [
            {"type": "bridge", "bridge": self.bridge, "isGateway": True, "ipMasq": False,
             "ipam": {"type": "host-local", "dataDir": os.path.join(self.dir, "ipam"),
                      "ranges": [[{"subnet": subnet(self.tag)}]]}}]}
        with open(os.path.join(self.cni_conf_dir, "10-test.conflist"), "w") as f:
            json.dump(conf, f)

    def start(self, *extra: str, timeout: float = 30) -> Runtimed:
        self.proc = process.start(
            [PYTHON, "-m", "runtime.service.daemon", "--root", self.root, "--state",
             self.state, "--socket", self.socket, "--config", self.config_path, *extra],
            log_path=self.log_path, cwd=ROOT, new_session=True, env=self.env())
        process.wait_until_ready(self.proc, name="corral-runtimed", condition="serving",
                                 ready=self._serving, timeout=timeout, tail=self.log_tail)
        return self

    def env(self) -> dict[str, str]:
        """The daemon's environment: ours with the test's tag, which its fork server, shims
        and holders inherit, so the leak check knows them after the daemon is gone."""
        return {**os.environ, leaks.TAG_ENV: self.tag}

    def _serving(self) -> bool:
        return sockets.serving(self.socket)

    def log_tail(self) -> str:
        return process.log_tail(self.log_path, lines=30)

    def kill9(self) -> None:
        assert self.proc is not None
        process.kill(self.proc, timeout=None)
        self.proc = None

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        process.stop(proc, timeout=15, kill_timeout=None)

    def drain(self) -> None:
        with grpc.insecure_channel(f"unix://{self.socket}") as channel:
            rt = pb_grpc.RuntimeServiceStub(channel)  # type: ignore[no-untyped-call]
            for tenant in self.tenants():
                md = [("containerd-namespace", tenant)]
                for sb in rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=30,
                                            metadata=md).items:
                    rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sb.id),
                                      timeout=60, metadata=md)
                    rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sb.id),
                                        timeout=60, metadata=md)

    def tenants(self) -> list[str]:
        with contextlib.suppress(OSError):
            return sorted(os.listdir(os.path.join(self.root, "sandboxes")))
        return []

    def sandbox_ids(self) -> list[str]:
        out = []
        for t in self.tenants():
            d = os.path.join(self.root, "sandboxes", t)
            out += [n[:-5] for n in os.listdir(d) if n.endswith(".json")]
        return out

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.drain()
        self.stop()
        with contextlib.suppress(Exception):
            tm = TaskManager(self.state, forkserver=False)  # no fork server left behind
            for info in tm.list():
                with contextlib.suppress(Exception):
                    tm.delete(info.namespace, info.id, force=True)
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f]
        for m in sorted((m for m in mounts if m.startswith((self.dir + "/", self.state + "/"))),
                        key=len, reverse=True):
            subprocess.run(["umount", "-l", m], check=False, stderr=subprocess.DEVNULL)
        for top in os.listdir(CGROUP_ROOT):
            base = os.path.join(CGROUP_ROOT, top) + self.cgroup_parent
            for d in sorted((p for p, _, _ in os.walk(base)), key=len, reverse=True):
                for _ in range(50):
                    try:
                        os.rmdir(d)
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.02)
        if os.path.exists(f"/sys/class/net/{self.bridge}"):
            subprocess.run(["ip", "link", "del", self.bridge], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(self.state, ignore_errors=True)

    def __enter__(self) -> Runtimed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # ---- configs ------------------------------------------------------------------------

    def sandbox_config(self, name: str) -> pb.PodSandboxConfig:
        uid = str(uuid.uuid4())
        log_dir = os.path.join(self.log_dir, f"default_{name}_{uid}")
        os.makedirs(log_dir, exist_ok=True)
        return pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace="default"),
            hostname=name, log_directory=log_dir, labels={"corral.test": self.tag},
            # pid CONTAINER as kubelet asks unless shareProcessNamespace (unset is POD: a
            # shared PID namespace, which takes a pause container)
            linux=pb.LinuxPodSandboxConfig(
                cgroup_parent=self.cgroup_parent,
                security_context=pb.LinuxSandboxSecurityContext(
                    namespace_options=pb.NamespaceOption(pid=pb.CONTAINER))))


def container_config(image: str, name: str, command: list[str], *,
                     memory: int = 0) -> pb.ContainerConfig:
    return pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name=name), image=pb.ImageSpec(image=image),
        command=command, log_path=f"{name}.log", labels={"container": name},
        linux=pb.LinuxContainerConfig(resources=pb.LinuxContainerResources(
            memory_limit_in_bytes=memory)))


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("corral-runtimed needs root")
    reason = containerd.missing()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def rtd(tag: str, leak_check: None, registry: Registry, busybox: str) -> Iterator[Runtimed]:
    need_root()
    with Runtimed(tag=tag, sandbox_image=busybox, registries=[registry.host]) as r:
        r.write_cni_conflist()
        r.start()
        yield r


@pytest_asyncio.fixture
async def cri(rtd: Runtimed) -> AsyncIterator[CRIClient]:
    async with CRIClient(rtd.socket, timeout=60) as client:
        yield client


async def until(what: str, check: object, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not await check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


def leftovers(rtd: Runtimed) -> dict[str, list[str]]:
    """What the daemon holds: task dirs, container rootfs snapshots (mounted dirs)."""
    tasks = []
    for tenant in os.listdir(os.path.join(rtd.state, "tasks")):
        tasks += os.listdir(os.path.join(rtd.state, "tasks", tenant))
    rootfs = []
    with contextlib.suppress(FileNotFoundError):
        for tenant in os.listdir(os.path.join(rtd.state, "rootfs")):
            rootfs += os.listdir(os.path.join(rtd.state, "rootfs", tenant))
    return {"tasks": sorted(tasks), "rootfs": sorted(rootfs)}


@pytest.mark.asyncio
async def test_kill9_containers_survive_and_exits_are_reported(
        cri: CRIClient, rtd: Runtimed, busybox: str) -> None:
    await cri.pull_image(pb.ImageSpec(image=busybox))
    sandbox = rtd.sandbox_config("web")
    pod = await cri.run_pod_sandbox(sandbox)
    ip = (await cri.pod_sandbox_status(pod)).status.network.ip
    assert ip.startswith(subnet(rtd.tag).rsplit(".", 1)[0] + "."), ip
    long = await cri.create_container(pod, container_config(busybox, "long", ["sleep", "60"]),
                                      sandbox_config=sandbox)
    short = await cri.create_container(
        pod, container_config(busybox, "short", ["sh", "-c", "sleep 1; exit 3"]),
        sandbox_config=sandbox)
    for c in (long, short):
        await cri.start_container(c)
    pid = json.loads((await cri.container_status(long, verbose=True)).info["info"])["pid"]
    rtd.kill9()
    await asyncio.sleep(2)  # short exits while no daemon runs
    assert os.path.exists(f"/proc/{pid}"), "the container died with the daemon"
    rtd.start()
    async with CRIClient(rtd.socket, timeout=60) as again:
        states = {c.id: c.state for c in await again.list_containers()}
        assert states == {long: pb.CONTAINER_RUNNING, short: pb.CONTAINER_EXITED}
        st = (await again.container_status(short)).status
        assert (st.exit_code, st.reason) == (3, "Error")
        assert st.finished_at > st.started_at > 0
        sbs = await again.list_pod_sandbox()
        assert [(s.id, s.state) for s in sbs] == [(pod, pb.SANDBOX_READY)]
        out = await again.exec_sync(long, ["hostname"], timeout=10)
        assert out.stdout == b"web\n"
        await again.stop_pod_sandbox(pod)
        await again.remove_pod_sandbox(pod)
        assert leftovers(rtd) == {"tasks": [], "rootfs": []}


@pytest.mark.asyncio
async def test_bad_input_leaves_nothing(cri: CRIClient, rtd: Runtimed, busybox: str) -> None:
    await cri.pull_image(pb.ImageSpec(image=busybox))
    sandbox = rtd.sandbox_config("bad")
    pod = await cri.run_pod_sandbox(sandbox)
    before = leftovers(rtd)
    with pytest.raises(NotFound, match="image"):
        await cri.create_container(pod, container_config(busybox + "-nope", "a", ["true"]),
                                   sandbox_config=sandbox)
    with pytest.raises(NotFound, match="Sandbox nope"):
        await cri.create_container("nope", container_config(busybox, "a", ["true"]),
                                   sandbox_config=sandbox)
    with pytest.raises(InvalidArgument, match=r"resources.memory_limit_bytes"):
        await cri.create_container(pod, container_config(busybox, "a", ["true"], memory=-1),
                                   sandbox_config=sandbox)
    with pytest.raises(InvalidArgument, match=r"Container a: working_dir: must be an absolute path"):
        await cri.create_container(pod, pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name="a"), image=pb.ImageSpec(image=busybox),
            working_dir="relative"), sandbox_config=sandbox)
    assert leftovers(rtd) == before
    first = await cri.create_container(pod, container_config(busybox, "a", ["true"]),
                                       sandbox_config=sandbox)
    with pytest.raises(AlreadyExists, match=f"reserved for container {first}"):
        await cri.create_container(pod, container_config(busybox, "a", ["true"]),
                                   sandbox_config=sandbox)
    with pytest.raises(AlreadyExists, match="Sandbox default/bad"):
        await cri.run_pod_sandbox(sandbox)
    with pytest.raises(NotFound):
        await cri.pull_image(pb.ImageSpec(image=busybox + "-missing"))
    assert busybox + "-missing" not in [t for i in await cri.list_images() for t in i.repo_tags]


@pytest.mark.asyncio
async def test_oom_and_events(cri: CRIClient, rtd: Runtimed, busybox: str) -> None:
    await cri.pull_image(pb.ImageSpec(image=busybox))
    sandbox = rtd.sandbox_config("oom")
    pod = await cri.run_pod_sandbox(sandbox)
    events: list[pb.ContainerEventResponse] = []

    async def collect() -> None:
        async for ev in cri.container_events():
            events.append(ev)
    watcher = asyncio.ensure_future(collect())
    await asyncio.sleep(0.2)
    cid = await cri.create_container(
        pod, container_config(busybox, "hog", ["tail", "/dev/zero"], memory=16 << 20),
        sandbox_config=sandbox)
    await cri.start_container(cid)

    async def exited() -> bool:
        return (await cri.container_status(cid)).status.state == pb.CONTAINER_EXITED
    await until("the hog to be OOM killed", exited, timeout=30)
    st = (await cri.container_status(cid)).status
    assert (st.reason, st.exit_code) == ("OOMKilled", 137)

    async def stopped_event() -> bool:
        return pb.CONTAINER_STOPPED_EVENT in [e.container_event_type for e in events]
    await until("the stopped event", stopped_event)
    watcher.cancel()
    kinds = [e.container_event_type for e in events if e.container_id == cid]
    assert kinds[:3] == [pb.CONTAINER_CREATED_EVENT, pb.CONTAINER_STARTED_EVENT,
                         pb.CONTAINER_STOPPED_EVENT]
    stopped = next(e for e in events if e.container_event_type == pb.CONTAINER_STOPPED_EVENT)
    assert stopped.containers_statuses[0].reason == "OOMKilled"


@pytest.mark.asyncio
async def test_namespaces_do_not_see_each_other(cri: CRIClient, rtd: Runtimed,
                                                busybox: str) -> None:
    await cri.pull_image(pb.ImageSpec(image=busybox))
    sandbox = rtd.sandbox_config("tenant")
    pod = await cri.run_pod_sandbox(sandbox)
    cid = await cri.create_container(pod, container_config(busybox, "c", ["true"]),
                                     sandbox_config=sandbox)
    channel = grpc.aio.insecure_channel(f"unix://{rtd.socket}")
    try:
        rt = pb_grpc.RuntimeServiceStub(channel)  # type: ignore[no-untyped-call]
        im = pb_grpc.ImageServiceStub(channel)  # type: ignore[no-untyped-call]
        md = [("containerd-namespace", "other")]
        assert not (await rt.ListPodSandbox(pb.ListPodSandboxRequest(), metadata=md)).items
        assert not (await rt.ListContainers(pb.ListContainersRequest(),
                                            metadata=md)).containers
        assert not (await im.ListImages(pb.ListImagesRequest(), metadata=md)).images
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await rt.ContainerStatus(pb.ContainerStatusRequest(container_id=cid),
                                     metadata=md)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        await channel.close()
    assert [c.id for c in await cri.list_containers()] == [cid]


@pytest.mark.parametrize(("text", "message"), [
    pytest.param('runtimes.crun = "/nope/crun"\n', "runtimes.crun: /nope/crun is not an",
                 id="missing-runtime-binary"),
    pytest.param('bogus = 1\n', "bogus: unknown field", id="unknown-field"),
    pytest.param('root = "relative"\n', "root: must be an absolute path", id="relative-root"),
    pytest.param('default_runtime = "kata"\n', "default_runtime: unknown runtime class",
                 id="unknown-default-runtime"),
    pytest.param('[cni\n', "(syntax)", id="toml-syntax"),
])
def test_bad_config_names_file_and_field(tmp_path: object, text: str, message: str) -> None:
    path = os.path.join(str(tmp_path), "bad.toml")
    with open(path, "w") as f:
        f.write(text)
    p = subprocess.run([PYTHON, "-m", "runtime.service.daemon", "--config", path,
                        "--socket", os.path.join(str(tmp_path), "s.sock")], cwd=ROOT,
                       capture_output=True, text=True, timeout=30, check=False)
    assert p.returncode == 2
    assert p.stderr.startswith(f"corral-runtimed: {path}: "), p.stderr
    assert message in p.stderr


def test_two_daemons_side_by_side(tag: str, leak_check: None, registry: Registry,
                                  busybox: str) -> None:
    need_root()
    with Runtimed(tag=tag, sandbox_image=busybox, registries=[registry.host]) as a, \
            Runtimed(tag=tag, sandbox_image=busybox, registries=[registry.host]) as b:
        a.start()
        b.start()
        for r in (a, b):
            with grpc.insecure_channel(f"unix://{r.socket}") as ch:
                v = pb_grpc.RuntimeServiceStub(ch).Version(  # type: ignore[no-untyped-call]
                    pb.VersionRequest(version="v1"), timeout=10)
                assert (v.runtime_name, v.runtime_api_version) == ("corral", "v1")
    assert sys.executable
