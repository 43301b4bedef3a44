"""The runtime's one error taxonomy.

    OCIError                      every failure the runtime reports (CLI exit code 1)
     +-- ConfigError              config.json is invalid; names the field path
     |    +-- Unsupported         a valid field this runtime cannot honour
     +-- NotFound                 no container with that ID
     +-- AlreadyExists            a container with that ID exists
     +-- InvalidState             the verb is not allowed in the container's state
     +-- SetupError               a step of container setup failed in the kernel

The CLI maps every OCIError to exit code 1 and its message on stderr (and in the --log
file), as runc does; clients such as containerd's shim read that message.
"""

from __future__ import annotations


class OCIError(Exception):
    """Base of every error the runtime reports to its caller."""


class ConfigError(OCIError):
    """An invalid config.json (or process.json); `field` is the JSON path."""

    def __init__(self, field: str, problem: str, *, source: str = "config.json") -> None:
        self.field = field
        self.problem = problem
        self.source = source
        super().__init__(f"{source}: {field}: {problem}" if field else f"{source}: {problem}")


class Unsupported(ConfigError):
    """A field the spec defines but this runtime cannot honour: never silently ignored."""


class NotFound(OCIError):
    pass


class AlreadyExists(OCIError):
    pass


class InvalidState(OCIError):
    pass


class SetupError(OCIError):
    pass
