"""The OCI runtime spec's config.json: one schema, from which validation follows.

`SCHEMA` mirrors runtime-spec's config.md and config-linux.md. Each node knows its JSON
type; `Unsupported` marks fields the spec defines but this runtime does not honour (setting
one is an error that names it, never silently ignored). Properties the spec does not
define are rejected too: a misspelt "namespces" must not quietly drop isolation.

    load(bundle) -> (config, rootfs)      read, validate, resolve root.path

Values are kept as the plain dicts JSON gives (no object model on the start path).
"""

from __future__ import annotations

import os

from . import _json
from .errors import ConfigError, Unsupported

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

OCI_VERSION = "1.2.0"
SUPPORTED_MAJOR = "1."


# ---- schema nodes ---------------------------------------------------------------------

class Node:
    json_type = "value"

    def check(self, value: Any, path: str) -> None:
        raise NotImplementedError


class Scalar(Node):
    def __init__(self, *types: type, name: str, minimum: int | None = None,
                 maximum: int | None = None, choices: tuple[str, ...] = ()) -> None:
        self.types = types
        self.json_type = name
        self.minimum = minimum
        self.maximum = maximum
        self.choices = choices

    def check(self, value: Any, path: str) -> None:
        # bool is an int subclass in Python; JSON keeps them apart.
        if not isinstance(value, self.types) or (isinstance(value, bool) and bool not in self.types):
            raise ConfigError(path, f"must be {self.json_type}, got {_show(value)}")
        number: Any = value
        if self.minimum is not None and number < self.minimum:
            raise ConfigError(path, f"must be >= {self.minimum}, got {value}")
        if self.maximum is not None and number > self.maximum:
            raise ConfigError(path, f"must be <= {self.maximum}, got {value}")
        if self.choices and value not in self.choices:
            raise ConfigError(path, f"must be one of {', '.join(self.choices)}; got {value!r}")


def Str(*choices: str) -> Scalar:
    return Scalar(str, name="a string", choices=choices)


def Int(minimum: int | None = None, maximum: int | None = None) -> Scalar:
    return Scalar(int, name="an integer", minimum=minimum, maximum=maximum)


def UInt(bits: int = 64) -> Scalar:
    return Scalar(int, name="an unsigned integer", minimum=0, maximum=(1 << bits) - 1)


Bool = Scalar(bool, name="a boolean")
Num = Scalar(int, float, name="a number")


class List(Node):
    json_type = "an array"

    def __init__(self, item: Node) -> None:
        self.item = item

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, list):
            raise ConfigError(path, f"must be an array, got {_show(value)}")
        for i, v in enumerate(value):
            self.item.check(v, f"{path}[{i}]")


class Map(Node):
    """A JSON object with free keys (annotations, sysctl)."""

    json_type = "an object"

    def __init__(self, value: Node) -> None:
        self.value = value

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise ConfigError(path, f"must be an object, got {_show(value)}")
        for k, v in value.items():
            self.value.check(v, f"{path}[{k!r}]")


class Obj(Node):
    json_type = "an object"

    def __init__(self, fields: dict[str, Node], required: tuple[str, ...] = ()) -> None:
        self.fields = fields
        self.required = required

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise ConfigError(path, f"must be an object, got {_show(value)}")
        for k in self.required:
            if k not in value:
                raise ConfigError(_join(path, k), "is required")
        for k, v in value.items():
            node = self.fields.get(k)
            if node is None:
                raise ConfigError(_join(path, k), "unknown field" + _did_you_mean(k, self.fields))
            if v is None and not isinstance(node, Unsupported_):
                continue  # JSON null = absent, as Go's decoder treats it
            node.check(v, _join(path, k))


class Unsupported_(Node):
    """A field the spec defines that this runtime cannot honour: an error when it is set
    to anything but its empty value."""

    def __init__(self, why: str) -> None:
        self.why = why

    def check(self, value: Any, path: str) -> None:
        if value in (None, "", [], {}, 0, False):
            return
        raise Unsupported(path, f"not supported by corral-runc: {self.why}")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _show(value: Any) -> str:
    names = {str: "string", bool: "boolean", int: "integer", float: "number", list: "array",
             dict: "object", type(None): "null"}
    text = repr(value) if not isinstance(value, dict | list) else names[type(value)]
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{names.get(type(value), type(value).__name__)} {text}" if not isinstance(
        value, dict | list) else text


