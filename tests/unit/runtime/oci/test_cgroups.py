"""runtime.oci.cgroups on fake cgroup trees (v1, hybrid, v2) in tmp_path.

`FakeKernel` plays cgroupfs: mkdir fills a new cgroup with its control files, rmdir refuses
while processes are inside, the memory controller keeps memsw >= limit as v1 does, and
tests can make any file refuse the next write with an errno.
"""

from __future__ import annotations

import errno
import json
import os
import signal

import pytest

from runtime.oci import cgroups
from runtime.oci.cgroups import checks as vmod
from runtime.oci.cgroups import devices, host, stats, v2
from runtime.oci.cgroups.fs import CgroupFiles, RecordingFiles
from runtime.oci.errors import ConfigError, SetupError, Unsupported

MAXMEM = "9223372036854771712"
PROCS = {"cgroup.procs": ""}
V1_TEMPLATES: dict[str, dict[str, str]] = {
    "cpu": {"cpu.shares": "1024", "cpu.cfs_quota_us": "-1", "cpu.cfs_period_us": "100000",
            "cpu.cfs_burst_us": "0", "cpu.idle": "0", "cpu.rt_period_us": "1000000",
            "cpu.rt_runtime_us": "0",
            "cpu.stat": "nr_periods 7\nnr_throttled 3\nthrottled_time 4500\n"},
    "cpuacct": {"cpuacct.usage": "123456789", "cpuacct.usage_percpu": "100 200 \n",
                "cpuacct.stat": "user 10\nsystem 5\n"},
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": ""},
    "memory": {"memory.limit_in_bytes": MAXMEM, "memory.memsw.limit_in_bytes": MAXMEM,
               "memory.soft_limit_in_bytes": MAXMEM, "memory.swappiness": "60",
               "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
               "memory.kmem.limit_in_bytes": MAXMEM, "memory.kmem.tcp.limit_in_bytes": MAXMEM,
               "memory.usage_in_bytes": "4096000", "memory.max_usage_in_bytes": "5000000",
               "memory.failcnt": "1", "memory.memsw.usage_in_bytes": "4100000",
               "memory.memsw.max_usage_in_bytes": "5100000", "memory.memsw.failcnt": "0",
               "memory.use_hierarchy": "1", "memory.stat": "cache 8192\nrss 4096\n"},
    "devices": {"devices.allow": "", "devices.deny": "", "devices.list": "a *:* rwm"},
    "freezer": {"freezer.state": "THAWED"},
    "blkio": {"blkio.weight": "500", "blkio.weight_device": "", "blkio.leaf_weight": "500",
              "blkio.leaf_weight_device": "", "blkio.throttle.read_bps_device": "",
              "blkio.throttle.write_bps_device": "", "blkio.throttle.read_iops_device": "",
              "blkio.throttle.write_iops_device": "",
              "blkio.throttle.io_service_bytes_recursive":
                  "8:0 Read 100\n8:0 Write 200\nTotal 300\n",
              "blkio.throttle.io_serviced_recursive": "8:0 Read 1\n8:0 Write 2\nTotal 3\n",
              "blkio.bfq.io_serviced_recursive": "Total 0\n",  # no device uses BFQ
              "blkio.bfq.io_service_bytes_recursive": "Total 0\n"},
    "pids": {"pids.max": "max", "pids.current": "3"},
    "hugetlb": {"hugetlb.2MB.limit_in_bytes": MAXMEM, "hugetlb.2MB.rsvd.limit_in_bytes": MAXMEM,
                "hugetlb.2MB.usage_in_bytes": "2097152", "hugetlb.2MB.max_usage_in_bytes":
                "4194304", "hugetlb.2MB.failcnt": "1", "hugetlb.1GB.limit_in_bytes": MAXMEM},
    "net_cls": {"net_cls.classid": "0"},
    "name=systemd": {},
}
V2_TEMPLATE = {
    "cgroup.controllers": "cpuset cpu io memory hugetlb pids", "cgroup.subtree_control": "",
    "cgroup.freeze": "0", "cgroup.events": "populated 0\nfrozen 0\n", "cgroup.kill": "",
    "cgroup.procs": "", "cpu.weight": "100", "cpu.max": "max 100000", "cpu.max.burst": "0",
    "cpu.idle": "0", "cpuset.cpus": "", "cpuset.mems": "", "memory.max": "max",
    "memory.low": "0", "memory.swap.max": "max", "memory.current": "1000",
    "memory.peak": "3000", "memory.swap.current": "500",
    "memory.events": "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n",
    "memory.swap.events": "max 2\n", "memory.stat": "anon 100\nfile 200\n",
    "cpu.stat": "usage_usec 10\nuser_usec 6\nsystem_usec 4\nnr_periods 5\nnr_throttled 2\n"
                "throttled_usec 7\n",
    "io.weight": "default 100", "io.max": "",
    "io.stat": "8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n",
    "pids.max": "max", "pids.current": "2", "hugetlb.2MB.max": "max",
    "hugetlb.2MB.rsvd.max": "max", "hugetlb.2MB.current": "2097152",
    "hugetlb.2MB.events": "max 3\n", "hugetlb.1GB.max": "max",
}
HYBRID_UNIFIED = {"cgroup.controllers": "hugetlb", "cgroup.subtree_control": "",
                  "cgroup.procs": "", "cgroup.freeze": "0", "cgroup.events": "frozen 0\n",
                  "cgroup.kill": "", "hugetlb.2MB.max": "max", "hugetlb.2MB.rsvd.max": "max",
                  "hugetlb.1GB.max": "max"}
ALL_V1 = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "hugetlb",
          "name=systemd")
HYBRID_V1 = tuple(k for k in ALL_V1 if k != "hugetlb")


def _unlimited(v: str) -> int:
    return 1 << 63 if v.strip() == "-1" else int(v)


class FakeKernel(RecordingFiles):
    """cgroupfs semantics on a plain directory tree."""

    def __init__(self, templates: dict[str, dict[str, str]]) -> None:
        super().__init__()
        self.templates = templates  # mountpoint -> control files of a new cgroup
        self.refuse: dict[str, list[int]] = {}  # file name -> errnos for its next writes

    def _mount(self, path: str) -> str:
        return max((m for m in self.templates if path == m or path.startswith(m + "/")),
                   key=len)

    def mkdir(self, path: str) -> None:
        mount = self._mount(path)
        cur = mount
        for part in path[len(mount):].strip("/").split("/"):
            cur = f"{cur}/{part}"
            if not os.path.isdir(cur):
                os.mkdir(cur)
                for name, content in self.templates[mount].items():
                    with open(f"{cur}/{name}", "w") as f:
                        f.write(content)

    def write(self, path: str, value: str) -> None:
        self.writes.append((path, value))
        d, name = os.path.split(path)
        if self.refuse.get(name):
            e = self.refuse[name].pop(0)
            raise OSError(e, os.strerror(e))
        pair = {"memory.limit_in_bytes": "memory.memsw.limit_in_bytes",
                "memory.memsw.limit_in_bytes": "memory.limit_in_bytes"}
        if name in pair and os.path.exists(f"{d}/{pair[name]}"):
            other = _unlimited(self.read(f"{d}/{pair[name]}"))
            limit, memsw = ((_unlimited(value), other) if name == "memory.limit_in_bytes"
                            else (other, _unlimited(value)))
            if limit > memsw:
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        CgroupFiles.write(self, path, value)
        if name == "cgroup.freeze":
            CgroupFiles.write(self, f"{d}/cgroup.events", f"populated 1\nfrozen {value}\n")

    def rmdir(self, path: str) -> None:
        if self.read(f"{path}/cgroup.procs").strip() or any(
                e.is_dir() for e in os.scandir(path)):
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
        for e in os.scandir(path):
            os.unlink(e.path)
        os.rmdir(path)


class Tree:
    def __init__(self, root: str, kernel: FakeKernel, mounts: dict[str, str]) -> None:
        self.root, self.kernel, self.mounts = root, kernel, mounts

    def manager(self, cgroups_path: str | None = "/pod/ctr",
                container_id: str = "ctr") -> cgroups.Manager:
        m = cgroups.open_manager(container_id=container_id, cgroups_path=cgroups_path,
                                 root=self.root)
        m.files = self.kernel
        return m

    def created(self, cgroups_path: str = "/pod/ctr") -> cgroups.Manager:
        """A manager whose cgroup exists; the writes of create() are forgotten."""
        m = self.manager(cgroups_path)
        m.create()
        self.kernel.writes.clear()
        return m

    def file(self, key: str, rel: str) -> str:
        with open(f"{self.mounts[key]}/{rel}") as f:
            return f.read()

    def writes(self, below: str = "/pod/ctr") -> list[tuple[str, str]]:
        """(hierarchy/file, value) of every write into the container's cgroups."""
        out = []
        for path, value in self.kernel.writes:
            for key, mp in self.mounts.items():
                if path.startswith(mp + below + "/"):
                    out.append((f"{key}/{path[len(mp + below) + 1:]}", value))
        return out


