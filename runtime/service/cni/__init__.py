"""Pod networking: network namespaces and the CNI plugin protocol, driving the standard
plugins (bridge, host-local, loopback, portmap from ``containernetworking-plugins``).

    RunPodSandbox                                   StopPodSandbox / RemovePodSandbox
        │ netns.create(sandbox id)                      ▲ netns.remove(path)
        ▼   -> /run/corral/netns/<id>                   │
    config.DefaultNetwork(conf dir)   ─ default.write_default() makes corral0's conflist
        │ NetworkConfigList (validated; ConfigError names file + field)
        ▼
    network.Network(conf, plugin_dirs, cache_dir)
        │ add(Attachment(id, netns, "eth0", capability_args={"portMappings": …}))
        │   plugins in order, prevResult chained  ──► exec.run_plugin: env CNI_* + JSON stdin
        │   final result cached (DEL/CHECK reuse it)       ◄── result JSON / error JSON
        │ check(att)   delete(att) (reverse order, idempotent)   gc(valid attachments)
        │   (portmap only with hostPorts; a netns no longer mounted: DEL without one,
        │    then masq.drop removes bridge's ipMasq rules for the ID)
        ▼
    result.Result: interfaces, ips (+gateway), routes, dns  ─► the pod IP for PodSandboxStatus

Errors: errors.py (PluginError names plugin, network, container; PluginNotFound the dirs).
"""

from runtime.service.cni.config import (
    DefaultNetwork,
    NetworkConfigList,
    PluginConf,
    load_dir,
    load_file,
    parse_conf,
    parse_conflist,
    plugin_stdin,
)
from runtime.service.cni.default import bridge_conflist, write_default
from runtime.service.cni.errors import (
    CNIError,
    ConfigError,
    IncompatibleVersion,
    InvalidAttachment,
    NetnsError,
    NotAttached,
    PluginError,
    PluginNotFound,
    ResultError,
)
from runtime.service.cni.exec import (
    Invocation,
    VersionInfo,
    build_env,
    find_plugin,
    probe_version,
    run_plugin,
)
from runtime.service.cni.network import Attachment, CachedAttachment, Network
from runtime.service.cni.result import DNS, Interface, IPConfig, Result, Route, parse_result

DEFAULT_PLUGIN_DIRS = ("/opt/cni/bin", "/usr/lib/cni")
DEFAULT_CONF_DIR = "/etc/cni/net.d"
DEFAULT_CACHE_DIR = "/var/lib/corral/cni"

__all__ = [
    "DEFAULT_CACHE_DIR",
    "DEFAULT_CONF_DIR",
    "DEFAULT_PLUGIN_DIRS",
    "DNS",
    "Attachment",
    "CNIError",
    "CachedAttachment",
    "ConfigError",
    "DefaultNetwork",
    "IPConfig",
    "IncompatibleVersion",
    "Interface",
    "InvalidAttachment",
    "Invocation",
    "NetnsError",
    "Network",
    "NetworkConfigList",
    "NotAttached",
    "PluginConf",
    "PluginError",
    "PluginNotFound",
    "Result",
    "ResultError",
    "Route",
    "VersionInfo",
    "bridge_conflist",
    "build_env",
    "find_plugin",
    "load_dir",
    "load_file",
    "parse_conf",
    "parse_conflist",
    "parse_result",
    "plugin_stdin",
    "probe_version",
    "run_plugin",
    "write_default",
]
