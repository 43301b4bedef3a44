"""The daemon's configuration: a TOML file, then command-line flags over it.

::

    root = "/var/lib/corral/runtime"        # content, snapshots, images, metadata
    state = "/run/corral/runtime"           # tasks (shims, bundles), sandboxes' netns
    socket = "/run/corral/runtime.sock"
    sandbox_image = "127.0.0.1:5000/corral/pause:1"   # pulled only when a pod needs a pause
    drop_infra_container = true             # pods without a pause container unless they
                                            # share a PID namespace; false: always one
    default_registry = "docker.io"
    default_runtime = "corral-runc"
    stream_address = "127.0.0.1:0"          # CRI streaming (exec/attach/port-forward); 0: any
    stream_token_ttl = 60.0                 # seconds a streaming URL stays valid (used once)

    [runtimes]                              # runtime class -> binary (name on PATH or path)
    runc = "/usr/sbin/runc"

    [registries."127.0.0.1:5000"]
    username = "u"
    password = "p"
    plain_http = true
    mirrors = ["127.0.0.1:5001"]            # tried instead of the registry itself

    [cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "/etc/cni/net.d"

load(path) -> DaemonConfig (every error names the file and the field: ``/etc/x.toml:
runtimes.crun: binary "crun" not found on PATH``); with_flags(config, root=..., ...) lets
flags win. Nothing here touches the system.
"""

from __future__ import annotations

import os
import shutil
import sys
import tomllib
from dataclasses import dataclass, field, replace
from typing import Any

DEFAULT_ROOT = "/var/lib/corral/runtime"
DEFAULT_STATE = "/run/corral/runtime"
DEFAULT_SOCKET = "/run/corral/runtime.sock"
DEFAULT_CNI_BIN_DIRS = ("/opt/cni/bin", "/usr/lib/cni")
DEFAULT_CNI_CONF_DIR = "/etc/cni/net.d"
DEFAULT_RUNTIME = "corral-runc"
DEFAULT_CGROUP_PARENT = "/corral"  # containers without a pod cgroup parent: /corral/<ns>/<id>
DEFAULT_STREAM_ADDRESS = "127.0.0.1:0"
DEFAULT_STREAM_TOKEN_TTL = 60.0
KNOWN_KEYS = {"root", "state", "socket", "cgroup_parent", "sandbox_image", "default_registry",
              "default_runtime", "runtimes", "registries", "cni", "stream_address",
              "stream_token_ttl", "drop_infra_container"}
CNI_KEYS = {"bin_dirs", "conf_dir", "cache_dir", "netns_dir"}
REGISTRY_KEYS = {"username", "password", "plain_http", "mirrors"}


class ConfigError(ValueError):
    """A config file or flag that cannot be used; names the source and the field."""

    def __init__(self, source: str, field_name: str, message: str) -> None:
        super().__init__(f"{source}: {field_name}: {message}")
        self.source, self.field, self.message = source, field_name, message


@dataclass(frozen=True)
class Registry:
    username: str = ""
    password: str = ""
    plain_http: bool = False
    mirrors: tuple[str, ...] = ()


@dataclass(frozen=True)
class CNIConfig:
    bin_dirs: tuple[str, ...] = DEFAULT_CNI_BIN_DIRS
    conf_dir: str = DEFAULT_CNI_CONF_DIR
    cache_dir: str = ""  # "" : STATE/cni
    netns_dir: str = ""  # "" : /run/corral/netns


@dataclass(frozen=True)
class DaemonConfig:
    root: str = DEFAULT_ROOT
    state: str = DEFAULT_STATE
    socket: str = DEFAULT_SOCKET
    cgroup_parent: str = DEFAULT_CGROUP_PARENT
    sandbox_image: str = ""
    default_registry: str = ""
    default_runtime: str = DEFAULT_RUNTIME
    runtimes: dict[str, str] = field(default_factory=dict)  # class -> binary path
    registries: dict[str, Registry] = field(default_factory=dict)
    cni: CNIConfig = field(default_factory=CNIConfig)
    stream_address: str = DEFAULT_STREAM_ADDRESS
    stream_token_ttl: float = DEFAULT_STREAM_TOKEN_TTL
    drop_infra_container: bool = True  # sandboxes.SandboxManager(drop_infra=...)
    source: str = "<defaults>"

    def runtime_commands(self) -> dict[str, list[str]]:
        """The TaskManager's runtime classes: the defaults found here, then the file's."""
        found = default_runtimes()
        found.update({k: [v] for k, v in self.runtimes.items()})
        return found

    def credentials(self) -> dict[str, tuple[str, str]]:
        return {h: (r.username, r.password) for h, r in self.registries.items() if r.username}

    def plain_http(self) -> list[str]:
        hosts = [h for h, r in self.registries.items() if r.plain_http]
        hosts += [m for r in self.registries.values() if r.plain_http for m in r.mirrors]
        return hosts

    def mirrors(self, registry: str) -> tuple[str, ...]:
        r = self.registries.get(registry)
        return r.mirrors if r else ()


def default_runtimes() -> dict[str, list[str]]:
    """corral-runc next to this interpreter; runc and crun when they are on PATH."""
    found = {DEFAULT_RUNTIME: [os.path.join(os.path.dirname(sys.executable), "corral-runc")]}
    for name in ("runc", "crun"):
        path = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/usr/bin")
        if path:
            found[name] = [path]
    return found


