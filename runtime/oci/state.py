"""Container state on disk, and the OCI lifecycle as an explicit state machine.

    <root>/<id>/state.json   what create recorded (pid, start time, bundle, config, cgroup)
    <root>/<id>/exec.fifo    exists from create until start: the init blocks opening it

The status is derived, never stored: a dead (or reused) init pid is `stopped`; a live
init with exec.fifo present is `created`; a frozen cgroup is `paused`; else `running`.
"""

from __future__ import annotations

import os
import time

from . import _json
from .errors import AlreadyExists, InvalidState, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CREATING = "creating"
CREATED = "created"
RUNNING = "running"
PAUSED = "paused"
STOPPED = "stopped"
STATUSES = (CREATING, CREATED, RUNNING, PAUSED, STOPPED)

# The verbs and the states they are allowed in (runtime-spec runtime.md, and runc where
# the spec is silent: delete of a created container kills and removes it; pause of a
# created container is allowed).
ALLOWED: dict[str, frozenset[str]] = {
    "start": frozenset({CREATED}),
    "kill": frozenset({CREATED, RUNNING, PAUSED}),
    "delete": frozenset({CREATED, STOPPED}),
    "delete --force": frozenset({CREATED, RUNNING, PAUSED, STOPPED}),
    "pause": frozenset({CREATED, RUNNING}),
    "resume": frozenset({PAUSED}),
    "exec": frozenset({CREATED, RUNNING}),
    "update": frozenset({CREATED, RUNNING, PAUSED}),
    "ps": frozenset({CREATED, RUNNING, PAUSED}),
    "events": frozenset({CREATED, RUNNING, PAUSED}),
}

# What each verb moves the container to (the transitions of the state machine).
TRANSITIONS: dict[tuple[str, str], str] = {
    (CREATING, "create"): CREATED,
    (CREATED, "start"): RUNNING,
    (CREATED, "pause"): PAUSED,
    (RUNNING, "pause"): PAUSED,
    (PAUSED, "resume"): RUNNING,
    (RUNNING, "exit"): STOPPED,
    (CREATED, "kill"): STOPPED,
    (RUNNING, "kill"): STOPPED,
    (PAUSED, "kill"): STOPPED,  # SIGKILL reaches a frozen cgroup's processes
    (CREATED, "delete"): STOPPED,
    (STOPPED, "delete"): STOPPED,
}

# runc's words for a refused verb; clients match some of them ("container not running").
_MESSAGES = {
    ("start", RUNNING): "cannot start an already running container",
    ("start", STOPPED): "cannot start a container that has stopped",
    ("start", PAUSED): "cannot start a container in the paused state",
    ("exec", STOPPED): "cannot exec in a stopped container",
    ("exec", PAUSED): "cannot exec in a paused container (use --ignore-paused to override)",
    ("resume", RUNNING): "container not paused",
    ("resume", CREATED): "container not paused",
    ("resume", STOPPED): "container not paused",
}


def require(verb: str, status: str, cid: str) -> None:
    if status in ALLOWED[verb]:
        return
    base = verb.split()[0]
    if (base, status) in _MESSAGES:
        raise InvalidState(_MESSAGES[base, status])
    if base == "delete":
        raise InvalidState(f"cannot delete container {cid} that is not stopped: {status}")
    if status == STOPPED:
        raise InvalidState("container not running")
    raise InvalidState(f"cannot {verb} a {status} container")


def valid_id(cid: str) -> bool:
    # runc: ^[\w+-\.]+$ ; no path tricks.
    if not cid or cid in (".", "..") or len(cid) > 1024:
        return False
    return all(c.isalnum() or c in "_+-." for c in cid) and cid.isascii()


def now_rfc3339() -> str:
    ns = time.time_ns()
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks), or None if the process
    is gone or a zombie; guards against pid reuse."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


class Store:
    """The --root directory of container state directories."""

    def __init__(self, root: str) -> None:
        self.root = root

    def dir(self, cid: str) -> str:
        return os.path.join(self.root, cid)

    def reserve(self, cid: str) -> str:
        """Atomically claim CID (mkdir); AlreadyExists if another container has it."""
        if not valid_id(cid):
            raise _bad_id(cid)
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        path = self.dir(cid)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            raise AlreadyExists("container with given ID already exists") from None
        return path

    def load(self, cid: str) -> Container:
        if not valid_id(cid):
            raise _bad_id(cid)
        path = os.path.join(self.dir(cid), "state.json")
        try:
            data = _json.load_file(path)
        except FileNotFoundError:
            raise NotFound("container does not exist") from None
        return Container(self, data)

    def ids(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.root)
                          if os.path.exists(os.path.join(self.root, n, "state.json")))
        except FileNotFoundError:
            return []


def _bad_id(cid: str) -> Exception:
    from .errors import OCIError
    return OCIError(f"invalid container ID format: {cid!r}")


class Container:
    """One container's recorded state plus the live checks that derive its status."""

    def __init__(self, store: Store, data: dict[str, Any]) -> None:
        self.store = store
        self.data = data
        self.console: Any = None  # run's own console socket (console.Listener), if any

    @property
    def id(self) -> str:
        return str(self.data["id"])

    @property
    def pid(self) -> int:
        return int(self.data["pid"])

    @property
    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = self.data["config"]
        return cfg

    @property
    def dir(self) -> str:
        return self.store.dir(self.id)

    def alive(self) -> bool:
        return bool(proc_start_time(self.pid) == self.data["pidStart"])

    def status(self) -> str:
        if not self.alive():
            return STOPPED
        if os.path.exists(os.path.join(self.dir, "exec.fifo")):
            return CREATED
        cg = self.cgroup()
        if cg is not None and cg.frozen():
            return PAUSED
        return RUNNING

    def cgroup(self) -> Any:
        if self.data.get("cgroup") is None:
            return None
        from . import cgroups
        return cgroups.Manager.from_state(self.data["cgroup"])

    def save(self) -> None:
        path = os.path.join(self.dir, "state.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(_json.dumps(self.data))
        os.replace(tmp, path)

    def oci_state(self, status: str | None = None) -> dict[str, Any]:
        """The state object of runtime-spec runtime.md (given to hooks on stdin)."""
        status = status or self.status()
        return {
            "ociVersion": self.config.get("ociVersion", ""),
            "id": self.id,
            "status": status,
            "pid": self.pid if status != STOPPED else 0,
            "bundle": self.data["bundle"],
            "annotations": self.config.get("annotations") or {},
        }

    def runc_state(self) -> dict[str, Any]:
        """What `runc state` prints (containerd's go-runc parses this)."""
        status = self.status()
        return {
            "ociVersion": self.config.get("ociVersion", ""),
            "id": self.id,
            "pid": self.pid if status != STOPPED else 0,
            "status": status,
            "bundle": self.data["bundle"],
            "rootfs": self.data["rootfs"],
            "created": self.data["created"],
            "owner": self.data.get("owner", ""),
            "annotations": self.config.get("annotations") or {},
        }
