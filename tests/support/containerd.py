"""containerd 1.6 (Debian's /usr/bin/containerd) with its CRI plugin, started by a test.

::

    with Registry() as reg:
        image = push_busybox(reg)                        # 127.0.0.1:PORT/corral/busybox:1
        with Containerd(tag=tag, registries=[reg.host], sandbox_image=image) as ctd:
            ctd.socket                                   # CRI on a unix socket in ctd.dir
            ctd.write_cni_conflist(subnet="10.x.y.0/24") # bridge ctd.bridge, host-local IPAM
            ctd.cgroup_parent                            # "/<tag>": give it to every sandbox

Everything lives in one temp dir named after the test's tag (root, state, socket, CNI conf,
host-local's IPAM data, the log, network namespaces: ``netns_mounts_under_state_dir``),
so the leak check sees what is left. The runtime is Debian's runc through
containerd-shim-runc-v2 with a private runc root; the snapshotter is overlayfs; the
registries are plain http (a ``hosts.toml`` each); the sandbox ("pause") image is a
busybox image running ``sleep``, pushed by the test to its own registry.

``cleanup()`` first removes every sandbox through CRI (so shims exit cleanly and CNI DEL
runs), then, for whatever is still there: kills processes in the sandboxes' cgroups, stops
containerd by PID (SIGTERM, SIGKILL after 10 s), kills its shims, unmounts everything under
the dir, removes the cgroups, the bridge, the shims' sockets, CNI's cached results and the
dir.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time

from clusterctl.cluster import system
from tests.support import ociimage, process, sockets
from tests.support.registry import Registry

CONTAINERD = "/usr/bin/containerd"
SHIM = "/usr/bin/containerd-shim-runc-v2"
RUNC = "/usr/sbin/runc"
CNI_BIN = "/usr/lib/cni"
CGROUP_ROOT = "/sys/fs/cgroup"
CNI_CACHE = "/var/lib/cni/results"
SHIM_SOCKETS = "/run/containerd/s"  # containerd 1.6 puts every shim's socket here
K8S_NAMESPACE = "k8s.io"  # containerd's namespace for everything the CRI plugin makes


def missing() -> str | None:
    """Why containerd cannot run here, or None."""
    for path in (CONTAINERD, SHIM, RUNC, os.path.join(CNI_BIN, "bridge"),
                 os.path.join(CNI_BIN, "host-local"), os.path.join(CNI_BIN, "loopback")):
        if not os.path.exists(path):
            return f"{path} is missing (Debian packages containerd, runc, " \
                   "containernetworking-plugins)"
    if os.geteuid() != 0:
        return "containerd needs root"
    return None


# ---- the busybox image (also the sandbox image) -----------------------------------------


@functools.cache
def _layer_tar() -> bytes:
    """bin/busybox with every applet linked to it, and /etc/passwd and /etc/group."""
    applets = subprocess.run([ociimage.BUSYBOX, "--list-full"], stdout=subprocess.PIPE,
                             text=True, check=True).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = sorted({"bin", "etc", "tmp", "proc", "sys", "dev"}
                      | {os.path.dirname(a) for a in applets})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        with open(ociimage.BUSYBOX, "rb") as f:
            data = f.read()
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
        for path in applets:
            if path == "bin/busybox":
                continue
            link = tarfile.TarInfo(path)
            link.type, link.linkname, link.mode = tarfile.SYMTYPE, "/bin/busybox", 0o777
            tar.addfile(link)
        for name, text in (("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
                           ("etc/group", "root:x:0:\n")):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(text), 0o644
            tar.addfile(info, io.BytesIO(text.encode()))
    return buf.getvalue()


def busybox_image() -> ociimage.Image:
    """A one-layer OCI image of busybox whose default command sleeps (a pause image)."""
    tar = _layer_tar()
    layer = ociimage.Blob(ociimage.OCI_LAYER_GZIP, gzip.compress(tar, compresslevel=1,
                                                                 mtime=0))
    cfg = {"architecture": "amd64", "os": "linux",
           "config": {"Cmd": ["/bin/sleep", "1000000"], "Env": ["PATH=/usr/sbin:/usr/bin:"
                                                                "/sbin:/bin"],
                      "WorkingDir": "/"},
           "rootfs": {"type": "layers",
                      "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]}}
    config = ociimage.Blob(ociimage.OCI_CONFIG, json.dumps(cfg, sort_keys=True).encode())
    manifest = {"schemaVersion": 2, "mediaType": ociimage.OCI_MANIFEST,
                "config": config.descriptor(), "layers": [layer.descriptor()]}
    return ociimage.Image(ociimage.Blob(ociimage.OCI_MANIFEST,
                                        json.dumps(manifest, sort_keys=True).encode()),
                          config, (layer,))


def push_busybox(registry: Registry, repo: str = "corral/busybox", tag: str = "1") -> str:
    """Push busybox_image() to REGISTRY; returns its reference ``HOST/REPO:TAG``."""
    ociimage.push(registry.url, repo, tag, busybox_image())
    return f"{registry.host}/{repo}:{tag}"


# ---- the daemon -----------------------------------------------------------------------


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    return field.encode().decode("unicode_escape")


def _mounts_under(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [_unescape(line.split()[4]) for line in f]
    return [p for p in points if p == path or p.startswith(path + "/")]


def _pids_with_cmdline(needle: bytes) -> list[int]:
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                if needle in f.read():
                    pids.append(int(name))
        except OSError:
            continue
    return pids


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class Containerd(process.Managed):
    def __init__(self, *, tag: str, sandbox_image: str, registries: list[str]) -> None:
        if len(tag) > 40:
            raise ValueError(f"Containerd: tag: at most 40 characters (socket path), got {tag!r}")
        self.tag = tag
        self.sandbox_image = sandbox_image
        self.registries = registries
        self.dir = tempfile.mkdtemp(prefix=f"{tag}-ctd-", dir="/tmp")
        self.root = os.path.join(self.dir, "root")
        self.state = os.path.join(self.dir, "state")
        self.socket = os.path.join(self.dir, "containerd.sock")
        self.cni_conf_dir = os.path.join(self.dir, "cni")
        self.ipam_dir = os.path.join(self.dir, "ipam")
        self.log_dir = os.path.join(self.dir, "pods")  # sandboxes' log_directory parent
        self.log_path = os.path.join(self.dir, "containerd.log")
        self.config_path = os.path.join(self.dir, "config.toml")
        self.cgroup_parent = f"/{tag}"
        self.bridge = "cb" + tag.replace("-", "")[-10:]  # IFNAMSIZ: 15 characters at most
        self.network = f"{tag}-net"
        self.proc: process.Process | None = None
        # Shared dirs containerd and CNI make outside ours: removed again if we made them
        # and they end up empty.
        self._made = [d for d in (SHIM_SOCKETS, os.path.dirname(SHIM_SOCKETS), CNI_CACHE,
                                  os.path.dirname(CNI_CACHE)) if not os.path.exists(d)]

    # ---- config ---------------------------------------------------------------------

    def _config(self) -> str:
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        certs = os.path.join(self.dir, "certs.d")
        for host in self.registries:
            os.makedirs(os.path.join(certs, host), exist_ok=True)
            with open(os.path.join(certs, host, "hosts.toml"), "w") as f:
                f.write(f'server = "http://{host}"\n\n[host."http://{host}"]\n'
                        '  capabilities = ["pull", "resolve"]\n')
        return f"""version = 2