@pytest.fixture(autouse=True)
def sysfs(tmp_path, monkeypatch):
    """Online CPUs 0-3, no NUMA node file (node 0 only), huge pages 2MB and 1GB."""
    sysdir = tmp_path / "sys"
    (sysdir / "hugepages" / "hugepages-2048kB").mkdir(parents=True)
    (sysdir / "hugepages" / "hugepages-1048576kB").mkdir()
    (sysdir / "cpu-online").write_text("0-3\n")
    monkeypatch.setattr(vmod, "CPU_ONLINE", str(sysdir / "cpu-online"))
    monkeypatch.setattr(vmod, "NODE_ONLINE", str(sysdir / "no-such-file"))
    monkeypatch.setattr(vmod, "HUGEPAGES", str(sysdir / "hugepages"))
    monkeypatch.setattr(cgroups, "DESTROY_TIMEOUT", 0.05)


def make_tree(tmp_path, monkeypatch, mode: str, v1_keys: tuple[str, ...] = HYBRID_V1,
              self_cgroup: str = "") -> Tree:
    root = tmp_path / "cgroup"
    root.mkdir()
    lines, templates, mounts = [], {}, {}
    if mode in ("v1", "hybrid"):
        for i, key in enumerate(v1_keys):
            mp = root / key.replace("name=", "")
            files = dict(PROCS)
            for c in key.split(","):
                files.update(V1_TEMPLATES[c])
            lines.append(f"{40 + i} 31 0:{40 + i} / {mp} rw,nosuid - cgroup cgroup rw,{key}")
            templates[str(mp)] = files
            mounts[key] = str(mp)
    if mode == "hybrid":
        mp = root / "unified"
        lines.append(f"60 31 0:60 / {mp} rw - cgroup2 cgroup2 rw,nsdelegate")
        templates[str(mp)], mounts["unified"] = HYBRID_UNIFIED, str(mp)
    if mode == "v2":
        lines.append(f"60 27 0:60 / {root} rw - cgroup2 cgroup2 rw")
        templates[str(root)], mounts["unified"] = V2_TEMPLATE, str(root)
    for mp, files in templates.items():
        os.makedirs(mp, exist_ok=True)
        for name, content in files.items():
            (tmp_path / mp / name).write_text(content)
    if "cpuset" in mounts:
        (root / "cpuset" / "cpuset.cpus").write_text("0-3\n")
        (root / "cpuset" / "cpuset.mems").write_text("0\n")
    lines.insert(0, f"31 27 0:28 / {root} rw - tmpfs tmpfs rw")
    (tmp_path / "mountinfo").write_text("\n".join(lines) + "\n")
    (tmp_path / "self-cgroup").write_text(self_cgroup)
    monkeypatch.setattr(host, "MOUNTINFO", str(tmp_path / "mountinfo"))
    monkeypatch.setattr(host, "SELF_CGROUP", str(tmp_path / "self-cgroup"))
    return Tree(str(root), FakeKernel(templates), mounts)


@pytest.fixture(params=["v1", "hybrid", "v2"])
def any_tree(request, tmp_path, monkeypatch):
    keys = ALL_V1 if request.param == "v1" else HYBRID_V1
    return make_tree(tmp_path, monkeypatch, request.param, keys)


# --- host detection ----------------------------------------------------------------------

MI = "{id} 31 0:{id} {root} {mp} rw - {fs} {fs} {opts}"


@pytest.mark.parametrize(("lines", "mode", "keys"), [
    pytest.param([MI.format(id=1, root="/", mp="/sys/fs/cgroup", fs="cgroup2", opts="rw")],
                 "v2", ["unified"], id="v2"),
    pytest.param([MI.format(id=1, root="/", mp="/sys/fs/cgroup/memory", fs="cgroup",
                            opts="rw,memory"),
                  MI.format(id=2, root="/", mp="/sys/fs/cgroup/cpu,cpuacct", fs="cgroup",
                            opts="rw,cpu,cpuacct"),
                  MI.format(id=3, root="/", mp="/sys/fs/cgroup/systemd", fs="cgroup",
                            opts="rw,xattr,release_agent=/x,name=systemd")],
                 "v1", ["memory", "cpu,cpuacct", "name=systemd"], id="v1-comounted"),
    pytest.param([MI.format(id=1, root="/", mp="/sys/fs/cgroup/pids", fs="cgroup",
                            opts="rw,pids"),
                  MI.format(id=2, root="/", mp="/sys/fs/cgroup/unified", fs="cgroup2",
                            opts="rw")],
                 "hybrid", ["pids", "unified"], id="hybrid"),
    pytest.param([MI.format(id=1, root="/", mp="/sys/fs/cgroup/pids", fs="cgroup",
                            opts="rw,pids"),
                  MI.format(id=2, root="/", mp="/mnt/pids", fs="cgroup", opts="rw,pids"),
                  MI.format(id=3, root="/", mp="/sys/fs/cgroup/pids", fs="cgroup",
                            opts="rw,pids")],
                 "v1", ["pids"], id="outside-root-and-duplicates-ignored"),
])
def test_parse_mountinfo(lines, mode, keys):
    h = host.parse_mountinfo("\n".join(lines), "/sys/fs/cgroup")
    assert (h.mode, [x.key for x in h.hierarchies]) == (mode, keys)


def test_parse_mountinfo_unescapes_and_keeps_mount_root():
    text = MI.format(id=1, root="/docker/a\\040b", mp="/sys/fs/cgroup/my\\040mem",
                     fs="cgroup", opts="rw,memory")
    (h,) = host.parse_mountinfo(text, "/sys/fs/cgroup").hierarchies
    assert (h.mountpoint, h.root, h.controllers) == ("/sys/fs/cgroup/my mem", "/docker/a b",
                                                     ("memory",))


def test_parse_mountinfo_without_cgroups():
    with pytest.raises(SetupError, match="no cgroup filesystem is mounted at /sys/fs/cgroup"):
        host.parse_mountinfo("22 27 0:21 / /proc rw - proc proc rw", "/sys/fs/cgroup")


@pytest.mark.parametrize(("cgroups_path", "expected"), [
    pytest.param("/a/b", {"memory": "/cg/memory/a/b", "unified": "/cg/unified/a/b"},
                 id="absolute"),
    pytest.param(None, {"memory": "/cg/memory/ctr1", "unified": "/cg/unified/ctr1"},
                 id="default-is-container-id"),
    pytest.param("", {"memory": "/cg/memory/ctr1", "unified": "/cg/unified/ctr1"},
                 id="empty-is-container-id"),
    pytest.param("x//y/./", {"memory": "/cg/memory/me/x/y", "unified": "/cg/unified/u/x/y"},
                 id="relative-to-own-cgroup-minus-mount-root"),
])
def test_cgroup_dirs(tmp_path, monkeypatch, cgroups_path, expected):
    (tmp_path / "self").write_text("4:memory:/docker/c1/me\n0::/u\n")
    monkeypatch.setattr(host, "SELF_CGROUP", str(tmp_path / "self"))
    h = host.Host("/cg", "hybrid", [host.Hierarchy("memory", "/cg/memory", "/docker/c1",
                                                   ("memory",)),
                                    host.Hierarchy("unified", "/cg/unified/", "/", ())])
    assert host.cgroup_dirs(h, container_id="ctr1", cgroups_path=cgroups_path) == expected


@pytest.mark.parametrize(("cgroups_path", "message"), [
    pytest.param("/a/../../etc", 'linux.cgroupsPath: must not contain "..", got',
                 id="dotdot"),
    pytest.param("/", "linux.cgroupsPath: must name a cgroup below the hierarchy root",
                 id="root"),
    pytest.param(".", "linux.cgroupsPath: must name a cgroup below the hierarchy root",
                 id="own-cgroup"),
])
def test_cgroup_dirs_refuses(cgroups_path, message):
    h = host.Host("/cg", "v2", [host.Hierarchy("unified", "/cg", "/", ())])
    with pytest.raises(ConfigError, match=message):
        host.cgroup_dirs(h, container_id="c", cgroups_path=cgroups_path)


@pytest.mark.parametrize(("running", "message"), [
    pytest.param(False, "--systemd-cgroup: systemd is not running", id="not-running"),
    pytest.param(True, "--systemd-cgroup: the systemd cgroup driver is not implemented",
                 id="running"),
])
def test_systemd_driver_is_unsupported(tmp_path, monkeypatch, running, message):
    if running:
        (tmp_path / "systemd").mkdir()
    monkeypatch.setattr(cgroups, "SYSTEMD_RUNNING", str(tmp_path / "systemd"))
    with pytest.raises(Unsupported, match=message):
        cgroups.open_manager(container_id="c", cgroups_path="a:b:c", systemd=True)


def test_features():
    assert cgroups.features() == {"v1": True, "v2": True, "systemd": False,
                                  "systemdUser": False, "rdma": True}


# --- validate ----------------------------------------------------------------------------