def _did_you_mean(key: str, known: dict[str, Node]) -> str:
    def distance(a: str, b: str) -> int:
        prev = list(range(len(b) + 1))
        for i, ca in enumerate(a, 1):
            cur = [i]
            for j, cb in enumerate(b, 1):
                cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
            prev = cur
        return prev[-1]

    best = min(known, key=lambda k: distance(key.lower(), k.lower()), default=None)
    if best is not None and distance(key.lower(), best.lower()) <= max(2, len(key) // 3):
        return f" (did you mean {best!r}?)"
    return ""


# ---- the schema (runtime-spec v1.2, Linux) --------------------------------------------

_STRS = List(Str())
_ID_MAP = List(Obj({"containerID": UInt(32), "hostID": UInt(32), "size": UInt(32)},
                   required=("containerID", "hostID", "size")))
_HOOK = Obj({"path": Str(), "args": _STRS, "env": _STRS, "timeout": Int(minimum=1)},
            required=("path",))
_NAMESPACES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")
_DEVICE_RULE = Obj({"allow": Bool, "type": Str("a", "b", "c"), "major": Int(minimum=-1),
                    "minor": Int(minimum=-1), "access": Str()}, required=("allow",))
_THROTTLE = List(Obj({"major": Int(), "minor": Int(), "rate": UInt()},
                     required=("major", "minor", "rate")))

SCHEMA = Obj({
    "ociVersion": Str(),
    "root": Obj({"path": Str(), "readonly": Bool}, required=("path",)),
    "mounts": List(Obj({
        "destination": Str(), "source": Str(), "options": _STRS, "type": Str(),
        "uidMappings": Unsupported_("id-mapped mounts"),
        "gidMappings": Unsupported_("id-mapped mounts"),
    }, required=("destination",))),
    "process": Obj({
        "terminal": Bool,
        "consoleSize": Obj({"height": UInt(16), "width": UInt(16)}, required=("height", "width")),
        "cwd": Str(),
        "env": _STRS,
        "args": _STRS,
        "commandLine": Unsupported_("Windows only"),
        "rlimits": List(Obj({"type": Str(), "soft": UInt(), "hard": UInt()},
                            required=("type", "soft", "hard"))),
        "apparmorProfile": Unsupported_("AppArmor is not supported"),
        "capabilities": Obj({k: _STRS for k in (
            "bounding", "effective", "inheritable", "permitted", "ambient")}),
        "noNewPrivileges": Bool,
        "oomScoreAdj": Int(-1000, 1000),
        "scheduler": Unsupported_("sched_setattr policies"),
        "selinuxLabel": Unsupported_("SELinux is not supported"),
        "ioPriority": Unsupported_("I/O priority classes"),
        "execCPUAffinity": Unsupported_("exec CPU affinity"),
        "user": Obj({"uid": UInt(32), "gid": UInt(32), "umask": UInt(32),
                     "additionalGids": List(UInt(32)),
                     "username": Unsupported_("Windows only")},
                    required=("uid", "gid")),
    }, required=("cwd",)),
    "hostname": Str(),
    "domainname": Str(),
    "hooks": Obj({k: List(_HOOK) for k in (
        "prestart", "createRuntime", "createContainer", "startContainer", "poststart",
        "poststop")}),
    "annotations": Map(Str()),
    "linux": Obj({
        "namespaces": List(Obj({"type": Str(*_NAMESPACES), "path": Str()}, required=("type",))),
        "uidMappings": _ID_MAP,
        "gidMappings": _ID_MAP,
        "timeOffsets": Unsupported_("time namespace offsets"),
        "devices": List(Obj({
            "type": Str("c", "b", "u", "p"), "path": Str(), "major": Int(), "minor": Int(),
            "fileMode": UInt(32), "uid": UInt(32), "gid": UInt(32)}, required=("type", "path"))),
        "cgroupsPath": Str(),
        "resources": Obj({
            "devices": List(_DEVICE_RULE),
            "memory": Obj({
                "limit": Int(), "reservation": Int(), "swap": Int(),
                "kernel": Unsupported_("kernel memory limits (deprecated)"),
                "kernelTCP": Unsupported_("kernel TCP memory limits (deprecated)"),
                "swappiness": UInt(), "disableOOMKiller": Bool, "useHierarchy": Bool,
                "checkBeforeUpdate": Bool}),
            "cpu": Obj({
                "shares": UInt(), "quota": Int(), "burst": UInt(), "period": UInt(),
                "realtimeRuntime": Int(), "realtimePeriod": UInt(), "cpus": Str(),
                "mems": Str(), "idle": Int()}),
            "pids": Obj({"limit": Int()}, required=("limit",)),
            "blockIO": Obj({
                "weight": UInt(16), "leafWeight": UInt(16),
                "weightDevice": List(Obj({"major": Int(), "minor": Int(), "weight": UInt(16),
                                          "leafWeight": UInt(16)},
                                         required=("major", "minor"))),
                "throttleReadBpsDevice": _THROTTLE, "throttleWriteBpsDevice": _THROTTLE,
                "throttleReadIOPSDevice": _THROTTLE, "throttleWriteIOPSDevice": _THROTTLE}),
            "hugepageLimits": List(Obj({"pageSize": Str(), "limit": UInt()},
                                       required=("pageSize", "limit"))),
            "network": Obj({"classID": UInt(32), "priorities": List(Obj(
                {"name": Str(), "priority": UInt(32)}, required=("name", "priority")))}),
            "rdma": Map(Obj({"hcaHandles": UInt(32), "hcaObjects": UInt(32)})),
            "unified": Map(Str()),
        }),
        "intelRdt": Unsupported_("Intel RDT"),
        "memoryPolicy": Unsupported_("NUMA memory policy"),
        "netDevices": Unsupported_("moving network devices into the container"),
        "sysctl": Map(Str()),
        "seccomp": Obj({
            "defaultAction": Str(), "defaultErrnoRet": UInt(32), "architectures": _STRS,
            "flags": _STRS, "listenerPath": Str(), "listenerMetadata": Str(),
            "syscalls": List(Obj({
                "names": _STRS, "action": Str(), "errnoRet": UInt(32),
                "args": List(Obj({"index": UInt(32), "value": UInt(), "valueTwo": UInt(),
                                  "op": Str()}, required=("index", "value", "op")))},
                required=("names", "action")))}, required=("defaultAction",)),
        "rootfsPropagation": Str("private", "rprivate", "slave", "rslave", "shared", "rshared",
                                 "unbindable", "runbindable"),
        "maskedPaths": _STRS,
        "readonlyPaths": _STRS,
        "mountLabel": Unsupported_("SELinux is not supported"),
        "personality": Obj({"domain": Str("LINUX", "LINUX32"), "flags": _STRS},
                           required=("domain",)),
    }),
    "solaris": Unsupported_("Solaris containers"),
    "windows": Unsupported_("Windows containers"),
    "vm": Unsupported_("VM-based containers"),
    "zos": Unsupported_("z/OS containers"),
}, required=("ociVersion", "root"))



def _field(node: Node, *path: str) -> Obj:
    for key in path:
        assert isinstance(node, Obj)
        node = node.fields[key]
    assert isinstance(node, Obj)
    return node


PROCESS_SCHEMA = _field(SCHEMA, "process")
RESOURCES_SCHEMA = _field(SCHEMA, "linux", "resources")


# ---- semantic checks the types cannot express ----------------------------------------

def _check_semantics(c: dict[str, Any]) -> None:
    if not str(c["ociVersion"]).startswith(SUPPORTED_MAJOR):
        raise ConfigError("ociVersion", f"unsupported version {c['ociVersion']!r} "
                          f"(corral-runc implements {OCI_VERSION})")
    proc = c.get("process")
    if proc is not None:
        check_process(proc, "process")
    linux = c.get("linux") or {}
    seen: set[str] = set()
    for i, ns in enumerate(linux.get("namespaces") or []):
        if ns["type"] in seen:
            raise ConfigError(f"linux.namespaces[{i}].type", f"duplicate namespace {ns['type']!r}")
        seen.add(ns["type"])
        if ns["type"] == "time":
            raise Unsupported(f"linux.namespaces[{i}]", "time namespaces are not supported")
        if ns.get("path") and not ns["path"].startswith("/"):
            raise ConfigError(f"linux.namespaces[{i}].path", "must be an absolute path")
    if "user" in seen and not (linux.get("uidMappings") and linux.get("gidMappings")) and not any(
            ns["type"] == "user" and ns.get("path") for ns in linux["namespaces"]):
        raise ConfigError("linux.uidMappings", "a new user namespace needs uidMappings and "
                          "gidMappings")
    if "uts" not in seen and c.get("hostname"):
        raise ConfigError("hostname", "setting the hostname needs a new uts namespace")
    if "uts" not in seen and c.get("domainname"):
        raise ConfigError("domainname", "setting the domainname needs a new uts namespace")
    for i, m in enumerate(c.get("mounts") or []):
        if not m["destination"].startswith("/"):
            raise ConfigError(f"mounts[{i}].destination",
                              f"must be an absolute path, got {m['destination']!r}")
    for i, d in enumerate(linux.get("devices") or []):
        if not d["path"].startswith("/dev/"):
            raise ConfigError(f"linux.devices[{i}].path", f"must be below /dev, got {d['path']!r}")
        if d["type"] != "p" and ("major" not in d or "minor" not in d):
            raise ConfigError(f"linux.devices[{i}]", "major and minor are required for "
                              f"type {d['type']!r}")
    for key in ("maskedPaths", "readonlyPaths"):
        for i, p in enumerate(linux.get(key) or []):
            if not p.startswith("/"):
                raise ConfigError(f"linux.{key}[{i}]", f"must be an absolute path, got {p!r}")
    for stage, hooks in (c.get("hooks") or {}).items():
        for i, h in enumerate(hooks or []):
            if not h["path"].startswith("/"):
                raise ConfigError(f"hooks.{stage}[{i}].path", "must be an absolute path")
    for key in linux.get("sysctl") or {}:
        if not key or "/" in key or key.startswith(".") or ".." in key:
            raise ConfigError(f"linux.sysctl[{key!r}]", "not a valid sysctl name")
        needs = sysctl_namespace(key)
        if needs is None:
            raise ConfigError(f"linux.sysctl[{key!r}]", "not namespaced: writing it would "
                              "change the host")
        if needs not in seen or any(ns["type"] == needs and ns.get("path")
                                    and _is_own_namespace(needs, ns["path"])
                                    for ns in linux.get("namespaces") or []):
            raise ConfigError(f"linux.sysctl[{key!r}]", f"needs a {needs} namespace of the "
                              "container's own, not the host's")


# Sysctls that belong to a namespace, as runc's validator allows them (everything else
# in /proc/sys is global: kernel.core_pattern, vm.*, fs.* but mqueue, ...).
_IPC_SYSCTLS = frozenset({
    "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
    "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"})


def sysctl_namespace(key: str) -> str | None:
    """The namespace type KEY lives in, or None if it is global to the host."""
    if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
        return "ipc"
    if key.startswith("net."):
        return "network"
    if key in ("kernel.domainname", "kernel.hostname"):
        return "uts"
    return None


def _is_own_namespace(kind: str, path: str) -> bool:
    """Whether PATH (a namespace to join) is the namespace corral-runc itself is in."""
    from .namespaces import PROC_NAME
    try:
        a, b = os.stat(path), os.stat(f"/proc/self/ns/{PROC_NAME[kind]}")
    except OSError:
        return False  # reported when the namespace is opened
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def check_process(proc: dict[str, Any], field: str, *, source: str = "config.json") -> None:
    try:
        if not proc.get("args"):
            raise ConfigError(f"{field}.args", "must name the program to run")
        if not proc.get("cwd", "/").startswith("/"):
            raise ConfigError(f"{field}.cwd", f"must be an absolute path, got {proc['cwd']!r}")
        for i, e in enumerate(proc.get("env") or []):
            if "=" not in e:
                raise ConfigError(f"{field}.env[{i}]", f"must be KEY=VALUE, got {e!r}")
        from .capabilities import check_names
        for kind, names in (proc.get("capabilities") or {}).items():
            check_names(names or [], f"{field}.capabilities.{kind}")
        from .rlimits import check_rlimits
        check_rlimits(proc.get("rlimits") or [], f"{field}.rlimits")
    except ConfigError as e:
        if source != "config.json":
            raise ConfigError(e.field, e.problem, source=source) from None
        raise


def validate(config: Any) -> None:
    SCHEMA.check(config, "")
    _check_semantics(config)


def validate_process(proc: Any, source: str) -> None:
    try:
        PROCESS_SCHEMA.check(proc, "")
    except ConfigError as e:
        raise ConfigError(e.field, e.problem, source=source) from None
    check_process(proc, "process", source=source)


def load(bundle: str) -> tuple[dict[str, Any], str]:
    """Read and validate BUNDLE/config.json; return it and the absolute rootfs path."""
    path = os.path.join(bundle, "config.json")
    try:
        config = _json.load_file(path)
    except FileNotFoundError:
        raise ConfigError("", f"no such file {path}") from None
    except _json.JSONError as e:
        raise ConfigError("", f"invalid JSON: {e}") from None
    validate(config)
    root = config["root"]["path"]
    bundle = os.path.realpath(bundle)
    lexical = os.path.normpath(os.path.join(bundle, root))
    if not os.path.isabs(root) and not lexical.startswith(bundle + "/"):
        raise ConfigError("root.path", f"relative path {root!r} leads outside the bundle "
                          f"({lexical}); use an absolute path if that is meant")
    rootfs = os.path.realpath(lexical)
    if rootfs == "/":
        raise ConfigError("root.path", "the host's / cannot be a container's rootfs")
    if not os.path.isdir(rootfs):
        raise ConfigError("root.path", f"rootfs {rootfs} does not exist or is not a directory")
    return config, rootfs