root = "{self.root}"
state = "{self.state}"

[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[debug]
  level = "info"
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{os.path.join(self.dir, 'opt')}"

[{cri}]
  sandbox_image = "{self.sandbox_image}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  netns_mounts_under_state_dir = true
  enable_selinux = false
  restrict_oom_score_adj = true  # lowering oom_score_adj is not allowed everywhere
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        BinaryName = "{RUNC}"
        Root = "{os.path.join(self.state, 'runc')}"
        SystemdCgroup = false
  [{cri}.cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{self.cni_conf_dir}"
  [{cri}.registry]
    config_path = "{certs}"
"""

    def write_cni_conflist(self, *, subnet: str) -> str:
        """A bridge + host-local + loopback conflist for SUBNET (no masquerade, no iptables)."""
        conf = {
            "cniVersion": "1.0.0",
            "name": self.network,
            "plugins": [
                {"type": "bridge", "bridge": self.bridge, "isGateway": True, "ipMasq": False,
                 "hairpinMode": False,
                 "ipam": {"type": "host-local", "dataDir": self.ipam_dir,
                          "ranges": [[{"subnet": subnet}]]}},
                {"type": "loopback"},
            ],
        }
        path = os.path.join(self.cni_conf_dir, "10-corral.conflist")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(conf, f)
        os.rename(tmp, path)  # containerd watches the dir: it must never see half a file
        return path

    # ---- lifecycle ------------------------------------------------------------------

    def start(self, timeout: float = 20) -> Containerd:
        reason = missing()
        if reason:
            raise RuntimeError(reason)
        for d in (self.root, self.state, self.cni_conf_dir, self.ipam_dir, self.log_dir):
            os.makedirs(d, exist_ok=True)
        with open(self.config_path, "w") as f:
            f.write(self._config())
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        self.proc = process.start([CONTAINERD, "--config", self.config_path],
                                  log_path=self.log_path, env=env, new_session=True)
        try:
            process.wait_until_ready(self.proc, name="containerd",
                                     condition=f"serving {self.socket}", ready=self._serving,
                                     timeout=timeout, tail=self.log_tail)
        except BaseException:
            self.cleanup()
            raise
        return self

    def _serving(self) -> bool:
        return sockets.serving(self.socket)

    def log_tail(self, lines: int = 30) -> str:
        return process.log_tail(self.log_path, lines=lines)

    def drain(self) -> None:
        """Stop and remove every sandbox (and so every container) through CRI."""
        import grpc  # type: ignore[import-untyped]

        from runtime.service.cri import api_pb2 as pb
        from runtime.service.cri import api_pb2_grpc as pb_grpc

        with grpc.insecure_channel(f"unix://{self.socket}") as channel:
            rt = pb_grpc.RuntimeServiceStub(channel)  # type: ignore[no-untyped-call]
            for sandbox in rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10).items:
                rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sandbox.id),
                                  timeout=30)
                rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sandbox.id),
                                    timeout=30)

    def _cgroup_dirs(self) -> list[str]:
        """Our sandboxes' cgroup dirs in every hierarchy, deepest first."""
        found = []
        for top in os.listdir(CGROUP_ROOT):
            base = os.path.join(CGROUP_ROOT, top) + self.cgroup_parent
            for dirpath, _, _ in os.walk(base):
                found.append(dirpath)
        return sorted(found, key=len, reverse=True)

    def _kill_cgroup_processes(self) -> None:
        for d in self._cgroup_dirs():
            with contextlib.suppress(OSError), open(os.path.join(d, "cgroup.procs")) as f:
                _kill([int(line) for line in f if line.strip()])

    def stop(self) -> None:
        """SIGTERM to its PID, SIGKILL after 10 s."""
        proc, self.proc = self.proc, None
        process.stop(proc, timeout=10, kill_timeout=5)

    def _shim_sockets(self) -> list[str]:
        """The shims write their socket's address into each task's bundle dir."""
        tasks = os.path.join(self.state, "io.containerd.runtime.v2.task", K8S_NAMESPACE)
        sockets = []
        with contextlib.suppress(OSError):
            for task in os.listdir(tasks):
                with contextlib.suppress(OSError), open(os.path.join(tasks, task,
                                                                     "address")) as f:
                    addr = f.read().strip().removeprefix("unix://")
                    if addr.startswith(SHIM_SOCKETS + "/"):
                        sockets.append(addr)
        return sockets

    def _remove_cni_cache(self) -> None:
        """libcni's cached results of our sandboxes: ``<network>-<sandbox ID>-<ifname>``
        for our network and for ``cni-loopback`` (a CNI DEL removes them; a kill does not)."""
        sandboxes = os.path.join(self.root, "io.containerd.grpc.v1.cri", "sandboxes")
        try:
            ids = os.listdir(sandboxes)
            names = os.listdir(CNI_CACHE)
        except OSError:
            return
        prefixes = tuple(f"{net}-{i}-" for i in ids for net in (self.network, "cni-loopback"))
        for name in names:
            if name.startswith(prefixes):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(CNI_CACHE, name))

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.drain()
        shim_sockets = self._shim_sockets()
        self._kill_cgroup_processes()
        self.stop()
        deadline = time.monotonic() + 5
        while (shims := _pids_with_cmdline(self.socket.encode())) \
                and time.monotonic() < deadline:
            _kill(shims)
            time.sleep(0.05)
        for path in shim_sockets:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        for mount in sorted(_mounts_under(self.dir), key=len, reverse=True):
            subprocess.run(["umount", "-l", mount], check=False, stderr=subprocess.DEVNULL)
        # deepest first, in every hierarchy, retrying (a killed task leaves its cgroup a
        # moment later)
        system.remove_cgroup(self.cgroup_parent)
        if os.path.exists(f"/sys/class/net/{self.bridge}"):
            subprocess.run(["ip", "link", "del", self.bridge], check=False)
        self._remove_cni_cache()
        for d in self._made:
            with contextlib.suppress(OSError):
                os.rmdir(d)  # only when empty: another containerd may be using it
        shutil.rmtree(self.dir, ignore_errors=True)
