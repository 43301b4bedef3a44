"""Network configuration lists, loaded and validated the way libcni/containerd load them.

    conf dir ── *.conflist, *.conf, *.json (sorted by file name, lowest first)
        │  parse_conflist / parse_conf (a single-plugin .conf is wrapped into a list)
        ▼
    NetworkConfigList(name, cni_version, plugins=[PluginConf(type, raw, capabilities)])
        │  (DefaultNetwork(conf dir).get(): the first file's, parsed again only if it changed)
        │  plugin_stdin(list, plugin, prev_result=…, capability_args=…)
        ▼
    the JSON one plugin reads on stdin (name + cniVersion from the list, runtimeConfig for
    the capabilities it declares, prevResult when chaining)

Validation errors are ``ConfigError``: ``/etc/cni/net.d/10-a.conflist: plugins[1].type:
required``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runtime.service.cni.errors import ConfigError

EXTENSIONS = (".conflist", ".conf", ".json")
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")
VERSION_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
#: Versions of the spec this runtime speaks (the result shapes parse_result knows).
SUPPORTED_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")


def version_tuple(version: str) -> tuple[int, int, int]:
    m = VERSION_RE.match(version)
    if not m:
        raise ValueError(f"not a version: {version!r}")
    return int(m[1]), int(m[2]), int(m[3])


@dataclass(frozen=True)
class PluginConf:
    type: str
    raw: Mapping[str, Any]  # the plugin's object as written in the list
    capabilities: frozenset[str] = frozenset()


@dataclass(frozen=True)
class NetworkConfigList:
    name: str
    cni_version: str
    plugins: tuple[PluginConf, ...]
    disable_check: bool = False
    disable_gc: bool = False
    source: str = "<memory>"
    raw: Mapping[str, Any] | None = None

    def supports(self, minimum: str) -> bool:
        return version_tuple(self.cni_version) >= version_tuple(minimum)

    def to_json(self) -> dict[str, Any]:
        if self.raw is not None:
            return dict(self.raw)
        return {"cniVersion": self.cni_version, "name": self.name,
                "plugins": [dict(p.raw) for p in self.plugins]}


def _pick_version(obj: Mapping[str, Any], source: str) -> str:
    """``cniVersions`` (1.1.0): the highest we support; else ``cniVersion``."""
    versions = obj.get("cniVersions")
    if versions is not None:
        if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
            raise ConfigError(source, "cniVersions", f"must be a list of strings, got {versions!r}")
        ours = [v for v in versions if v in SUPPORTED_VERSIONS]
        if ours:
            return str(max(ours, key=version_tuple))
    version = obj.get("cniVersion")
    if version is None:
        if versions is not None:
            raise ConfigError(source, "cniVersions",
                              f"none of {versions} is supported (we speak {SUPPORTED_VERSIONS})")
        raise ConfigError(source, "cniVersion", "required")
    if not isinstance(version, str):
        raise ConfigError(source, "cniVersion", f"must be a string, got {version!r}")
    if version not in SUPPORTED_VERSIONS:
        raise ConfigError(source, "cniVersion",
                          f"unsupported version {version!r} (we speak {', '.join(SUPPORTED_VERSIONS)})")
    return version


def _bool(obj: Mapping[str, Any], key: str, source: str) -> bool:
    value = obj.get(key, False)
    if isinstance(value, str) and value.lower() in ("true", "false"):  # libcni accepts these
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise ConfigError(source, key, f"must be a boolean, got {value!r}")
    return value


def _plugin(raw: Any, source: str, where: str) -> PluginConf:
    if not isinstance(raw, dict):
        raise ConfigError(source, where, f"must be an object, got {raw!r}")
    type_ = raw.get("type")
    if type_ is None or type_ == "":
        raise ConfigError(source, f"{where}.type", "required")
    if not isinstance(type_, str):
        raise ConfigError(source, f"{where}.type", f"must be a string, got {type_!r}")
    if "/" in type_ or type_ in (".", ".."):
        raise ConfigError(source, f"{where}.type", f"must be a plain executable name, got {type_!r}")
    caps = raw.get("capabilities", {})
    if not isinstance(caps, dict) or not all(isinstance(v, bool) for v in caps.values()):
        raise ConfigError(source, f"{where}.capabilities",
                          f"must be an object of booleans, got {caps!r}")
    return PluginConf(type=type_, raw=raw, capabilities=frozenset(k for k, v in caps.items() if v))


def _name(obj: Mapping[str, Any], source: str) -> str:
    name = obj.get("name")
    if name is None or name == "":
        raise ConfigError(source, "name", "required")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ConfigError(source, "name", f"must match {NAME_RE.pattern}, got {name!r}")
    return name


def _decode(data: bytes | str, source: str) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(source, "", f"not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ConfigError(source, "", f"must be a JSON object, got {type(obj).__name__}")
    return obj


def parse_conflist(data: bytes | str, *, source: str = "<memory>") -> NetworkConfigList:
    obj = _decode(data, source)
    name = _name(obj, source)
    version = _pick_version(obj, source)
    plugins = obj.get("plugins")
    if plugins is None:
        raise ConfigError(source, "plugins", "required")
    if not isinstance(plugins, list) or not plugins:
        raise ConfigError(source, "plugins", f"must be a non-empty list, got {plugins!r}")
    parsed = tuple(_plugin(p, source, f"plugins[{i}]") for i, p in enumerate(plugins))
    return NetworkConfigList(name=name, cni_version=version, plugins=parsed,
                             disable_check=_bool(obj, "disableCheck", source),
                             disable_gc=_bool(obj, "disableGC", source), source=source, raw=obj)


def parse_conf(data: bytes | str, *, source: str = "<memory>") -> NetworkConfigList:
    """A single plugin's ``.conf``, wrapped into a list of one (as libcni does)."""
    obj = _decode(data, source)
    name = _name(obj, source)
    version = _pick_version(obj, source)
    plugin = _plugin(obj, source, "")  # fields of a .conf are top-level: "type", not ".type"
    raw = {"cniVersion": version, "name": name, "plugins": [obj]}
    return NetworkConfigList(name=name, cni_version=version, plugins=(plugin,),
                             disable_check=_bool(obj, "disableCheck", source), source=source,
                             raw=raw)