@pytest.mark.parametrize(("resources", "message"), [
    pytest.param({"memory": {"limit": -5}}, "linux.resources.memory.limit: must be >= -1, got -5",
                 id="memory-limit"),
    pytest.param({"memory": {"reservation": -2}},
                 "linux.resources.memory.reservation: must be >= -1, got -2", id="reservation"),
    pytest.param({"memory": {"limit": 200, "swap": 100}},
                 r"linux.resources.memory.swap: memory\+swap limit must be >= memory.limit "
                 r"\(200\), got 100", id="swap-below-limit"),
    pytest.param({"memory": {"swappiness": 101}},
                 r"linux.resources.memory.swappiness: must be 0..100, got 101", id="swappiness"),
    pytest.param({"memory": {"limit": True}},
                 "linux.resources.memory.limit: must be an integer, got True", id="bool"),
    pytest.param({"cpu": {"shares": 1}},
                 "linux.resources.cpu.shares: must be 2..262144 or 0, got 1", id="shares"),
    pytest.param({"cpu": {"quota": 999}},
                 r"linux.resources.cpu.quota: must be -1 \(unlimited\) or >= 1000 us, got 999",
                 id="quota"),
    pytest.param({"cpu": {"period": 999}},
                 "linux.resources.cpu.period: must be 1000..1000000 or 0, got 999", id="period"),
    pytest.param({"cpu": {"cpus": "0-x"}},
                 'linux.resources.cpu.cpus: must be a list like "0-3,5", got \'0-x\'',
                 id="cpus-syntax"),
    pytest.param({"cpu": {"cpus": "3-1"}}, "linux.resources.cpu.cpus: must be a list like",
                 id="cpus-backwards"),
    pytest.param({"cpu": {"cpus": "2-5"}},
                 r"linux.resources.cpu.cpus: CPU 4 is not online \(online: 0-3\), got '2-5'",
                 id="cpus-offline"),
    pytest.param({"cpu": {"mems": "0,1"}},
                 r"linux.resources.cpu.mems: memory node 1 is not online \(online: 0\)",
                 id="mems-no-node-file"),
    pytest.param({"blockIO": {"weight": 5}},
                 "linux.resources.blockIO.weight: must be 10..1000 or 0, got 5", id="blkio"),
    pytest.param({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "rate": 1}]}},
                 r"linux.resources.blockIO.throttleReadBpsDevice\[0\].minor: is required",
                 id="throttle-minor"),
    pytest.param({"devices": [{"allow": False, "access": "rwm"}, {"allow": True, "type": "x"}]},
                 r'linux.resources.devices\[1\].type: must be "a", "b" or "c", got \'x\'',
                 id="device-type"),
    pytest.param({"devices": [{"allow": True, "access": "rwx"}]},
                 r'linux.resources.devices\[0\].access: must be a subset of "rwm", got \'rwx\'',
                 id="device-access"),
    pytest.param({"devices": [{"allow": True, "access": "rr"}]},
                 r"linux.resources.devices\[0\].access: must be a subset", id="device-access-dup"),
    pytest.param({"devices": [{"allow": True, "major": -2}]},
                 r"linux.resources.devices\[0\].major: must be -1 \(any\) or 0..4294967295",
                 id="device-major"),
    pytest.param({"devices": [{"access": "r"}]},
                 r"linux.resources.devices\[0\].allow: must be true or false", id="device-allow"),
    pytest.param({"hugepageLimits": [{"pageSize": "4MB", "limit": 1}]},
                 r"linux.resources.hugepageLimits\[0\].pageSize: no such huge page size on this "
                 r"host, got '4MB' \(available: 2MB, 1GB\)", id="hugepage-size"),
])
def test_validate_refuses(resources, message):
    with pytest.raises(ConfigError, match=message):
        cgroups.validate(resources)


@pytest.mark.parametrize("resources", [
    pytest.param({}, id="empty"),
    pytest.param({"memory": {"limit": -1, "swap": 0, "reservation": 0, "swappiness": 0}},
                 id="memory-unset-and-unlimited"),
    pytest.param({"memory": {"limit": 100, "swap": -1}}, id="unlimited-swap"),
    pytest.param({"cpu": {"shares": 0, "quota": -1, "period": 0, "cpus": "0-1,3", "mems": "0"}},
                 id="cpu"),
    pytest.param({"pids": {"limit": -1}}, id="pids-unlimited"),
    pytest.param({"pids": {"limit": 0}}, id="pids-zero"),
    pytest.param({"blockIO": {"weight": 0, "weightDevice": [{"major": 8, "minor": 0,
                                                              "weight": 10}]}}, id="blkio"),
    pytest.param({"devices": [{"allow": False, "access": "rwm"},
                              {"allow": True, "type": "c", "major": 1, "minor": -1,
                               "access": "m"}]}, id="devices"),
    pytest.param({"hugepageLimits": [{"pageSize": "1GB", "limit": 0}]}, id="hugepages"),
])
def test_validate_accepts(resources):
    cgroups.validate(resources)


V2_HOST = host.Host("/x", "v2", [host.Hierarchy("unified", "/x", "/", ())])
V1_HOST = host.Host("/x", "v1", [host.Hierarchy("net_cls", "/x/net_cls", "/", ("net_cls",))])


@pytest.mark.parametrize(("resources", "h", "error", "message"), [
    pytest.param({"unified": {"memory.high": "1G"}}, V1_HOST, Unsupported,
                 "linux.resources.unified: needs cgroup v2; this host is v1", id="unified-v1"),
    pytest.param({"unified": {"../x": "1"}}, V2_HOST, ConfigError,
                 r"linux.resources.unified.../x: keys must be file names", id="unified-path"),
    pytest.param({"unified": {"memoryhigh": "1"}}, V2_HOST, ConfigError,
                 "keys must be file names like", id="unified-no-dot"),
    pytest.param({"unified": {"cgroup.procs": "1"}}, V2_HOST, ConfigError,
                 "processes are placed in the cgroup by the runtime", id="unified-procs"),
    pytest.param({"network": {"classID": 5}}, V2_HOST, Unsupported,
                 "linux.resources.network: cgroup v2 has no net_cls", id="network-v2"),
    pytest.param({"network": {"priorities": [{"name": "eth0", "priority": 1}]}}, V1_HOST,
                 Unsupported, "linux.resources.network.priorities: the net_prio cgroup",
                 id="net-prio-missing"),
    pytest.param({"rdma": {"mlx5_0": {"hcaHandles": 1}}}, V1_HOST, Unsupported,
                 "linux.resources.rdma: the rdma cgroup controller is not available",
                 id="rdma-missing"),
])
def test_validate_host_dependent(resources, h, error, message):
    with pytest.raises(error, match=message):
        cgroups.validate(resources, host=h)


@pytest.mark.parametrize(("resources", "h"), [
    pytest.param({"network": {"classID": 5}}, V1_HOST, id="net-cls-mounted"),
    pytest.param({"network": {"classID": 0}}, V2_HOST, id="network-unset-on-v2"),
])
def test_validate_host_dependent_accepts(resources, h):
    cgroups.validate(resources, host=h)


def test_validate_field_prefix():
    with pytest.raises(ConfigError, match=r"^config.json: resources.pids.limit: must be an"):
        cgroups.validate({"pids": {"limit": "10"}}, "resources")


@pytest.mark.parametrize(("text", "ranges"), [
    pytest.param("0-3,5\n", [(0, 3), (5, 5)], id="list"),
    pytest.param("", [], id="empty"),
    pytest.param("7", [(7, 7)], id="single"),
])
def test_parse_list(text, ranges):
    assert vmod.parse_list(text) == ranges


@pytest.mark.parametrize("text", ["1-", "-1", "a", "1,,2", "2-1", "\u0661"])
def test_parse_list_refuses(text):
    with pytest.raises(ValueError):
        vmod.parse_list(text)


@pytest.mark.parametrize(("kib", "name"), [(64, "64KB"), (2048, "2MB"), (32768, "32MB"),
                                           (1048576, "1GB"), (16777216, "16GB"), (1536, "1.5MB")])
def test_page_size_name(kib, name):
    assert vmod.page_size_name(kib) == name


# --- create ------------------------------------------------------------------------------

def test_create_v1_makes_every_hierarchy_and_initialises_cpuset(tmp_path, monkeypatch):
    t = make_tree(tmp_path, monkeypatch, "hybrid")
    m = t.manager("/pod/ctr")
    m.create()
    for key, mp in t.mounts.items():
        assert os.path.isdir(f"{mp}/pod/ctr"), key
    assert (t.file("cpuset", "pod/cpuset.cpus"), t.file("cpuset", "pod/cpuset.mems")) == \
        ("0-3", "0")
    assert (t.file("cpuset", "pod/ctr/cpuset.cpus"), t.file("cpuset", "pod/ctr/cpuset.mems")) \
        == ("0-3", "0")
    assert m.exists()


def test_create_v1_inherits_from_the_nearest_configured_parent(tmp_path, monkeypatch):
    t = make_tree(tmp_path, monkeypatch, "v1", ("cpuset",))
    t.kernel.mkdir(f"{t.mounts['cpuset']}/pod")
    with open(f"{t.mounts['cpuset']}/pod/cpuset.cpus", "w") as f:
        f.write("2")
    with open(f"{t.mounts['cpuset']}/pod/cpuset.mems", "w") as f:
        f.write("0")
    t.manager("/pod/ctr").create()
    assert t.file("cpuset", "pod/ctr/cpuset.cpus") == "2"


def test_create_is_idempotent(any_tree):
    m = any_tree.manager()
    m.create()
    for d in m.dirs.values():
        with open(f"{d}/cgroup.procs", "w") as f:
            f.write("77")  # a process of another container of the pod: joining keeps it
    before = len(any_tree.kernel.writes)
    m.create()
    assert m.pids() == [77]
    assert [w for w in any_tree.kernel.writes[before:] if "cpuset" in w[0]] == []


def test_create_v2_enables_controllers_in_ancestors_only(tmp_path, monkeypatch):
    t = make_tree(tmp_path, monkeypatch, "v2")
    t.manager("/pod/ctr").create()
    want = "+cpuset +cpu +io +memory +hugetlb +pids"
    assert t.file("unified", "cgroup.subtree_control") == want
    assert t.file("unified", "pod/cgroup.subtree_control") == want
    assert t.file("unified", "pod/ctr/cgroup.subtree_control") == ""


