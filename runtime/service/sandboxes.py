"""Pod sandboxes: metadata and lifecycle (containerd CRI's ``sandbox`` store + its run/stop).

::

    run(ns, spec)                                    stop(ns, id)           remove(ns, id)
      ├ reserve the name (name, uid, namespace,        ├ pause.stop           ├ stop first
      │   attempt) per tenancy namespace               ├ network.teardown     ├ pause.remove
      ├ record CREATED (root/sandboxes/<ns>/<id>.json)  │   (CNI DEL, netns)   └ record gone
      ├ network.setup -> netns path + IPs (CNI ADD)    └ -> NOTREADY
      ├ pause.start -> pid (the sandbox container:
      │   new ipc + uts, joins the netns)
      └ -> READY          any failure: undo what was done, record gone

The pod's containers join the sandbox's network namespace by its path and its IPC and UTS
namespaces through /proc/<pause pid>/ns. What setup does is behind two small interfaces,
``NetworkPlugin`` and ``PauseRunner``, so the lifecycle is unit-tested with fakes and run
for real by the daemon (CNINetwork here, the pause runner in cri/service.py).
State lives in files, so a restarted daemon lists every sandbox; its READY/NOTREADY is
re-read from the pause container (a sandbox whose pause died is NOTREADY).
"""

from __future__ import annotations

import builtins
import enum
import json
import os
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

from runtime.service import cni
from runtime.service.cni import netns as netns_mod


class SandboxError(Exception):
    pass


class NotFound(SandboxError):
    pass


class AlreadyExists(SandboxError):
    pass


class InvalidArgument(SandboxError):
    pass


class FailedPrecondition(SandboxError):
    pass


class SandboxState(enum.Enum):
    CREATED = "created"  # reserved; network and pause being set up
    READY = "ready"
    NOTREADY = "notready"  # stopped (or its pause died)
    REMOVED = "removed"


TRANSITIONS: dict[SandboxState, frozenset[SandboxState]] = {
    SandboxState.CREATED: frozenset({SandboxState.READY, SandboxState.NOTREADY,
                                     SandboxState.REMOVED}),
    SandboxState.READY: frozenset({SandboxState.NOTREADY}),
    SandboxState.NOTREADY: frozenset({SandboxState.REMOVED}),
    SandboxState.REMOVED: frozenset(),
}


def check_transition(sandbox: str, old: SandboxState, new: SandboxState) -> None:
    if new != old and new not in TRANSITIONS[old]:
        raise FailedPrecondition(f"Sandbox {sandbox}: state: cannot go from {old.value} to "
                                 f"{new.value}")


@dataclass(frozen=True)
class SandboxSpec:
    """What RunPodSandbox asks for (the part of PodSandboxConfig we act on)."""

    name: str
    uid: str
    namespace: str  # the pod's Kubernetes namespace
    attempt: int = 0
    hostname: str = ""
    log_directory: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    cgroup_parent: str = ""
    host_network: bool = False
    port_mappings: tuple[Mapping[str, Any], ...] = ()
    runtime_handler: str = ""
    # No pause container and no pod network: each container gets namespaces of its own
    # (what `ctr run` does; corral-ctr run asks for it).
    standalone: bool = False


@dataclass(frozen=True)
class Sandbox:
    id: str
    tenant: str  # the containerd-style namespace ("k8s.io")
    spec: SandboxSpec
    state: SandboxState
    created_at_ns: int
    netns: str = ""
    ips: tuple[str, ...] = ()
    pause_pid: int = 0

    @property
    def key(self) -> str:
        return name_key(self.spec)

    def join_namespaces(self) -> tuple[tuple[str, str], ...]:
        """(kind, path) for bundle.ContainerConfig.namespaces of a container of this pod.
        The pod network is joined through the pause process, which holds it: its pinned
        file may have been unmounted (by a cleanup that swept /run) while the pod lives."""
        if self.spec.standalone:
            return ()
        net = self.netns or "/proc/1/ns/net"
        if self.netns and self.pause_pid:
            net = f"/proc/{self.pause_pid}/ns/net"
        out = [("network", net)]
        if self.pause_pid:
            out += [("ipc", f"/proc/{self.pause_pid}/ns/ipc"),
                    ("uts", f"/proc/{self.pause_pid}/ns/uts")]
        return tuple(out)


def name_key(spec: SandboxSpec) -> str:
    """CRI's uniqueness: one sandbox per (name, namespace, uid, attempt)."""
    return f"{spec.name}_{spec.namespace}_{spec.uid}_{spec.attempt}"


def validate(spec: SandboxSpec) -> None:
    for fld in ("name", "uid", "namespace"):
        if not getattr(spec, fld):
            raise InvalidArgument(f"Sandbox {spec.namespace}/{spec.name}: metadata.{fld}: "
                                  "must not be empty")
    if spec.log_directory and not os.path.isabs(spec.log_directory):
        raise InvalidArgument(f"Sandbox {spec.namespace}/{spec.name}: log_directory: must be "
                              f"an absolute path, got {spec.log_directory!r}")
    if spec.cgroup_parent and not spec.cgroup_parent.startswith("/"):
        raise InvalidArgument(f"Sandbox {spec.namespace}/{spec.name}: linux.cgroup_parent: "
                              f"must start with '/', got {spec.cgroup_parent!r}")


