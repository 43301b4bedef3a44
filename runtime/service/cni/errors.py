"""The CNI package's one error taxonomy (mapped to gRPC codes at the CRI edge, later).

    CNIError
    ├── ConfigError        a malformed conflist/conf: names the file and the field  (INVALID_ARGUMENT)
    ├── InvalidAttachment  a bad container ID, interface name or CNI_ARGS pair     (INVALID_ARGUMENT)
    ├── PluginNotFound     no executable for a plugin type: names the dirs searched (FAILED_PRECONDITION)
    ├── PluginError        a plugin failed: its JSON error (code, msg, details), the
    │   │                  plugin, network, container and command               (UNKNOWN / per code)
    │   └── IncompatibleVersion  the plugin does not speak the list's cniVersion
    ├── ResultError        a plugin's output is not a valid CNI result          (INTERNAL)
    ├── NotAttached        CHECK of a container with no cached ADD result        (NOT_FOUND)
    └── NetnsError         creating or removing a network namespace failed        (INTERNAL)

Messages name the object first:
``network corral, container abc, plugin bridge: ADD failed: [code 7 invalid network config]
failed to parse: … (details: …)``.
"""

from __future__ import annotations

from typing import Any

#: The spec's well-known error codes (0-99 reserved; 100+ are plugin-specific).
WELL_KNOWN_CODES: dict[int, str] = {
    1: "incompatible CNI version",
    2: "unsupported field in network configuration",
    3: "container unknown or does not exist",
    4: "invalid necessary environment variables",
    5: "I/O failure",
    6: "failed to decode content",
    7: "invalid network config",
    11: "try again later",
    50: "plugin not available",
    51: "plugin not available, existing containers may have limited connectivity",
}


class CNIError(Exception):
    """Base of every CNI error."""


class ConfigError(CNIError, ValueError):
    """``<file>: <field>: <problem>``."""

    def __init__(self, source: str, field: str, problem: str) -> None:
        super().__init__(f"{source}: {field}: {problem}" if field else f"{source}: {problem}")
        self.source = source
        self.field = field
        self.problem = problem


class InvalidAttachment(CNIError, ValueError):
    pass


class PluginNotFound(CNIError):
    def __init__(self, plugin: str, searched: list[str]) -> None:
        where = ", ".join(searched) if searched else "(no CNI_PATH directories given)"
        super().__init__(f"plugin {plugin}: no executable named {plugin!r} in {where}")
        self.plugin = plugin
        self.searched = searched


class PluginError(CNIError):
    """A plugin exited non-zero (or could not run): what it said, and who it was."""

    def __init__(self, *, plugin: str, command: str, msg: str, network: str = "",
                 container: str = "", code: int | None = None, details: str = "",
                 stderr: str = "") -> None:
        self.plugin = plugin
        self.command = command
        self.network = network
        self.container = container
        self.code = code
        self.msg = msg
        self.details = details
        self.stderr = stderr
        super().__init__(str(self))

    def __str__(self) -> str:
        who = [f"network {self.network}" if self.network else "",
               f"container {self.container}" if self.container else "",
               f"plugin {self.plugin}"]
        text = f"{', '.join(w for w in who if w)}: {self.command} failed: "
        if self.code is not None:
            known = WELL_KNOWN_CODES.get(self.code)
            text += f"[code {self.code}{' ' + known if known else ''}] "
        text += self.msg
        if self.details:
            text += f" (details: {self.details})"
        if self.stderr and self.stderr not in self.msg:
            text += f" (stderr: {self.stderr.strip()[-500:]})"
        return text

    @property
    def try_again(self) -> bool:
        return self.code == 11

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "msg": self.msg, "details": self.details}


class IncompatibleVersion(PluginError):
    pass


class ResultError(CNIError):
    pass


class NotAttached(CNIError):
    pass


class NetnsError(CNIError):
    pass