def test_create_v2_skips_enabled_and_tolerates_refusal(tmp_path, monkeypatch):
    t = make_tree(tmp_path, monkeypatch, "v2")
    with open(f"{t.root}/cgroup.subtree_control", "w") as f:
        f.write("cpu memory")
    t.kernel.refuse["cgroup.subtree_control"] = [errno.EBUSY, errno.EBUSY]
    t.manager("/ctr").create()
    ctl = f"{t.root}/cgroup.subtree_control"
    assert t.kernel.writes == [(ctl, "+cpuset +io +hugetlb +pids"), (ctl, "+cpuset"),
                               (ctl, "+io"), (ctl, "+hugetlb"), (ctl, "+pids")]


def test_create_failure_is_setup_error(tmp_path, monkeypatch):
    t = make_tree(tmp_path, monkeypatch, "v2")
    with open(f"{t.root}/blocked", "w") as f:
        f.write("")
    m = t.manager("/blocked/ctr")
    m.files = CgroupFiles()
    with pytest.raises(SetupError, match=r"creating cgroup .*/blocked/ctr: Not a directory"):
        m.create()


# --- apply: v1 ---------------------------------------------------------------------------

@pytest.mark.parametrize(("resources", "expected"), [
    pytest.param({"cpu": {"shares": 512, "quota": 50000, "period": 100000, "burst": 1000,
                          "idle": 1, "realtimePeriod": 1000000, "realtimeRuntime": 950000}},
                 [("cpu/cpu.shares", "512"), ("cpu/cpu.cfs_period_us", "100000"),
                  ("cpu/cpu.cfs_burst_us", "1000"), ("cpu/cpu.cfs_quota_us", "50000"),
                  ("cpu/cpu.idle", "1"), ("cpu/cpu.rt_period_us", "1000000"),
                  ("cpu/cpu.rt_runtime_us", "950000")], id="cpu"),
    pytest.param({"cpu": {"quota": -1}}, [("cpu/cpu.cfs_quota_us", "-1")], id="quota-unlimited"),
    pytest.param({"cpu": {"cpus": "1-2", "mems": "0", "shares": 0}},
                 [("cpuset/cpuset.cpus", "1-2"), ("cpuset/cpuset.mems", "0")], id="cpuset"),
    pytest.param({"memory": {"limit": 100 << 20, "reservation": 50 << 20, "swap": 200 << 20,
                             "swappiness": 0, "disableOOMKiller": True, "kernelTCP": 1 << 20}},
                 [("memory/memory.limit_in_bytes", "104857600"),
                  ("memory/memory.memsw.limit_in_bytes", "209715200"),
                  ("memory/memory.soft_limit_in_bytes", "52428800"),
                  ("memory/memory.kmem.tcp.limit_in_bytes", "1048576"),
                  ("memory/memory.oom_control", "1"), ("memory/memory.swappiness", "0")],
                 id="memory"),
    pytest.param({"memory": {"limit": -1}},
                 [("memory/memory.memsw.limit_in_bytes", "-1"),
                  ("memory/memory.limit_in_bytes", "-1")], id="memory-unlimited-implies-swap"),
    pytest.param({"memory": {"disableOOMKiller": False}}, [("memory/memory.oom_control", "0")],
                 id="oom-killer-back-on"),
    pytest.param({"pids": {"limit": 100}}, [("pids/pids.max", "100")], id="pids"),
    pytest.param({"pids": {"limit": 0}}, [("pids/pids.max", "max")], id="pids-zero-unlimited"),
    pytest.param({"pids": {"limit": -1}}, [("pids/pids.max", "max")], id="pids-minus-one"),
    pytest.param({"blockIO": {"weight": 300, "leafWeight": 200,
                              "weightDevice": [{"major": 8, "minor": 0, "weight": 400,
                                                "leafWeight": 100}],
                              "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1024}],
                              "throttleWriteIOPSDevice": [{"major": 8, "minor": 16,
                                                           "rate": 50}]}},
                 [("blkio/blkio.weight", "300"), ("blkio/blkio.leaf_weight", "200"),
                  ("blkio/blkio.weight_device", "8:0 400"),
                  ("blkio/blkio.leaf_weight_device", "8:0 100"),
                  ("blkio/blkio.throttle.read_bps_device", "8:0 1024"),
                  ("blkio/blkio.throttle.write_iops_device", "8:16 50")], id="blkio"),
    pytest.param({"devices": [{"allow": False, "access": "rwm"},
                              {"allow": True, "type": "c", "major": 1, "minor": 3,
                               "access": "rwm"},
                              {"allow": True, "type": "c", "access": "m"},
                              {"allow": True, "type": "b", "major": 8},
                              {"allow": False, "type": "c", "major": 5, "minor": 1,
                               "access": "w"}]},
                 [("devices/devices.deny", "a *:* rwm"), ("devices/devices.allow", "c 1:3 rwm"),
                  ("devices/devices.allow", "c *:* m"), ("devices/devices.allow", "b 8:* rwm"),
                  ("devices/devices.deny", "c 5:1 w")], id="devices-in-order"),
    pytest.param({"hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20},
                                     {"pageSize": "1GB", "limit": 0}]},
                 [("hugetlb/hugetlb.2MB.limit_in_bytes", "4194304"),
                  ("hugetlb/hugetlb.2MB.rsvd.limit_in_bytes", "4194304"),
                  ("hugetlb/hugetlb.1GB.limit_in_bytes", "0"),
                  ("hugetlb/hugetlb.1GB.rsvd.limit_in_bytes", "0")], id="hugetlb-v1"),
    pytest.param({"memory": {"limit": 0, "swap": 0}, "cpu": {"shares": 0}, "blockIO": {},
                  "devices": []}, [], id="all-unset-writes-nothing"),
])
def test_apply_v1(tmp_path, monkeypatch, resources, expected):
    t = make_tree(tmp_path, monkeypatch, "v1", ALL_V1)
    m = t.created()
    m.apply(resources)
    assert t.writes() == expected
    for name, value in dict(expected).items():  # the last write of each file stays
        key, rel = name.split("/", 1)
        if os.path.exists(f"{t.mounts[key]}/pod/ctr/{rel}"):
            assert t.file(key, f"pod/ctr/{rel}") == value


def test_apply_v1_hugetlb_without_reservation_files(tmp_path, monkeypatch):
    t = make_tree(tmp_path, monkeypatch, "v1", ALL_V1)
    m = t.created()
    os.unlink(f"{t.mounts['hugetlb']}/pod/ctr/hugetlb.2MB.rsvd.limit_in_bytes")
    m.apply({"hugepageLimits": [{"pageSize": "2MB", "limit": 1}, {"pageSize": "1GB",
                                                                   "limit": 2}]})
    assert t.writes() == [("hugetlb/hugetlb.2MB.limit_in_bytes", "1"),
                          ("hugetlb/hugetlb.2MB.rsvd.limit_in_bytes", "1"),
                          ("hugetlb/hugetlb.1GB.limit_in_bytes", "2")]


@pytest.mark.parametrize(("steps", "orders"), [
    pytest.param([(100, 200)], [["limit", "memsw"]], id="first-set-lowers-both"),
    pytest.param([(100, 200), (300, 600)], [["limit", "memsw"], ["memsw", "limit"]],
                 id="raise-swap-first"),
    pytest.param([(300, 600), (50, 80)], [["limit", "memsw"], ["limit", "memsw"]],
                 id="lower-limit-first"),
    pytest.param([(100, 200), (150, -1)], [["limit", "memsw"], ["memsw", "limit"]],
                 id="unlimited-swap-first"),
])
def test_apply_v1_memory_order_satisfies_the_kernel(tmp_path, monkeypatch, steps, orders):
    t = make_tree(tmp_path, monkeypatch, "v1", ("memory",))
    m = t.created()
    for (limit, swap), order in zip(steps, orders, strict=True):
        n = len(t.kernel.writes)
        m.apply({"memory": {"limit": limit << 20, "swap": swap if swap == -1 else swap << 20}})
        names = [p.rsplit("/", 1)[1] for p, _ in t.kernel.writes[n:]]
        assert names == [{"limit": "memory.limit_in_bytes",
                          "memsw": "memory.memsw.limit_in_bytes"}[o] for o in order]
        assert t.file("memory", "pod/ctr/memory.limit_in_bytes") == str(limit << 20)


def test_apply_v1_cpu_period_retried_after_quota(tmp_path, monkeypatch):
    t = make_tree(tmp_path, monkeypatch, "v1", ("cpu",))
    m = t.created()
    t.kernel.refuse["cpu.cfs_period_us"] = [errno.EINVAL]
    m.apply({"cpu": {"quota": 20000, "period": 10000}})
    assert t.writes() == [("cpu/cpu.cfs_period_us", "10000"), ("cpu/cpu.cfs_quota_us", "20000"),
                          ("cpu/cpu.cfs_period_us", "10000")]
    assert t.file("cpu", "pod/ctr/cpu.cfs_period_us") == "10000"


