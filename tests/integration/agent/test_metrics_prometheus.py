"""A real Prometheus (Debian's /usr/bin/prometheus) scrapes the agent's /metrics while a
busybox loop burns CPU in a real cgroup made for the test; queried values are checked
against the cgroup files.

    busybox sh (waits on stdin) -> moved into /<tag> of memory, cpu, cpuacct, blkio and
    freezer (v1 / hybrid) or /<tag> (v2), 64 MiB limit, 0.5 CPU quota -> "go": page cache
    and a busy loop charged to the cgroup
    MetricsServer(registry with CadvisorCollector(source listing it)) on 127.0.0.1:port
    prometheus --config.file (scrape every 1 s) --storage.tsdb.path --web.listen-address
    -> rising CPU, spec values; then freeze the cgroup so the files stand still, and the
    last scraped usage and working set must equal the files.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from agent.metrics.cadvisor import CadvisorCollector, ContainerInfo
from agent.metrics.cgroups import CgroupReader, parse_keyed, parse_net_dev
from agent.metrics.server import MetricsServer

PROMETHEUS = "/usr/bin/prometheus"
BUSYBOX = "/bin/busybox"
CGROUP_ROOT = "/sys/fs/cgroup"
MEMORY_LIMIT = 64 * 1024 * 1024
CPU_QUOTA, CPU_PERIOD = 50000, 100000  # half a CPU: the loop gets throttled
CONTAINER = "burner"
# urllib honours http_proxy; these requests go to 127.0.0.1 only.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


class WorkloadCgroup:
    """The workload's cgroup: v1 / hybrid (one directory per controller) or v2."""

    def __init__(self, tag: str) -> None:
        self.path = f"/{tag}"
        self.v2 = os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers"))
        names = [""] if self.v2 else ["memory", "cpu", "cpuacct", "blkio", "freezer"]
        self.dirs = {n: os.path.join(CGROUP_ROOT, n, tag) for n in names}
        for d in self.dirs.values():
            os.mkdir(d)
        if self.v2:
            write(self.file("memory.max"), str(MEMORY_LIMIT))
            write(self.file("cpu.max"), f"{CPU_QUOTA} {CPU_PERIOD}")
        else:
            write(self.file("memory.limit_in_bytes", "memory"), str(MEMORY_LIMIT))
            write(self.file("cpu.cfs_quota_us", "cpu"), str(CPU_QUOTA))
            write(self.file("cpu.cfs_period_us", "cpu"), str(CPU_PERIOD))

    def file(self, name: str, controller: str = "") -> str:
        return os.path.join(self.dirs["" if self.v2 else controller], name)

    def add(self, pid: int) -> None:
        for d in self.dirs.values():
            write(os.path.join(d, "cgroup.procs"), str(pid))

    def freeze(self, frozen: bool) -> None:
        if self.v2:
            write(self.file("cgroup.freeze"), "1" if frozen else "0")
            path, want = self.file("cgroup.events"), "frozen 1" if frozen else "frozen 0"
        else:
            path, want = self.file("freezer.state", "freezer"), "FROZEN" if frozen else "THAWED"
            write(path, want)
        deadline = time.monotonic() + 5
        while want not in read(path).splitlines():
            assert time.monotonic() < deadline, f"cgroup {self.path}: freeze={frozen} stuck"
            time.sleep(0.01)

    # the files, read directly
    def memory_limit(self) -> int:
        text = read(self.file("memory.max") if self.v2
                    else self.file("memory.limit_in_bytes", "memory"))
        return int(text)

    def cpu_usage_seconds(self) -> float:
        if self.v2:
            return parse_keyed(read(self.file("cpu.stat")))["usage_usec"] / 1e6
        return int(read(self.file("cpuacct.usage", "cpuacct"))) / 1e9

    def working_set(self) -> int:
        if self.v2:
            usage = int(read(self.file("memory.current")))
            inactive = parse_keyed(read(self.file("memory.stat")))["inactive_file"]
        else:
            usage = int(read(self.file("memory.usage_in_bytes", "memory")))
            inactive = parse_keyed(read(self.file("memory.stat", "memory")))[
                "total_inactive_file"]
        return max(usage - inactive, 0)

    def remove(self) -> None:
        for d in self.dirs.values():
            deadline = time.monotonic() + 5
            while os.path.isdir(d):
                try:
                    os.rmdir(d)
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)


class Source:
    def __init__(self, infos: list[ContainerInfo]) -> None:
        self.infos = infos

    def containers(self) -> list[ContainerInfo]:
        return list(self.infos)


