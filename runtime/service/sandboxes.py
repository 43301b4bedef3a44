"""Pod sandboxes: metadata and lifecycle (containerd CRI's ``sandbox`` store + its run/stop).

::

    run(ns, spec)                                    stop(ns, id)           remove(ns, id)
      ├ reserve the name (name, uid, namespace,        ├ pause.stop (if any)  ├ stop first
      │   attempt) per tenancy namespace               ├ network.teardown     ├ pause.remove
      ├ record CREATED (root/sandboxes/<ns>/<id>.json)  │   (CNI DEL, netns)   ├ holder.remove
      │   (on disk again only as READY: what comes     │                      │
      │   between follows from the ID after a crash)   │                      │
      ├ network.setup -> netns path + IPs (CNI ADD)    ├ holder.unpin         │   (the files)
      ├ holder.pin -> the pod's /dev/shm, and unless   └ -> NOTREADY          └ record gone
      │   a pause is needed, new ipc + uts (hostname)
      │   pinned by bind mounts (nsholder.py)
      ├ pause.start -> pid, only when needed (see below)
      └ -> READY          any failure: undo what was done, record gone

Without a pause container (CRI-O's ``drop_infra_ctr``, our default) the pod's containers
join its namespaces by path: the netns file and the pinned ipc and uts files; the sandbox
is READY while every pinned file still holds its namespace. A pause container runs only
when the pod shares one PID namespace (it needs an init) or the daemon is configured with
``drop_infra_container = false``; then containers join ipc and uts (and pid) through
/proc/<pause pid>/ns and the pod is READY while the pause runs. ``needs_pause`` decides.
What setup does is behind small interfaces (``NetworkPlugin``, ``NamespaceHolder``,
``PauseRunner``), so the lifecycle is unit-tested with fakes and run for real by the daemon
(CNINetwork here, nsholder.PinnedNamespaces, the pause runner in cri/service.py).
State lives in files, so a restarted daemon lists every sandbox and re-reads READY/NOTREADY
from the pins (or the pause container).
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

from runtime.service import cni, nsholder
from runtime.service.cni import netns as netns_mod
from runtime.service.nsholder import Pinned


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
    # namespace_options.pid == POD: the containers share one PID namespace, whose init is
    # the pause container (the only case that needs one when pause containers are dropped)
    share_pid: bool = False


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
    # (kind, file) of the ipc and uts namespaces pinned for the pod when it has no pause
    namespaces: tuple[tuple[str, str], ...] = ()
    shm: str = ""  # the pod's /dev/shm (a tmpfs), bind-mounted into each container

    @property
    def key(self) -> str:
        return name_key(self.spec)

    @property
    def has_pause(self) -> bool:
        return not self.spec.standalone and not self.namespaces

    def pinned(self) -> Pinned:
        """Everything that must stay mounted for the pod to be READY (pause-less pods)."""
        net = (("network", self.netns),) if self.netns else ()
        return Pinned(namespaces=net + self.namespaces, shm=self.shm)

    def join_namespaces(self) -> tuple[tuple[str, str], ...]:
        """(kind, path) for bundle.ContainerConfig.namespaces of a container of this pod.
        Without a pause: the pinned files. With one, the pod network is joined through the
        pause process, which holds it: its pinned file may have been unmounted (by a
        cleanup that swept /run) while the pod lives."""
        if self.spec.standalone:
            return ()
        net = self.netns or "/proc/1/ns/net"
        if self.namespaces:
            return (("network", net), *self.namespaces)
        if self.netns and self.pause_pid:
            net = f"/proc/{self.pause_pid}/ns/net"
        out = [("network", net)]
        if self.pause_pid:
            out += [("ipc", f"/proc/{self.pause_pid}/ns/ipc"),
                    ("uts", f"/proc/{self.pause_pid}/ns/uts")]
            if self.spec.share_pid:
                out.append(("pid", f"/proc/{self.pause_pid}/ns/pid"))
        return tuple(out)


def needs_pause(spec: SandboxSpec, *, drop_infra: bool) -> bool:
    """A pause container for SPEC: never standalone; always for a shared PID namespace
    (it is that namespace's init); otherwise only if the daemon keeps them."""
    if spec.standalone:
        return False
    return spec.share_pid or not drop_infra


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
    try:
        nsholder.check_hostname(f"{spec.namespace}/{spec.name}", spec.hostname)
    except nsholder.PinError as e:
        raise InvalidArgument(str(e)) from None


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


class NamespaceHolder(Protocol):
    def pin(self, sandbox_id: str, *, hostname: str, kinds: tuple[str, ...]) -> Pinned:
        """New namespaces of KINDS ("ipc", "uts"; HOSTNAME set in a new uts) and a shm
        tmpfs for the pod, each pinned by a mount; all undone if any fails."""
        ...

    def alive(self, pinned: Pinned) -> bool:
        """Every file of PINNED still holds its namespace (and the shm is mounted)."""
        ...

    def unpin(self, sandbox_id: str) -> None:
        """Unmount the pins (the files stay); a second call does nothing."""
        ...

    def remove(self, sandbox_id: str) -> None:
        """Unpin and delete the files; a missing sandbox is fine."""
        ...


class SandboxManager:
    def __init__(self, root: str, *, network: NetworkPlugin, pause: PauseRunner,
                 holder: NamespaceHolder | None = None, drop_infra: bool = True) -> None:
        self.root = os.path.join(root, "sandboxes")
        self.network = network
        self.pause = pause
        self.holder: NamespaceHolder = holder or nsholder.PinnedNamespaces(
            os.path.join(root, "sandbox-ns"))
        self.drop_infra = drop_infra
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

    def _save(self, sb: Sandbox, *, durable: bool = True) -> None:
        """Record SB; unless DURABLE, in memory only (a step of run() whose result a
        restarted daemon can derive from the ID: the netns path, the pins' directory)."""
        if not durable:
            with self._lock:
                self._tenant(sb.tenant)[sb.id] = sb
            return
        path = self._path(sb.tenant, sb.id)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        raw = asdict(sb)
        raw["state"] = sb.state.value
        with open(path + ".tmp", "w") as f:
            f.write(json.dumps(raw))
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
            raw["state"]), "ips": tuple(raw["ips"]), "namespaces": tuple(
            (k, p) for k, p in raw.get("namespaces") or ())})

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
                    self._save(sb, durable=False)
                pause = needs_pause(spec, drop_infra=self.drop_infra)
                pinned = self.holder.pin(
                    sb.id, hostname="" if spec.host_network else spec.hostname,
                    kinds=() if pause else nsholder.KINDS)
                sb = replace(sb, namespaces=pinned.namespaces, shm=pinned.shm)
                self._save(sb, durable=False)
                pid = self.pause.start(sb) if pause else 0
            except BaseException:
                self._undo(sb)
                raise
            return self._set(sb, SandboxState.READY, pause_pid=pid)
        finally:
            with self._lock:
                self._reserved.discard((tenant, key))

    def _undo(self, sb: Sandbox) -> None:
        try:
            if sb.has_pause:
                self.pause.remove(sb)
        finally:
            try:
                if not sb.spec.standalone:
                    self.holder.remove(sb.id)
            finally:
                try:
                    if not sb.spec.host_network and not sb.spec.standalone:
                        self.network.teardown(sb.id, sb.netns)
                finally:
                    self._set(sb, SandboxState.REMOVED)

    def _ready(self, sb: Sandbox) -> bool:
        """READY as recorded, and what holds its namespaces still does."""
        if sb.state is not SandboxState.READY or sb.spec.standalone:
            return sb.state is SandboxState.READY
        if sb.namespaces:
            return self.holder.alive(sb.pinned())
        return self.pause.pid(sb) != 0

    def get(self, tenant: str, sid: str) -> Sandbox:
        """The sandbox, READY only while its namespaces are held (pins or pause)."""
        sb = self._record(tenant, self._resolve(tenant, sid))
        if sb.state is SandboxState.READY and not self._ready(sb):
            return replace(sb, state=SandboxState.NOTREADY)
        return sb

    def list(self, tenant: str) -> builtins.list[Sandbox]:
        out = []
        for sb in self._records(tenant):
            if sb.state is SandboxState.READY and not self._ready(sb):
                sb = replace(sb, state=SandboxState.NOTREADY)
            out.append(sb)
        return out

    def stop(self, tenant: str, sid: str) -> Sandbox:
        """Stop the pause container (if any), take the network down (CNI DEL), then unpin
        the pod's namespaces and shm; idempotent."""
        with self._lock:
            sb = self._record(tenant, self._resolve(tenant, sid))
            if sb.state is SandboxState.NOTREADY and not sb.netns:
                return sb
            if sb.has_pause:
                self.pause.stop(sb)
            if not sb.spec.host_network and not sb.spec.standalone:
                self.network.teardown(sb.id, sb.netns)
            if not sb.spec.standalone:
                self.holder.unpin(sb.id)
            new = replace(sb, netns="")
            if sb.state is SandboxState.NOTREADY:
                self._save(new)
                return new
            return self._set(new, SandboxState.NOTREADY)

    def remove(self, tenant: str, sid: str) -> Sandbox:
        """Stop (if it is not) and remove the sandbox; a missing one is NotFound."""
        sb = self.stop(tenant, sid)
        with self._lock:
            if sb.has_pause:
                self.pause.remove(sb)
            if not sb.spec.standalone:
                self.holder.remove(sb.id)
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
        # the first conflist's network, parsed again only when that file changes (every
        # RunPodSandbox and Status asks: a listdir, a read and a parse each otherwise)
        self._conf = cni.DefaultNetwork(conf_dir)
        self._net: cni.Network | None = None

    def _network(self) -> cni.Network:
        conf = self._conf.get()
        if conf is None:
            raise FailedPrecondition(f"network: no CNI network configuration in "
                                     f"{self.conf_dir}")
        net = self._net
        if net is None or net.conf is not conf:
            net = cni.Network(conf, plugin_dirs=self.bin_dirs, cache_dir=self.cache_dir)
            self._net = net
        return net

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