def test_apply_partial_update_writes_only_what_is_given(tmp_path, monkeypatch):
    t = make_tree(tmp_path, monkeypatch, "v1", ALL_V1)
    m = t.created()
    m.apply({"cpu": {"shares": 512, "quota": 30000, "period": 100000}, "pids": {"limit": 9}})
    n = len(t.kernel.writes)
    m.apply({"cpu": {"quota": 60000}})
    assert t.kernel.writes[n:] == [(f"{t.mounts['cpu']}/pod/ctr/cpu.cfs_quota_us", "60000")]
    assert (t.file("cpu", "pod/ctr/cpu.shares"), t.file("pids", "pod/ctr/pids.max")) == \
        ("512", "9")


@pytest.mark.parametrize(("refuse", "resources", "error", "message"), [
    pytest.param({"cpu.shares": errno.EINVAL}, {"cpu": {"shares": 512}}, ConfigError,
                 r"^config.json: linux.resources.cpu.shares: the kernel refused '512' in "
                 r"cpu.shares: Invalid argument$", id="einval"),
    pytest.param({"memory.limit_in_bytes": errno.EBUSY}, {"memory": {"limit": 4096}},
                 ConfigError, r"linux.resources.memory.limit: the kernel refused '4096' in "
                 r"memory.limit_in_bytes: below the current usage 4096000 \(peak 5000000\)",
                 id="memory-below-usage"),
    pytest.param({"cpu.cfs_period_us": errno.EINVAL}, {"cpu": {"period": 5000}}, ConfigError,
                 "linux.resources.cpu.period: the kernel refused '5000'", id="period-no-quota"),
    pytest.param({"devices.allow": errno.EPERM},
                 {"devices": [{"allow": True, "type": "c", "major": 1, "minor": 3}]},
                 ConfigError, r"linux.resources.devices\[0\]: the kernel refused 'c 1:3 rwm' "
                 "in devices.allow: Operation not permitted", id="device-not-in-parent"),
    pytest.param({"pids.max": errno.EACCES}, {"pids": {"limit": 5}}, SetupError,
                 r"linux.resources.pids.limit: writing '5' to .*/pids.max: Permission denied",
                 id="eacces-is-setup-error"),
])
def test_apply_v1_kernel_refusals(tmp_path, monkeypatch, refuse, resources, error, message):
    t = make_tree(tmp_path, monkeypatch, "v1", ALL_V1)
    m = t.created()
    t.kernel.refuse.update({k: [v] for k, v in refuse.items()})
    with pytest.raises(error, match=message):
        m.apply(resources)


@pytest.mark.parametrize(("remove", "resources", "message"), [
    pytest.param(["blkio.weight"], {"blockIO": {"weight": 300}},
                 "linux.resources.blockIO.weight: blkio.bfq.weight does not exist in",
                 id="no-cfq-no-bfq"),
    pytest.param(["memory.memsw.limit_in_bytes"], {"memory": {"limit": 10, "swap": 20}},
                 "linux.resources.memory.swap: swap accounting is not enabled", id="no-memsw"),
    pytest.param(["cpu.cfs_burst_us"], {"cpu": {"burst": 5}},
                 "linux.resources.cpu.burst: cpu.cfs_burst_us does not exist", id="no-burst"),
])
def test_apply_v1_missing_files_are_unsupported(tmp_path, monkeypatch, remove, resources,
                                                message):
    t = make_tree(tmp_path, monkeypatch, "v1", ALL_V1)
    m = t.created()
    for name in remove:
        for mp in t.mounts.values():
            if os.path.exists(f"{mp}/pod/ctr/{name}"):
                os.unlink(f"{mp}/pod/ctr/{name}")
    with pytest.raises(Unsupported, match=message):
        m.apply(resources)


@pytest.mark.parametrize(("remove", "add", "resources", "expected"), [
    pytest.param(["blkio.weight", "blkio.weight_device"],
                 ["blkio.bfq.weight", "blkio.bfq.weight_device"],
                 {"blockIO": {"weight": 300, "weightDevice": [{"major": 8, "minor": 0,
                                                                "weight": 20}]}},
                 [("blkio/blkio.bfq.weight", "300"), ("blkio/blkio.bfq.weight_device",
                                                       "8:0 20")], id="bfq"),
    pytest.param(["memory.memsw.limit_in_bytes"], [], {"memory": {"limit": -1}},
                 [("memory/memory.memsw.limit_in_bytes", "-1"),
                  ("memory/memory.limit_in_bytes", "-1")], id="no-memsw-unlimited-ok"),
    pytest.param(["cpu.cfs_burst_us", "cpu.idle"], [], {"cpu": {"burst": 0, "idle": 0}},
                 [("cpu/cpu.cfs_burst_us", "0"), ("cpu/cpu.idle", "0")], id="defaults-ok"),
])
def test_apply_v1_missing_files_tolerated(tmp_path, monkeypatch, remove, add, resources,
                                          expected):
    t = make_tree(tmp_path, monkeypatch, "v1", ALL_V1)
    m = t.created()
    for name in remove:
        for mp in t.mounts.values():
            if os.path.exists(f"{mp}/pod/ctr/{name}"):
                os.unlink(f"{mp}/pod/ctr/{name}")
    for name in add:
        with open(f"{t.mounts['blkio']}/pod/ctr/{name}", "w") as f:
            f.write("")
    m.apply(resources)
    assert t.writes() == expected


@pytest.mark.parametrize(("keys", "resources", "message"), [
    pytest.param(("memory",), {"pids": {"limit": 10}},
                 "linux.resources.pids.limit: the pids cgroup controller is not available",
                 id="pids"),
    pytest.param(("memory",), {"devices": [{"allow": False}]},
                 "linux.resources.devices: the devices cgroup controller is not available",
                 id="devices"),
    pytest.param(("memory",), {"cpu": {"quota": 1, "cpus": ""}},
                 "linux.resources.cpu.quota: the cpu cgroup controller", id="cpu"),
    pytest.param(("memory",), {"network": {"classID": 7}},
                 "linux.resources.network.classID: the net_cls cgroup controller", id="net-cls"),
    pytest.param(HYBRID_V1, {"unified": {"memory.high": "1"}},
                 "linux.resources.unified.memory.high: needs a cgroup v2 host", id="unified"),
    pytest.param(HYBRID_V1, {"rdma": {"mlx5_0": {"hcaHandles": 2}}},
                 "linux.resources.rdma.mlx5_0: the rdma cgroup controller", id="rdma"),
])
def test_apply_v1_missing_controller(tmp_path, monkeypatch, keys, resources, message):
    t = make_tree(tmp_path, monkeypatch, "v1", keys)
    m = t.created()
    with pytest.raises(Unsupported, match=message):
        m.apply(resources)


def test_apply_v1_missing_controller_harmless_defaults(tmp_path, monkeypatch):
    t = make_tree(tmp_path, monkeypatch, "v1", ("memory",))
    m = t.created()
    m.apply({"pids": {"limit": 0}, "cpu": {"shares": 0, "quota": -1}, "network": {},
             "hugepageLimits": []})
    assert t.writes() == []


def test_apply_v1_net_cls(tmp_path, monkeypatch):
    t = make_tree(tmp_path, monkeypatch, "v1", ("net_cls",))
    m = t.created()
    m.apply({"network": {"classID": 1048577}})
    assert t.writes() == [("net_cls/net_cls.classid", "1048577")]


def test_apply_field_prefix_for_update(tmp_path, monkeypatch):
    t = make_tree(tmp_path, monkeypatch, "v1", ("memory",))
    m = t.created()
    with pytest.raises(Unsupported, match=r"^config.json: resources.pids.limit: "):
        m.apply({"pids": {"limit": 3}}, field="resources")


# --- apply: hybrid -----------------------------------------------------------------------

def test_apply_hybrid_hugetlb_goes_to_unified(tmp_path, monkeypatch):
    t = make_tree(tmp_path, monkeypatch, "hybrid")
    m = t.created()
    m.apply({"hugepageLimits": [{"pageSize": "2MB", "limit": 2097152}],
             "pids": {"limit": 5}})
    assert t.file("unified", "cgroup.subtree_control") == "+hugetlb"
    assert t.file("unified", "pod/cgroup.subtree_control") == "+hugetlb"
    assert t.writes() == [("pids/pids.max", "5"),
                          ("unified/hugetlb.2MB.max", "2097152"),
                          ("unified/hugetlb.2MB.rsvd.max", "2097152")]


def test_apply_hybrid_hugetlb_unavailable(tmp_path, monkeypatch):
    t = make_tree(tmp_path, monkeypatch, "hybrid")
    with open(f"{t.mounts['unified']}/cgroup.controllers", "w") as f:
        f.write("")
    m = t.created()
    with pytest.raises(Unsupported, match=r"linux.resources.hugepageLimits: the hugetlb cgroup "
                                          "controller is not available"):
        m.apply({"hugepageLimits": [{"pageSize": "2MB", "limit": 1}]})


# --- apply: v2 ---------------------------------------------------------------------------

@pytest.mark.parametrize(("shares", "weight"), [(2, 1), (1024, 39), (512, 20),
                                                (262144, 10000)])
def test_shares_to_weight(shares, weight):
    assert v2.shares_to_weight(shares) == weight


@pytest.mark.parametrize(("blkio", "io"), [(10, 1), (500, 4950), (1000, 10000), (100, 910)])
def test_blkio_to_io_weight(blkio, io):
    assert v2.blkio_to_io_weight(blkio) == io


@pytest.mark.parametrize(("limit", "swap", "expected"), [
    (100, 300, "200"), (100, 100, "0"), (100, -1, "max"), (-1, 0, "max"), (100, 0, None),
    (0, 0, None),
])
def test_swap_max(limit, swap, expected):
    assert v2.swap_max(limit, swap) == expected