class NetworkPlugin(Protocol):
    def setup(self, sandbox_id: str, *, port_mappings: Sequence[Mapping[str, Any]]
              ) -> tuple[str, list[str]]:
        """A network namespace for the sandbox, attached: (netns path, IPs)."""
        ...

    def teardown(self, sandbox_id: str, netns: str) -> None:
        """Detach and remove the namespace; a second call does nothing."""
        ...

    def ready(self) -> tuple[bool, str]:
        """(NetworkReady, why not)."""
        ...


class PauseRunner(Protocol):
    def start(self, sandbox: Sandbox) -> int:
        """Create and start the sandbox container; its init pid."""
        ...

    def pid(self, sandbox: Sandbox) -> int:
        """The sandbox container's pid while it runs, else 0."""
        ...

    def stop(self, sandbox: Sandbox) -> None: ...

    def remove(self, sandbox: Sandbox) -> None:
        """Delete the sandbox container (and its rootfs); a missing one is fine."""
        ...


class SandboxManager:
    def __init__(self, root: str, *, network: NetworkPlugin, pause: PauseRunner) -> None:
        self.root = os.path.join(root, "sandboxes")
        self.network = network
        self.pause = pause
        self._lock = threading.RLock()
        self._reserved: set[tuple[str, str]] = set()  # names of sandboxes being set up
        # the records, read from disk once per tenant, then kept in step with every write
        # (only this daemon writes them; reading every file made each run and list O(n))
        self._known: dict[str, dict[str, Sandbox]] = {}
        os.makedirs(self.root, mode=0o700, exist_ok=True)

    # ---- records ------------------------------------------------------------------------

    def _path(self, tenant: str, sid: str) -> str:
        if not sid or "/" in sid or sid.startswith("."):
            raise NotFound(f"Sandbox {sid!r}: not found")
        return os.path.join(self.root, tenant, sid + ".json")

    def _save(self, sb: Sandbox) -> None:
        path = self._path(sb.tenant, sb.id)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        raw = asdict(sb)
        raw["state"] = sb.state.value
        with open(path + ".tmp", "w") as f:
            json.dump(raw, f)
        os.replace(path + ".tmp", path)
        with self._lock:
            self._tenant(sb.tenant)[sb.id] = sb

    @staticmethod
    def _load(path: str) -> Sandbox:
        with open(path) as f:
            raw = json.load(f)
        spec = raw.pop("spec")
        spec["port_mappings"] = tuple(spec.get("port_mappings") or ())
        return Sandbox(**{**raw, "spec": SandboxSpec(**spec), "state": SandboxState(
            raw["state"]), "ips": tuple(raw["ips"])})

    def _record(self, tenant: str, sid: str) -> Sandbox:
        self._path(tenant, sid)  # validates SID
        with self._lock:
            sb = self._tenant(tenant).get(sid)
        if sb is None:
            raise NotFound(f"Sandbox {sid}: not found")
        return sb

    def _set(self, sb: Sandbox, state: SandboxState, **changes: Any) -> Sandbox:
        check_transition(sb.id, sb.state, state)
        new = replace(sb, state=state, **changes)
        if state is SandboxState.REMOVED:
            with self._lock:
                self._tenant(sb.tenant).pop(sb.id, None)
            try:
                os.unlink(self._path(sb.tenant, sb.id))
            except FileNotFoundError:
                pass
        else:
            self._save(new)
        return new

    def _resolve(self, tenant: str, sid: str) -> str:
        """A full ID from an ID or a unique prefix of one (as crictl and ctr take them)."""
        self._path(tenant, sid)  # validates SID
        with self._lock:
            if sid in self._tenant(tenant):
                return sid
        found = [s.id for s in self._records(tenant) if s.id.startswith(sid)] if sid else []
        if len(found) == 1:
            return found[0]
        raise NotFound(f"Sandbox {sid}: not found" if not found else
                       f"Sandbox {sid}: ambiguous prefix ({len(found)} sandboxes)")

    def _tenant(self, tenant: str) -> dict[str, Sandbox]:
        """TENANT's records by ID (the caller holds the lock); read from disk the first time."""
        known = self._known.get(tenant)
        if known is None:
            known = {}
            d = os.path.join(self.root, tenant)
            try:
                names = sorted(os.listdir(d))
            except FileNotFoundError:
                names = []
            for n in names:
                if n.endswith(".json"):
                    try:
                        sb = self._load(os.path.join(d, n))
                    except FileNotFoundError:
                        continue
                    known[sb.id] = sb
            self._known[tenant] = known
        return known

    def _records(self, tenant: str) -> builtins.list[Sandbox]:
        with self._lock:
            return sorted(self._tenant(tenant).values(), key=lambda sb: sb.id)

    # ---- lifecycle ----------------------------------------------------------------------

    def run(self, tenant: str, spec: SandboxSpec) -> Sandbox:
        validate(spec)
        key = name_key(spec)
        with self._lock:
            taken = [s for s in self._records(tenant) if s.key == key]
            if taken or (tenant, key) in self._reserved:
                owner = taken[0].id if taken else "(being created)"
                raise AlreadyExists(f"Sandbox {spec.namespace}/{spec.name}: name {key!r} is "
                                    f"reserved for sandbox {owner}")
            self._reserved.add((tenant, key))
        sb = Sandbox(id=secrets.token_hex(32), tenant=tenant, spec=spec,
                     state=SandboxState.CREATED, created_at_ns=time.time_ns())
        try:
            self._save(sb)
            try:
                if spec.standalone:
                    return self._set(sb, SandboxState.READY)
                if not spec.host_network:
                    path, ips = self.network.setup(sb.id, port_mappings=spec.port_mappings)
                    sb = replace(sb, netns=path, ips=tuple(ips))
                    self._save(sb)
                pid = self.pause.start(sb)
            except BaseException:
                self._undo(sb)
                raise
            return self._set(sb, SandboxState.READY, pause_pid=pid)
        finally:
            with self._lock:
                self._reserved.discard((tenant, key))

    def _undo(self, sb: Sandbox) -> None:
        try:
            if not sb.spec.standalone:
                self.pause.remove(sb)
        finally:
            try:
                if not sb.spec.host_network and not sb.spec.standalone:
                    self.network.teardown(sb.id, sb.netns)
            finally:
                self._set(sb, SandboxState.REMOVED)

    def get(self, tenant: str, sid: str) -> Sandbox:
        """The sandbox, READY only while its pause container runs."""
        sb = self._record(tenant, self._resolve(tenant, sid))
        if sb.state is SandboxState.READY and not sb.spec.standalone and \
                self.pause.pid(sb) == 0:
            return replace(sb, state=SandboxState.NOTREADY)
        return sb

    def list(self, tenant: str) -> builtins.list[Sandbox]:
        out = []
        for sb in self._records(tenant):
            if sb.state is SandboxState.READY and not sb.spec.standalone and \
                    self.pause.pid(sb) == 0:
                sb = replace(sb, state=SandboxState.NOTREADY)
            out.append(sb)
        return out

    def stop(self, tenant: str, sid: str) -> Sandbox:
        """Stop the pause container and take the network down; idempotent."""
        with self._lock:
            sb = self._record(tenant, self._resolve(tenant, sid))
            if sb.state is SandboxState.NOTREADY and not sb.netns:
                return sb
            if not sb.spec.standalone:
                self.pause.stop(sb)
            if not sb.spec.host_network and not sb.spec.standalone:
                self.network.teardown(sb.id, sb.netns)
            new = replace(sb, netns="")
            if sb.state is SandboxState.NOTREADY:
                self._save(new)
                return new
            return self._set(new, SandboxState.NOTREADY)

    def remove(self, tenant: str, sid: str) -> Sandbox:
        """Stop (if it is not) and remove the sandbox; a missing one is NotFound."""
        sb = self.stop(tenant, sid)
        with self._lock:
            if not sb.spec.standalone:
                self.pause.remove(sb)
            return self._set(sb, SandboxState.REMOVED)