def _str(src: str, where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(src, where, f"must be a string, got {type(value).__name__}")
    return value


def _abs(src: str, where: str, value: Any) -> str:
    text = _str(src, where, value)
    if not os.path.isabs(text):
        raise ConfigError(src, where, f"must be an absolute path, got {text!r}")
    return text


def _strings(src: str, where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(src, where, f"must be a list of strings, got {type(value).__name__}")
    return tuple(_str(src, f"{where}[{i}]", v) for i, v in enumerate(value))


def _unknown(src: str, where: str, table: dict[str, Any], known: set[str]) -> None:
    for key in table:
        if key not in known:
            prefix = f"{where}." if where else ""
            raise ConfigError(src, f"{prefix}{key}",
                              f"unknown field; known: {', '.join(sorted(known))}")


def _table(src: str, where: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(src, where, f"must be a table, got {type(value).__name__}")
    return value


def _stream_address(src: str, value: Any) -> str:
    """HOST:PORT on loopback: the streaming server hands out URLs that carry no other
    credential than their token, so it never listens beyond this machine."""
    text = _str(src, "stream_address", value)
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(src, "stream_address", f"expected HOST:PORT, got {text!r}")
    if host not in ("127.0.0.1", "localhost"):
        raise ConfigError(src, "stream_address", f"must be on 127.0.0.1, got host {host!r}")
    return text


def resolve_binary(src: str, where: str, value: Any) -> str:
    text = _str(src, where, value)
    if os.path.isabs(text):
        if not os.access(text, os.X_OK):
            raise ConfigError(src, where, f"{text} is not an executable file")
        return text
    found = shutil.which(text, path=os.environ.get("PATH", "") + ":/usr/sbin:/usr/bin")
    if not found:
        raise ConfigError(src, where, f"binary {text!r} not found on PATH")
    return found


def parse(data: dict[str, Any], *, source: str) -> DaemonConfig:
    """A DaemonConfig from the decoded TOML DATA; SOURCE names it in errors."""
    _unknown(source, "", data, KNOWN_KEYS)
    kw: dict[str, Any] = {"source": source}
    for key in ("root", "state", "socket", "cgroup_parent"):
        if key in data:
            kw[key] = _abs(source, key, data[key])
    for key in ("sandbox_image", "default_registry", "default_runtime"):
        if key in data:
            kw[key] = _str(source, key, data[key])
    if "stream_address" in data:
        kw["stream_address"] = _stream_address(source, data["stream_address"])
    if "drop_infra_container" in data:
        drop = data["drop_infra_container"]
        if not isinstance(drop, bool):
            raise ConfigError(source, "drop_infra_container",
                              f"must be true or false, got {drop!r}")
        kw["drop_infra_container"] = drop
    if "stream_token_ttl" in data:
        ttl = data["stream_token_ttl"]
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 < ttl <= 3600:
            raise ConfigError(source, "stream_token_ttl",
                              f"must be a number of seconds in (0, 3600], got {ttl!r}")
        kw["stream_token_ttl"] = float(ttl)
    runtimes: dict[str, str] = {}
    for name, binary in _table(source, "runtimes", data.get("runtimes", {})).items():
        runtimes[name] = resolve_binary(source, f"runtimes.{name}", binary)
    kw["runtimes"] = runtimes
    registries: dict[str, Registry] = {}
    for host, raw in _table(source, "registries", data.get("registries", {})).items():
        where = f"registries.{host}"
        table = _table(source, where, raw)
        _unknown(source, where, table, REGISTRY_KEYS)
        plain = table.get("plain_http", False)
        if not isinstance(plain, bool):
            raise ConfigError(source, f"{where}.plain_http", "must be true or false")
        user = _str(source, f"{where}.username", table.get("username", ""))
        password = _str(source, f"{where}.password", table.get("password", ""))
        if bool(user) != bool(password):
            raise ConfigError(source, f"{where}.password" if user else f"{where}.username",
                              "username and password go together")
        registries[host] = Registry(user, password, plain,
                                    _strings(source, f"{where}.mirrors", table.get("mirrors", [])))
    kw["registries"] = registries
    cni = _table(source, "cni", data.get("cni", {}))
    _unknown(source, "cni", cni, CNI_KEYS)
    cni_kw: dict[str, Any] = {}
    if "bin_dirs" in cni:
        dirs = _strings(source, "cni.bin_dirs", cni["bin_dirs"])
        for i, d in enumerate(dirs):
            _abs(source, f"cni.bin_dirs[{i}]", d)
        cni_kw["bin_dirs"] = dirs
    for key in ("conf_dir", "cache_dir", "netns_dir"):
        if key in cni:
            cni_kw[key] = _abs(source, f"cni.{key}", cni[key])
    kw["cni"] = CNIConfig(**cni_kw)
    cfg = DaemonConfig(**kw)
    check(cfg)
    return cfg


def check(cfg: DaemonConfig) -> None:
    known = cfg.runtime_commands()
    if cfg.default_runtime not in known:
        raise ConfigError(cfg.source, "default_runtime",
                          f"unknown runtime class {cfg.default_runtime!r}; known: "
                          f"{', '.join(sorted(known))}")
    if len(cfg.socket.encode()) > 107:
        raise ConfigError(cfg.source, "socket", f"path longer than 107 bytes: {cfg.socket}")


def load(path: str) -> DaemonConfig:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(path, "(file)", "no such file") from None
    except OSError as e:
        raise ConfigError(path, "(file)", e.strerror or str(e)) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, "(syntax)", str(e)) from None
    return parse(data, source=path)


def with_flags(cfg: DaemonConfig, **flags: str | None) -> DaemonConfig:
    """Flags (root, state, socket) that are set win over the file."""
    changes = {k: v for k, v in flags.items() if v is not None}
    for key, value in changes.items():
        if key not in ("root", "state", "socket"):
            raise ConfigError("flags", key, "not a flag")
        if not os.path.isabs(value):
            changes[key] = os.path.abspath(value)
    out = replace(cfg, **changes)  # type: ignore[arg-type]
    check(out)
    return out
