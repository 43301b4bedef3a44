"""Running one CNI plugin per the spec's execution protocol.

    find_plugin(type, dirs) ── the first executable DIRS/<type>, or PluginNotFound naming DIRS
        │
    build_env(Invocation) ──── CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_ARGS,
        │                       CNI_PATH over the caller's environment (PATH stays: portmap and
        │                       bridge run iptables)
    run_plugin(...) ─────────── config JSON on stdin -> exit 0 + result JSON on stdout, or
                                exit != 0 + {"code", "msg", "details"} -> PluginError

``probe_version`` sends VERSION and returns the versions a plugin speaks. ``Runner`` is the
callable type the network layer takes, so tests can put their own plugin host behind it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runtime.service.cni.errors import (
    IncompatibleVersion,
    InvalidAttachment,
    PluginError,
    PluginNotFound,
)

COMMANDS = ("ADD", "DEL", "CHECK", "VERSION", "GC", "STATUS")
DEFAULT_TIMEOUT = 60.0
_CONTAINER_ID = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")
_ARG_KEY = re.compile(r"^[a-zA-Z0-9_]+$")


@dataclass(frozen=True)
class Invocation:
    """The environment half of one call; the config JSON is the other half."""

    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: tuple[tuple[str, str], ...] = ()
    path: tuple[str, ...] = ()


@dataclass(frozen=True)
class VersionInfo:
    cni_version: str
    supported_versions: tuple[str, ...]


def validate_container_id(container_id: str) -> None:
    if not _CONTAINER_ID.match(container_id):
        raise InvalidAttachment(f"container ID {container_id!r}: must start with a letter or "
                                "digit, then letters, digits, '_', '.' or '-'")


def validate_ifname(ifname: str) -> None:
    if (not ifname or ifname in (".", "..") or len(ifname) > 15
            or any(c in ifname for c in "/:") or any(c.isspace() for c in ifname)):
        raise InvalidAttachment(f"interface name {ifname!r}: must be 1-15 characters, not '.' "
                                "or '..', without '/', ':' or whitespace")


def validate_args(args: Sequence[tuple[str, str]]) -> None:
    for key, value in args:
        if not _ARG_KEY.match(key):
            raise InvalidAttachment(f"CNI_ARGS key {key!r}: must be alphanumeric")
        if any(c in value for c in ";="):
            raise InvalidAttachment(f"CNI_ARGS {key}: value {value!r} may not hold ';' or '='")


def find_plugin(plugin: str, dirs: Sequence[str]) -> str:
    for d in dirs:
        candidate = os.path.join(d, plugin)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise PluginNotFound(plugin, list(dirs))


def build_env(inv: Invocation, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """BASE (default: our environment) without stale CNI_* keys, plus this call's."""
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if not k.startswith("CNI_")}
    env["CNI_COMMAND"] = inv.command
    env["CNI_PATH"] = os.pathsep.join(inv.path)
    if inv.command != "VERSION":
        env["CNI_CONTAINERID"] = inv.container_id
        env["CNI_NETNS"] = inv.netns
        env["CNI_IFNAME"] = inv.ifname
        env["CNI_ARGS"] = ";".join(f"{k}={v}" for k, v in inv.args)
    return env


def _error(out: bytes, err: bytes, returncode: int, *, plugin: str, command: str,
           network: str, container: str) -> PluginError:
    stderr = err.decode(errors="replace")
    try:
        obj = json.loads(out)
    except ValueError:
        obj = None
    if isinstance(obj, dict) and isinstance(obj.get("msg"), str):
        code = obj.get("code")
        cls = IncompatibleVersion if code == 1 else PluginError
        return cls(plugin=plugin, command=command, network=network, container=container,
                   code=code if isinstance(code, int) else None, msg=obj["msg"],
                   details=str(obj.get("details") or ""), stderr=stderr)
    text = (out.decode(errors="replace").strip() or stderr.strip()
            or "(no error message)")
    return PluginError(plugin=plugin, command=command, network=network, container=container,
                       msg=f"exited {returncode}: {text[-1000:]}")


def run_plugin(plugin: str, *, inv: Invocation, stdin: Mapping[str, Any], network: str = "",
               timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any] | None:
    """Run PLUGIN once. Returns the decoded stdout (None when it printed nothing, as DEL,
    CHECK and GC may); raises PluginNotFound or PluginError."""
    binary = find_plugin(plugin, inv.path)
    container = inv.container_id
    try:
        proc = subprocess.run([binary], input=json.dumps(stdin).encode(),
                              capture_output=True, env=build_env(inv), timeout=timeout,
                              close_fds=True, check=False)
    except subprocess.TimeoutExpired:
        raise PluginError(plugin=plugin, command=inv.command, network=network,
                          container=container, msg=f"timed out after {timeout:g}s") from None
    except OSError as e:
        raise PluginError(plugin=plugin, command=inv.command, network=network,
                          container=container, msg=f"cannot run {binary}: {e.strerror}") from None
    if proc.returncode != 0:
        raise _error(proc.stdout, proc.stderr, proc.returncode, plugin=plugin,
                     command=inv.command, network=network, container=container)
    if not proc.stdout.strip():
        return None
    try:
        obj = json.loads(proc.stdout)
    except ValueError as e:
        raise PluginError(plugin=plugin, command=inv.command, network=network,
                          container=container, msg=f"printed invalid JSON ({e}): "
                          f"{proc.stdout[:200]!r}") from None
    if not isinstance(obj, dict):
        raise PluginError(plugin=plugin, command=inv.command, network=network,
                          container=container, msg=f"printed {type(obj).__name__}, not an object")
    return obj


#: What the network layer calls to run a plugin (``run_plugin`` in production).
Runner = Callable[..., "dict[str, Any] | None"]


def probe_version(plugin: str, *, path: Sequence[str], cni_version: str = "1.0.0",
                  runner: Runner = run_plugin) -> VersionInfo:
    """VERSION: which spec versions PLUGIN speaks (a 0.1.0 plugin answers without a list)."""
    out = runner(plugin, inv=Invocation(command="VERSION", path=tuple(path)),
                 stdin={"cniVersion": cni_version})
    if out is None:
        return VersionInfo(cni_version="0.1.0", supported_versions=("0.1.0",))
    versions = out.get("supportedVersions")
    if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
        raise PluginError(plugin=plugin, command="VERSION",
                          msg=f"supportedVersions: must be a list of strings, got {versions!r}")
    return VersionInfo(cni_version=str(out.get("cniVersion", "")),
                       supported_versions=tuple(versions))