class Prometheus:
    def __init__(self, *, directory: str, target_port: int) -> None:
        self.dir = directory
        self.port = free_port()
        os.makedirs(directory)
        config = os.path.join(directory, "prometheus.yml")
        write(config, "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                      "scrape_configs:\n  - job_name: corral-agent\n    static_configs:\n"
                      f"      - targets: ['127.0.0.1:{target_port}']\n")
        self.log = open(os.path.join(directory, "prometheus.log"), "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}",
             f"--storage.tsdb.path={os.path.join(directory, 'data')}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def logs(self) -> str:
        return read(os.path.join(self.dir, "prometheus.log"))[-2000:]

    def get(self, path: str) -> Any:
        with OPENER.open(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
            return json.loads(r.read())

    async def query(self, q: str) -> list[Any]:
        body = await asyncio.to_thread(
            self.get, "/api/v1/query?" + urllib.parse.urlencode({"query": q}))
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    async def wait(self, q: str, *, until: Any, timeout: float = 15, what: str = "") -> list[Any]:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"prometheus exited: {self.logs()}"
            try:
                result = await self.query(q)
                if until(result):
                    return result
            except OSError:
                pass  # not listening yet
            assert time.monotonic() < deadline, f"timed out waiting for {what or q}: {self.logs()}"
            await asyncio.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def workload(tag: str, tmp_path: object, leak_check: None
             ) -> Iterator[tuple[WorkloadCgroup, subprocess.Popen[bytes]]]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    for binary in (PROMETHEUS, BUSYBOX):
        if not os.path.exists(binary):
            pytest.skip(f"{binary} is not installed")
    cgroup = WorkloadCgroup(tag)
    # It waits on stdin until it is in the cgroup, so what it does next is charged there.
    cache = os.path.join(str(tmp_path), "cache")
    script = (f"read go; dd if=/dev/zero of={cache} bs=1M count=4 conv=fsync 2>/dev/null; "
              f"cat {cache} >/dev/null; while :; do :; done")
    proc = subprocess.Popen([BUSYBOX, "sh", "-c", script, tag], stdin=subprocess.PIPE)
    try:
        cgroup.add(proc.pid)
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.close()
        yield cgroup, proc
    finally:
        try:
            cgroup.freeze(False)
        finally:
            proc.kill()
            proc.wait()
            cgroup.remove()


def values(result: list[Any]) -> list[float]:
    return [float(r["value"][1]) for r in result]


@pytest.mark.asyncio
async def test_prometheus_scrapes_cgroup_metrics(
        workload: tuple[WorkloadCgroup, subprocess.Popen[bytes]], tag: str, tmp_path: object
) -> None:
    cgroup, proc = workload
    started = time.time()
    info = ContainerInfo(container_id=tag, container=CONTAINER, pod=f"{tag}-pod",
                         namespace="default", image="busybox:latest", cgroup_path=cgroup.path,
                         pid=proc.pid, started_at=started, network=True)
    registry = CollectorRegistry()
    registry.register(CadvisorCollector(Source([info]), reader=CgroupReader(CGROUP_ROOT)))
    async with MetricsServer(registry) as server:
        prom = Prometheus(directory=os.path.join(str(tmp_path), f"{tag}-prometheus"),
                          target_port=server.port)
        try:
            await check(prom, cgroup, proc.pid, tag)
        finally:
            await asyncio.to_thread(prom.stop)


async def check(prom: Prometheus, cgroup: WorkloadCgroup, pid: int, tag: str) -> None:
    sel = f'{{container="{CONTAINER}",pod="{tag}-pod",namespace="default",name="{tag}"}}'

    # rising CPU: two scrapes, the later higher
    usage = f"container_cpu_usage_seconds_total{sel}"
    first = values(await prom.wait(usage, until=lambda r: len(r) == 1, what="a first scrape"))
    assert first[0] > 0
    result = await prom.wait(usage, until=lambda r: values(r)[0] > first[0], timeout=5,
                             what="a rising container_cpu_usage_seconds_total")
    assert result[0]["metric"]["cpu"] == "total"
    assert result[0]["metric"]["id"] == cgroup.path
    assert result[0]["metric"]["image"] == "busybox:latest"

    # spec values against the files
    limit = values(await prom.query(f"container_spec_memory_limit_bytes{sel}"))
    assert limit == [cgroup.memory_limit()] == [MEMORY_LIMIT]
    assert values(await prom.query(f"container_spec_cpu_quota{sel}")) == [CPU_QUOTA]
    assert values(await prom.query(f"container_spec_cpu_period{sel}")) == [CPU_PERIOD]

    # half a CPU for a busy loop: throttled
    await prom.wait(f"container_cpu_cfs_throttled_periods_total{sel} > 0",
                    until=lambda r: len(r) == 1, timeout=5, what="throttled periods")

    # the pod's interfaces, loopback left out
    with open(f"/proc/{pid}/net/dev") as f:
        interfaces = {i.name for i in parse_net_dev(f.read())}
    rx = await prom.query(f"container_network_receive_bytes_total{sel}")
    assert {r["metric"]["interface"] for r in rx} == interfaces

    # freeze: the files stand still; the next scrape must match them
    cgroup.freeze(True)
    frozen_at = time.time()
    cpu_now, working_set_now = cgroup.cpu_usage_seconds(), cgroup.working_set()
    await prom.wait(f"timestamp(container_cpu_usage_seconds_total{sel}) > {frozen_at + 0.01}",
                    until=lambda r: len(r) == 1, timeout=5, what="a scrape after freezing")
    scraped_cpu = values(await prom.query(usage))[0]
    assert scraped_cpu == pytest.approx(cpu_now, rel=0.02), (scraped_cpu, cpu_now)
    scraped_ws = values(await prom.query(f"container_memory_working_set_bytes{sel}"))[0]
    assert working_set_now > 0
    assert scraped_ws == pytest.approx(working_set_now, rel=0.02, abs=64 * 1024)
    start = values(await prom.query(f"container_start_time_seconds{sel}"))[0]
    assert abs(start - time.time()) < 60


# ---- the same, through a real agent's --http-listen -------------------------------------

from tests.integration.agent import test_nodeapi as nodeapi_test  # noqa: E402

etcd, registry, busybox = nodeapi_test.etcd, nodeapi_test.registry, nodeapi_test.busybox
cp, rtd, agent = nodeapi_test.cp, nodeapi_test.rtd, nodeapi_test.agent


@pytest.mark.asyncio
async def test_prometheus_scrapes_the_agents_http_listen(
        cp: Any, agent: Any, busybox: str, tmp_path: object) -> None:
    """A pod with a CPU limit runs a busy loop under a real agent; Prometheus scrapes the
    agent's --http-listen: the pod's CPU rises, its CFS quota is the limit's."""
    if not os.path.exists(PROMETHEUS):
        pytest.skip(f"{PROMETHEUS} is not installed")
    c = cp.client()
    pod = nodeapi_test.make_pod("burner", agent.node, busybox,
                                ["sh", "-c", "while :; do :; done"], grace=1)
    pod["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "500m"}}
    c.create("pods", pod, namespace="default")
    try:
        await asyncio.to_thread(nodeapi_test.until, "burner Running",
                                lambda: nodeapi_test.running_ready(c, "burner"), agent, 60)
        prom = Prometheus(directory=os.path.join(str(tmp_path), "prometheus"),
                          target_port=agent.http_port)
        try:
            sel = '{container="main",pod="burner",namespace="default"}'
            usage = f"container_cpu_usage_seconds_total{sel}"
            first = values(await prom.wait(usage, until=lambda r: len(r) == 1, timeout=30,
                                           what="a first scrape of the agent"))
            await prom.wait(usage, until=lambda r: values(r)[0] > first[0], timeout=10,
                            what="a rising container_cpu_usage_seconds_total")
            assert values(await prom.query(f"container_spec_cpu_quota{sel}")) == [50000]
            assert values(await prom.query(f"container_spec_cpu_period{sel}")) == [100000]
            # the agent's own: one pod worker, one pod started, its sandbox run through CRI
            assert values(await prom.query("corral_agent_pod_workers")) == [1]
            assert values(await prom.query(
                "corral_agent_pod_start_duration_seconds_count")) == [1]
            started = values(await prom.query(
                'corral_agent_pod_start_duration_seconds_bucket{le="60.0"}'))
            assert started == [1]
            runs = values(await prom.query(
                'corral_agent_cri_duration_seconds_count{call="RunPodSandbox"}'))
            assert runs == [1]
            assert values(await prom.query(
                'corral_agent_cri_duration_seconds_count{call="StartContainer"}')) == [1]
        finally:
            await asyncio.to_thread(prom.stop)
    finally:
        c.delete("pods", "burner", namespace="default", grace_period=0)
        await asyncio.to_thread(
            nodeapi_test.until, "burner gone",
            lambda: not c.list("pods", namespace="default")["items"], agent, 30)