# ---- the real network: a netns and the CNI default network --------------------------------


class CNINetwork:
    """NetworkPlugin over runtime/service/cni: the first conflist of CONF_DIR."""

    def __init__(self, *, conf_dir: str, bin_dirs: Sequence[str], cache_dir: str,
                 netns_dir: str = netns_mod.DEFAULT_ROOT) -> None:
        self.conf_dir = conf_dir
        self.bin_dirs = tuple(bin_dirs)
        self.cache_dir = cache_dir
        self.netns_dir = netns_dir

    def _network(self) -> cni.Network:
        conf = cni.default_network(self.conf_dir)
        if conf is None:
            raise FailedPrecondition(f"network: no CNI network configuration in "
                                     f"{self.conf_dir}")
        return cni.Network(conf, plugin_dirs=self.bin_dirs, cache_dir=self.cache_dir)

    def ready(self) -> tuple[bool, str]:
        try:
            self._network()
        except (FailedPrecondition, cni.CNIError) as e:
            return False, str(e)
        return True, ""

    def setup(self, sandbox_id: str, *, port_mappings: Sequence[Mapping[str, Any]]
              ) -> tuple[str, list[str]]:
        net = self._network()
        path = netns_mod.create(sandbox_id[:32], root=self.netns_dir)
        try:
            caps = {"portMappings": list(port_mappings)} if port_mappings else {}
            result = net.add(cni.Attachment(container_id=sandbox_id, netns=path,
                                            capability_args=caps))
        except BaseException:
            netns_mod.remove(path)
            raise
        ips = [str(ip.address.ip) for ip in result.sandbox_ips() or list(result.ips)]
        return path, ips

    def teardown(self, sandbox_id: str, netns: str) -> None:
        try:
            net: cni.Network | None = self._network()
        except FailedPrecondition:
            net = None
        path = netns or netns_mod.path_for(sandbox_id[:32], root=self.netns_dir)
        if net is not None:
            net.delete(cni.Attachment(container_id=sandbox_id, netns=path))
        netns_mod.remove(path)