@pytest.mark.parametrize(("resources", "expected"), [
    pytest.param({"cpu": {"shares": 1024, "quota": 50000, "period": 100000, "burst": 10,
                          "idle": 1}},
                 [("cpu.weight", "39"), ("cpu.max.burst", "10"), ("cpu.max", "50000 100000"),
                  ("cpu.idle", "1")], id="cpu"),
    pytest.param({"cpu": {"quota": -1, "period": 20000}}, [("cpu.max", "max 20000")],
                 id="cpu-unlimited"),
    pytest.param({"cpu": {"quota": 30000}}, [("cpu.max", "30000")], id="quota-only"),
    pytest.param({"cpu": {"cpus": "0-1", "mems": "0"}},
                 [("cpuset.cpus", "0-1"), ("cpuset.mems", "0")], id="cpuset"),
    pytest.param({"memory": {"limit": 100 << 20, "swap": 300 << 20, "reservation": 50 << 20}},
                 [("memory.swap.max", "209715200"), ("memory.max", "104857600"),
                  ("memory.low", "52428800")], id="memory"),
    pytest.param({"memory": {"limit": -1}}, [("memory.swap.max", "max"), ("memory.max", "max")],
                 id="memory-unlimited"),
    pytest.param({"memory": {"limit": 100, "swap": 100}},
                 [("memory.swap.max", "0"), ("memory.max", "100")], id="no-swap"),
    pytest.param({"memory": {"limit": 2000, "checkBeforeUpdate": True}},
                 [("memory.max", "2000")], id="check-before-update-passes"),
    pytest.param({"pids": {"limit": 64}}, [("pids.max", "64")], id="pids"),
    pytest.param({"pids": {"limit": -1}}, [("pids.max", "max")], id="pids-unlimited"),
    pytest.param({"blockIO": {"weight": 500,
                              "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 10}],
                              "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 0}],
                              "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 3}],
                              "throttleWriteIOPSDevice": [{"major": 8, "minor": 0,
                                                           "rate": 4}]}},
                 [("io.weight", "4950"), ("io.max", "8:0 rbps=10"), ("io.max", "8:0 wbps=max"),
                  ("io.max", "8:0 riops=3"), ("io.max", "8:0 wiops=4")], id="io"),
    pytest.param({"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]},
                 [("hugetlb.2MB.max", "4194304"), ("hugetlb.2MB.rsvd.max", "4194304")],
                 id="hugetlb"),
    pytest.param({"memory": {"limit": 100}, "unified": {"memory.high": "50",
                                                         "memory.max": "200"}},
                 [("memory.max", "100"), ("memory.high", "50"), ("memory.max", "200")],
                 id="unified-last"),
    pytest.param({"devices": []}, [], id="no-device-rules"),
])
def test_apply_v2(tmp_path, monkeypatch, resources, expected):
    t = make_tree(tmp_path, monkeypatch, "v2")
    m = t.created()
    with open(f"{t.root}/pod/ctr/memory.high", "w") as f:
        f.write("max")
    m.apply(resources)
    assert t.writes() == [(f"unified/{n}", v) for n, v in expected]


def test_apply_v2_period_only_keeps_quota(tmp_path, monkeypatch):
    t = make_tree(tmp_path, monkeypatch, "v2")
    m = t.created()
    m.apply({"cpu": {"quota": 25000, "period": 100000}})
    m.apply({"cpu": {"period": 50000}})
    assert t.file("unified", "pod/ctr/cpu.max") == "25000 50000"


def test_apply_v2_bfq_weights(tmp_path, monkeypatch):
    t = make_tree(tmp_path, monkeypatch, "v2")
    m = t.created()
    with open(f"{t.root}/pod/ctr/io.bfq.weight", "w") as f:
        f.write("default 100")
    m.apply({"blockIO": {"weight": 300, "weightDevice": [{"major": 8, "minor": 0,
                                                           "weight": 50}]}})
    assert t.writes() == [("unified/io.bfq.weight", "300"), ("unified/io.bfq.weight", "8:0 50")]


@pytest.mark.parametrize(("resources", "error", "message"), [
    pytest.param({"cpu": {"realtimeRuntime": 1000}}, Unsupported,
                 "linux.resources.cpu.realtimeRuntime: cgroup v2 has no real-time", id="rt"),
    pytest.param({"memory": {"swappiness": 10}}, Unsupported,
                 "linux.resources.memory.swappiness: cgroup v2 has no per-cgroup swappiness",
                 id="swappiness"),
    pytest.param({"memory": {"disableOOMKiller": True}}, Unsupported,
                 "linux.resources.memory.disableOOMKiller: cgroup v2 has no switch",
                 id="oom-killer"),
    pytest.param({"memory": {"kernel": 1000}}, Unsupported,
                 "linux.resources.memory.kernel: cgroup v2 has no kernel memory limit",
                 id="kernel-memory"),
    pytest.param({"memory": {"swap": 1000}}, ConfigError,
                 "linux.resources.memory.swap: on cgroup v2 the swap limit is memory.swap.max "
                 "= swap - limit, so memory.limit must be set with it", id="swap-without-limit"),
    pytest.param({"memory": {"limit": 10, "checkBeforeUpdate": True}}, ConfigError,
                 r"linux.resources.memory.limit: 10 is below the current usage 1000 "
                 r"\(checkBeforeUpdate\)", id="check-before-update"),
    pytest.param({"blockIO": {"weightDevice": [{"major": 8, "minor": 0, "weight": 50}]}},
                 Unsupported, r"linux.resources.blockIO.weightDevice\[0\]: per-device weights "
                 "need the BFQ", id="weight-device-without-bfq"),
    pytest.param({"blockIO": {"leafWeight": 50}}, Unsupported,
                 "linux.resources.blockIO.leafWeight: cgroup v2 has no leaf weights", id="leaf"),
    pytest.param({"network": {"classID": 3}}, Unsupported,
                 "linux.resources.network.classID: the net_cls cgroup controller is not",
                 id="network"),
    pytest.param({"rdma": {"mlx5_0": {"hcaHandles": 3}}}, Unsupported,
                 "linux.resources.rdma.mlx5_0: rdma.max does not exist in .*: the controller is "
                 "not available or not enabled", id="rdma-not-enabled"),
    pytest.param({"unified": {"io.latency": "8:0 target=10"}}, Unsupported,
                 "linux.resources.unified.io.latency: io.latency does not exist",
                 id="unified-missing-file"),
])
def test_apply_v2_refuses(tmp_path, monkeypatch, resources, error, message):
    t = make_tree(tmp_path, monkeypatch, "v2")
    m = t.created()
    with pytest.raises(error, match=message):
        m.apply(resources)


def test_apply_v2_rdma(tmp_path, monkeypatch):
    t = make_tree(tmp_path, monkeypatch, "v2")
    m = t.created()
    with open(f"{t.root}/pod/ctr/rdma.max", "w") as f:
        f.write("")
    m.apply({"rdma": {"mlx5_0": {"hcaHandles": 3, "hcaObjects": 1000}, "mlx4_0": {}}})
    assert t.writes() == [("unified/rdma.max", "mlx5_0 hca_handle=3 hca_object=1000")]


def test_apply_v2_devices_attaches_the_filter(tmp_path, monkeypatch):
    t = make_tree(tmp_path, monkeypatch, "v2")
    m = t.created()
    seen = []
    import runtime.oci.cgroups.bpf as bpf
    monkeypatch.setattr(bpf, "attach_device_filter", lambda p, prog: seen.append((p, prog)))
    rules = [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1,
                                                  "minor": 3, "access": "rw"}]
    m.apply({"devices": rules})
    assert seen == [(f"{t.root}/pod/ctr",
                     devices.assemble(False, [[devices.DEV_CHAR, 1, 3, 6]]))]


# --- device rules --------------------------------------------------------------------------

def R(allow: bool, t: str = "a", major: int = -1, minor: int = -1,
      access: str = "rwm") -> devices.Rule:
    return (allow, t, major, minor, access)


@pytest.mark.parametrize(("rules", "expected"), [
    pytest.param([], (True, []), id="none-allows-all"),
    pytest.param([R(False)], (False, []), id="deny-all"),
    pytest.param([R(False), R(True, "c", 1, 3, "rw"), R(True, "c", 1, 3, "m")],
                 (False, [[2, 1, 3, 7]]), id="allow-merges-access"),
    pytest.param([R(False), R(True, "c", 1, 3), R(False, "c", 1, 3, "w")],
                 (False, [[2, 1, 3, 3]]), id="deny-removes-access"),
    pytest.param([R(False), R(True, "b", 8, 0, "r"), R(False, "b", 8, 0, "r")], (False, []),
                 id="deny-removes-exception"),
    pytest.param([R(True), R(False, "c", 5, 1)], (True, [[2, 5, 1, 7]]), id="deny-list"),
    pytest.param([R(False), R(True, "c", 1, 3), R(True)], (True, []), id="a-resets"),
    pytest.param([R(False), R(True, "a", 1, 3, "r")], (True, []), id="a-ignores-numbers"),
])
def test_emulate_v1_semantics(rules, expected):
    assert devices.emulate(rules) == expected