def load_file(path: str) -> NetworkConfigList:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError(path, "", f"cannot read: {e.strerror}") from None
    if path.endswith(".conflist"):
        return parse_conflist(data, source=path)
    # a .conf/.json holding a list ("plugins") is read as one, like libcni's ConfFiles
    obj = _decode(data, path)
    return parse_conflist(data, source=path) if "plugins" in obj else parse_conf(data, source=path)


def config_files(conf_dir: str) -> list[str]:
    try:
        names = sorted(os.listdir(conf_dir))
    except FileNotFoundError:
        return []
    return [os.path.join(conf_dir, n) for n in names
            if n.endswith(EXTENSIONS) and os.path.isfile(os.path.join(conf_dir, n))]


def load_dir(conf_dir: str) -> list[NetworkConfigList]:
    """Every network in CONF_DIR, lowest file name first; a bad file raises ConfigError."""
    return [load_file(p) for p in config_files(conf_dir)]


class DefaultNetwork:
    """The network a pod joins: the first file of CONF_DIR by name (containerd's choice).

    get() lists the dir each time (a new first file, or none left, is seen at once) but
    parses the file again only when it changed: another path, or the same name replaced
    (rename) or rewritten (inode, size, mtime, ctime). Every RunPodSandbox and Status asks.
    """

    def __init__(self, conf_dir: str) -> None:
        self.conf_dir = conf_dir
        self._loaded: tuple[tuple[Any, ...], NetworkConfigList] | None = None

    def get(self) -> NetworkConfigList | None:
        """The first network of the dir (the same object while its file is unchanged), or
        None if the dir holds none; ConfigError for a file that is bad or went away."""
        files = config_files(self.conf_dir)
        if not files:
            return None
        try:
            st = os.stat(files[0])
            key: tuple[Any, ...] = (files[0], st.st_ino, st.st_size, st.st_mtime_ns,
                                    st.st_ctime_ns)
        except FileNotFoundError:  # removed since the listing: load_file says so
            key = ()
        loaded = self._loaded
        if key and loaded is not None and loaded[0] == key:
            return loaded[1]
        conf = load_file(files[0])
        self._loaded = (key, conf) if key else None
        return conf


def plugin_stdin(net: NetworkConfigList, plugin: PluginConf, *,
                 prev_result: Mapping[str, Any] | None = None,
                 capability_args: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON PLUGIN reads on stdin: its object plus name, cniVersion, runtimeConfig
    (only the capabilities it declares) and prevResult."""
    conf = {k: v for k, v in plugin.raw.items() if k not in ("prevResult", "runtimeConfig")}
    conf["name"] = net.name
    conf["cniVersion"] = net.cni_version
    runtime = {k: v for k, v in (capability_args or {}).items() if k in plugin.capabilities}
    if runtime:
        conf["runtimeConfig"] = runtime
    if prev_result is not None:
        conf["prevResult"] = dict(prev_result)
    return conf