@pytest.mark.parametrize(("rule", "line"), [
    (R(False), "a *:* rwm"), (R(True, "c", 1, 3, "rw"), "c 1:3 rw"),
    (R(True, "b", 8, -1, "m"), "b 8:* m"), (R(True, "c", -1, 7, "r"), "c *:7 r"),
])
def test_v1_line(rule, line):
    assert devices.v1_line(rule) == line


def test_rules_defaults():
    assert devices.rules([{"allow": True}, {"allow": False, "type": "c", "major": 4,
                                            "minor": None, "access": "r"}]) == \
        [(True, "a", -1, -1, "rwm"), (False, "c", 4, -1, "r")]


def run_bpf(prog: bytes, dev_type: int, access: int, major: int, minor: int) -> int:
    """A tiny interpreter for the instructions assemble() emits."""
    ctx = [(access << 16) | dev_type, major, minor]
    r = [0] * 11
    pc = 0
    insns = [prog[i:i + 8] for i in range(0, len(prog), 8)]
    for _ in range(10000):
        b = insns[pc]
        code, dst, src = b[0], b[1] & 0xF, b[1] >> 4
        off = int.from_bytes(b[2:4], "little", signed=True)
        imm = int.from_bytes(b[4:8], "little", signed=True) & 0xFFFFFFFF
        pc += 1
        if code == 0x61:
            assert src == 1 and off in (0, 4, 8)
            r[dst] = ctx[off // 4]
        elif code == 0x54:
            r[dst] = (r[dst] & imm) & 0xFFFFFFFF
        elif code == 0x74:
            r[dst] = (r[dst] & 0xFFFFFFFF) >> imm
        elif code == 0xBC:
            r[dst] = r[src] & 0xFFFFFFFF
        elif code == 0xB7:
            r[dst] = imm
        elif code in (0x56, 0x5E, 0x16):
            other = r[src] & 0xFFFFFFFF if code == 0x5E else imm
            equal = (r[dst] & 0xFFFFFFFF) == other
            if equal == (code == 0x16):
                pc += off
        elif code == 0x95:
            return r[0]
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")
    raise AssertionError("no exit")


def kernel_v1_allows(default_allow: bool, exceptions: list[list[int]], dev_type: int,
                     access: int, major: int, minor: int) -> bool:
    """security/device_cgroup.c: match_exception / match_exception_partial."""
    for t, ma, mi, acc in exceptions:
        if t != dev_type or ma not in (-1, major) or mi not in (-1, minor):
            continue
        if default_allow and access & acc:
            return False
        if not default_allow and not access & ~acc:
            return True
    return default_allow


RULE_SETS = [
    [],
    [R(False)],
    [R(False), R(True, "c", 1, 3, "rw"), R(True, "c", 1, 5, "rwm"), R(True, "b", 8, -1, "r"),
     R(True, "c", -1, -1, "m")],
    [R(True), R(False, "c", 1, 3, "w"), R(False, "b", -1, 0)],
    [R(False), R(True, "c", 1, 3), R(False, "c", 1, 3, "m"), R(True, "c", 4294967295, 7)],
]


@pytest.mark.parametrize("rules", [pytest.param(r, id=f"set{i}")
                                   for i, r in enumerate(RULE_SETS)])
def test_device_filter_answers_like_v1(rules):
    default_allow, exceptions = devices.emulate(rules)
    prog = devices.assemble(default_allow, exceptions)
    for dev_type in (1, 2):
        for major in (1, 8, 4294967295):
            for minor in (0, 3, 5, 7):
                for access in range(1, 8):
                    want = kernel_v1_allows(default_allow, exceptions, dev_type, access, major,
                                            minor)
                    got = run_bpf(prog, dev_type, access, major, minor)
                    assert got == int(want), (dev_type, major, minor, access)


@pytest.mark.parametrize(("request_", "allowed"), [
    pytest.param((2, devices.ACC_READ, 1, 3), True, id="c1:3-read"),
    pytest.param((2, devices.ACC_READ | devices.ACC_WRITE, 1, 3), True, id="c1:3-rw"),
    pytest.param((2, devices.ACC_MKNOD, 1, 3), False, id="c1:3-mknod"),
    pytest.param((1, devices.ACC_READ, 1, 3), False, id="b1:3"),
    pytest.param((2, devices.ACC_READ, 1, 5), False, id="c1:5"),
])
def test_device_filter_examples(request_, allowed):
    prog = devices.assemble(*devices.emulate([R(False), R(True, "c", 1, 3, "rw")]))
    assert run_bpf(prog, *request_) == int(allowed)


# --- processes ---------------------------------------------------------------------------

def test_add_pid_joins_every_hierarchy(any_tree):
    m = any_tree.manager()
    m.create()
    m.add_pid(4242)
    for key, d in m.dirs.items():
        with open(f"{d}/cgroup.procs") as f:
            assert f.read() == "4242", key
    assert len(m.dirs) == {"v1": len(ALL_V1), "hybrid": len(HYBRID_V1) + 1,
                           "v2": 1}[m.mode]


def test_add_pid_failure(tmp_path, monkeypatch):
    t = make_tree(tmp_path, monkeypatch, "v2")
    m = t.created()
    t.kernel.refuse["cgroup.procs"] = [errno.ESRCH]
    with pytest.raises(SetupError, match=r"adding process 7 to cgroup .*/pod/ctr: No such process"):
        m.add_pid(7)


def test_pids_is_recursive(any_tree):
    m = any_tree.manager()
    m.create()
    m.add_pid(10)
    primary = m.dirs.get("pids") or m.dirs["unified"]
    any_tree.kernel.mkdir(f"{primary}/sub/deeper")
    with open(f"{primary}/sub/deeper/cgroup.procs", "w") as f:
        f.write("11\n12\n")
    assert sorted(m.pids()) == [10, 11, 12]


def test_freeze_thaw(any_tree):
    m = any_tree.manager()
    m.create()
    assert not m.frozen()
    m.freeze()
    assert m.frozen()
    m.thaw()
    assert not m.frozen()


def test_freeze_v1_waits_for_frozen(tmp_path, monkeypatch):
    t = make_tree(tmp_path, monkeypatch, "v1", ("freezer",))
    m = t.created()
    state = f"{m.dirs['freezer']}/freezer.state"
    answers = iter(["FREEZING", "FREEZING", "FROZEN"])
    real_read = t.kernel.read
    monkeypatch.setattr(t.kernel, "read",
                        lambda p: next(answers) if p == state else real_read(p))
    m.freeze()
    assert [v for p, v in t.kernel.writes if p == state] == ["FROZEN"] * 3


def test_freeze_gives_up_and_thaws(tmp_path, monkeypatch):
    t = make_tree(tmp_path, monkeypatch, "v2")
    m = t.created()
    monkeypatch.setattr(t.kernel, "write", lambda p, v: CgroupFiles.write(t.kernel, p, v))
    from runtime.oci.cgroups import v2 as v2mod
    real = v2mod.freeze
    monkeypatch.setattr(v2mod, "freeze", lambda files, path: real(files, path, timeout=0.01))
    with pytest.raises(SetupError, match=r"not frozen after 0.01s; thawed it again"):
        m.freeze()
    assert t.file("unified", "pod/ctr/cgroup.freeze") == "0"


def test_freeze_without_freezer(tmp_path, monkeypatch):
    t = make_tree(tmp_path, monkeypatch, "v1", ("memory",))
    m = t.created()
    assert not m.frozen()
    with pytest.raises(SetupError, match="the freezer cgroup controller is not mounted"):
        m.freeze()


def test_kill_all_v1_freezes_signals_thaws(tmp_path, monkeypatch):
    t = make_tree(tmp_path, monkeypatch, "hybrid")
    m = t.created()
    m.add_pid(31)
    events: list[object] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: events.append(("kill", pid, sig)))
    real_write = t.kernel.write

    def write(path: str, value: str) -> None:
        if path.endswith("freezer.state"):
            events.append(value)
        real_write(path, value)

    monkeypatch.setattr(t.kernel, "write", write)
    m.kill_all(signal.SIGKILL)
    assert events == ["FROZEN", ("kill", 31, signal.SIGKILL), "THAWED"]


def test_kill_all_v2_sigkill_uses_cgroup_kill(tmp_path, monkeypatch):
    t = make_tree(tmp_path, monkeypatch, "v2")
    m = t.created()
    m.add_pid(31)
    monkeypatch.setattr(os, "kill", lambda pid, sig: pytest.fail("signalled one by one"))
    m.kill_all(signal.SIGKILL)
    assert t.writes()[-1] == ("unified/cgroup.kill", "1")


def test_kill_all_v2_other_signals_and_old_kernels(tmp_path, monkeypatch):
    t = make_tree(tmp_path, monkeypatch, "v2")
    m = t.created()
    m.add_pid(31)
    os.unlink(f"{t.root}/pod/ctr/cgroup.kill")
    sent = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append((pid, sig, m.frozen())))
    m.kill_all(signal.SIGKILL)
    m.kill_all(signal.SIGTERM)
    assert sent == [(31, signal.SIGKILL, True), (31, signal.SIGTERM, True)]
    assert not m.frozen()


@pytest.mark.parametrize(("sig", "frozen_after"), [
    pytest.param(signal.SIGTERM, True, id="sigterm-keeps-it-paused"),
    pytest.param(signal.SIGKILL, False, id="sigkill-thaws-so-it-takes-effect"),
])
def test_kill_all_paused_container(tmp_path, monkeypatch, sig, frozen_after):
    t = make_tree(tmp_path, monkeypatch, "hybrid")
    m = t.created()
    m.add_pid(31)
    m.freeze()
    sent = []
    monkeypatch.setattr(os, "kill", lambda pid, s: sent.append((pid, s)))
    m.kill_all(sig)
    assert (sent, m.frozen()) == ([(31, sig)], frozen_after)


def test_kill_all_without_a_cgroup_is_a_no_op(any_tree, monkeypatch):
    monkeypatch.setattr(os, "kill", lambda pid, sig: pytest.fail("nothing to signal"))
    m = any_tree.manager()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        m.kill_all(sig)  # no SetupError from freezing or thawing a missing cgroup
    assert not m.exists()


def test_kill_all_ignores_exited_processes(tmp_path, monkeypatch):
    t = make_tree(tmp_path, monkeypatch, "v1", ("pids", "freezer"))
    m = t.created()
    m.add_pid(31)

    def gone(pid: int, sig: int) -> None:
        raise ProcessLookupError

    monkeypatch.setattr(os, "kill", gone)
    m.kill_all(signal.SIGTERM)
    assert not m.frozen()


# --- stats -------------------------------------------------------------------------------

def test_stats_v1(tmp_path, monkeypatch):
    t = make_tree(tmp_path, monkeypatch, "v1", ALL_V1)
    m = t.created()
    ns = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    s = m.stats()
    assert s["cpu"] == {"usage": {"total": 123456789, "percpu": [100, 200], "user": 10 * ns,
                                  "kernel": 5 * ns},
                        "throttling": {"periods": 7, "throttledPeriods": 3,
                                       "throttledTime": 4500}}
    assert s["memory"]["cache"] == 8192
    assert s["memory"]["raw"] == {"cache": 8192, "rss": 4096}
    assert s["memory"]["usage"] == {"limit": int(MAXMEM), "usage": 4096000, "max": 5000000,
                                    "failcnt": 1}
    assert s["memory"]["swap"] == {"limit": int(MAXMEM), "usage": 4100000, "max": 5100000,
                                   "failcnt": 0}
    assert s["pids"] == {"current": 3, "limit": 0}
    assert s["blkio"] == {
        "ioServiceBytesRecursive": [{"major": 8, "minor": 0, "op": "Read", "value": 100},
                                    {"major": 8, "minor": 0, "op": "Write", "value": 200}],
        "ioServicedRecursive": [{"major": 8, "minor": 0, "op": "Read", "value": 1},
                                {"major": 8, "minor": 0, "op": "Write", "value": 2}]}
    assert s["hugetlb"] == {"2MB": {"usage": 2097152, "max": 4194304, "failcnt": 1},
                            "1GB": {"usage": 0, "max": 0, "failcnt": 0}}
    json.dumps(s)


@pytest.mark.parametrize(("files", "serviced"), [
    pytest.param({"blkio.bfq.io_serviced_recursive": "8:16 Read 9\nTotal 9\n",
                  "blkio.bfq.io_service_bytes_recursive": "8:16 Read 900\nTotal 900\n"},
                 [{"major": 8, "minor": 16, "op": "Read", "value": 9}], id="bfq-first"),
    pytest.param({"blkio.io_serviced_recursive": "8:32 Write 5\nTotal 5\n",
                  "blkio.io_service_bytes_recursive": "8:32 Write 500\nTotal 500\n"},
                 [{"major": 8, "minor": 32, "op": "Write", "value": 5}], id="cfq-before-throttle"),
    pytest.param({"blkio.throttle.io_serviced_recursive": "Total 0\n"}, [], id="nothing"),
])
def test_stats_v1_blkio_source(tmp_path, monkeypatch, files, serviced):
    t = make_tree(tmp_path, monkeypatch, "v1", ("blkio",))
    m = t.created()
    for name, content in files.items():
        with open(f"{m.dirs['blkio']}/{name}", "w") as f:
            f.write(content)
    assert m.stats()["blkio"]["ioServicedRecursive"] == serviced


def test_stats_v2(tmp_path, monkeypatch):
    t = make_tree(tmp_path, monkeypatch, "v2")
    m = t.created()
    with open(f"{t.root}/pod/ctr/memory.max", "w") as f:
        f.write("10000\n")
    with open(f"{t.root}/pod/ctr/memory.swap.max", "w") as f:
        f.write("5000\n")
    s = m.stats()
    assert s["cpu"] == {"usage": {"total": 10000, "percpu": [], "user": 6000, "kernel": 4000},
                        "throttling": {"periods": 5, "throttledPeriods": 2,
                                       "throttledTime": 7000}}
    assert s["memory"]["cache"] == 200
    assert s["memory"]["usage"] == {"limit": 10000, "usage": 1000, "max": 3000, "failcnt": 4}
    assert s["memory"]["swap"] == {"limit": 15000, "usage": 1500, "max": 0, "failcnt": 2}
    assert s["pids"] == {"current": 2, "limit": 0}
    assert s["blkio"] == {
        "ioServiceBytesRecursive": [{"major": 8, "minor": 0, "op": "Read", "value": 10},
                                    {"major": 8, "minor": 0, "op": "Write", "value": 20}],
        "ioServicedRecursive": [{"major": 8, "minor": 0, "op": "Read", "value": 1},
                                {"major": 8, "minor": 0, "op": "Write", "value": 2}]}
    assert s["hugetlb"]["2MB"] == {"usage": 2097152, "max": 0, "failcnt": 3}


def test_stats_v2_unlimited_swap(tmp_path, monkeypatch):
    t = make_tree(tmp_path, monkeypatch, "v2")
    m = t.created()
    assert m.stats()["memory"]["swap"]["limit"] == stats.MAX_UINT64


def test_stats_hybrid_reads_hugetlb_from_unified(tmp_path, monkeypatch):
    t = make_tree(tmp_path, monkeypatch, "hybrid")
    m = t.created()
    with open(f"{t.mounts['unified']}/pod/ctr/hugetlb.2MB.current", "w") as f:
        f.write("4194304\n")
    s = m.stats()
    assert s["hugetlb"]["2MB"]["usage"] == 4194304
    assert s["memory"]["usage"]["usage"] == 4096000


def test_stats_missing_cgroup_reads_zeros(tmp_path, monkeypatch):
    t = make_tree(tmp_path, monkeypatch, "v1", ALL_V1)
    s = t.manager().stats()
    assert s == stats.empty() | {"hugetlb": {"2MB": {"usage": 0, "max": 0, "failcnt": 0},
                                             "1GB": {"usage": 0, "max": 0, "failcnt": 0}}}


@pytest.mark.parametrize("mode", ["v1", "v2"])
def test_oom_kill_count(tmp_path, monkeypatch, mode):
    t = make_tree(tmp_path, monkeypatch, mode, ALL_V1)
    m = t.manager()
    assert m.oom_kill_count() == 0  # not created yet
    m.create()
    assert m.oom_kill_count() == {"v1": 2, "v2": 1}[mode]


# --- destroy and state -------------------------------------------------------------------

def test_destroy_removes_leaf_and_children_not_parents(any_tree):
    m = any_tree.manager("/pod/ctr")
    m.create()
    for d in m.dirs.values():
        any_tree.kernel.mkdir(f"{d}/sub/deeper")
    m.destroy()
    for key, mp in any_tree.mounts.items():
        assert not os.path.exists(f"{mp}/pod/ctr"), key
        assert os.path.isdir(f"{mp}/pod"), key
    assert not m.exists()
    m.destroy()  # already gone: fine


def test_destroy_waits_for_exiting_processes(tmp_path, monkeypatch):
    t = make_tree(tmp_path, monkeypatch, "v2")
    m = t.created()
    m.add_pid(99)
    real_rmdir, calls = t.kernel.rmdir, []

    def rmdir(path: str) -> None:
        calls.append(path)
        if len(calls) == 3:  # the process has exited by the third try
            CgroupFiles.write(t.kernel, f"{path}/cgroup.procs", "")
        real_rmdir(path)

    monkeypatch.setattr(t.kernel, "rmdir", rmdir)
    m.destroy()
    assert not m.exists()


def test_destroy_gives_up_on_live_processes(tmp_path, monkeypatch):
    t = make_tree(tmp_path, monkeypatch, "v2")
    m = t.created()
    m.add_pid(99)
    with pytest.raises(SetupError, match=r"cannot remove cgroup .*/pod/ctr: still in use by "
                                         r"processes \[99\]"):
        m.destroy()


def test_state_round_trip(any_tree):
    m = any_tree.manager()
    m.create()
    saved = json.loads(json.dumps(m.to_state()))
    again = cgroups.Manager.from_state(saved)
    again.files = any_tree.kernel
    assert (again.mode, again.dirs) == (m.mode, m.dirs)
    again.add_pid(5)
    assert m.pids() == [5]


@pytest.mark.parametrize("state", [
    pytest.param({}, id="empty"),
    pytest.param({"mode": "v3", "dirs": {"unified": "/x"}, "mounts": {}}, id="mode"),
    pytest.param({"mode": "v2", "dirs": {"unified": 1}, "mounts": {}}, id="dir-type"),
    pytest.param({"mode": "v2", "dirs": {}, "mounts": {}}, id="no-dirs"),
])
def test_from_state_refuses_malformed(state):
    with pytest.raises(SetupError, match="malformed cgroup state"):
        cgroups.Manager.from_state(state)
