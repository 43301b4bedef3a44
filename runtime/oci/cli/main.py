"""corral-runc entry point: global flags, then the verb's own module."""

from __future__ import annotations

import os
import sys

from .flags import BOOL, STR, UsageError, parse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

VERSION = "0.1.0"
SPEC_VERSION = "1.2.0"
DEFAULT_ROOT = "/run/corral-runc"

GLOBAL_FLAGS = {
    "root": (STR, ()),
    "log": (STR, ()),
    "log-format": (STR, ()),
    "debug": (BOOL, ()),
    "systemd-cgroup": (BOOL, ()),
    "rootless": (STR, ()),
    "criu": (STR, ()),
    "version": (BOOL, ("v",)),
    "help": (BOOL, ("h",)),
}

VERBS = {
    "spec": "Create a new specification file (config.json)",
    "create": "Create a container",
    "start": "Execute the user-defined process in a created container",
    "run": "Create and start a container",
    "state": "Output the state of a container",
    "kill": "Send a signal to the container's init process",
    "delete": "Delete any resources held by the container",
    "list": "List containers started by corral-runc with the given root",
    "ps": "Display the processes running inside a container",
    "exec": "Execute a new process inside the container",
    "pause": "Suspend all processes inside the container",
    "resume": "Resume all processes that have been previously paused",
    "events": "Display container events such as OOM notifications and resource stats",
    "update": "Update container resource constraints",
    "features": "Show the enabled features",
}
ALIASES = {"ls": "list", "rm": "delete", "unpause": "resume"}


class Globals:
    def __init__(self, values: dict[str, Any]) -> None:
        self.root: str = values["root"] or DEFAULT_ROOT
        self.log: str | None = values["log"]
        self.log_format: str = values["log-format"] or "text"
        self.debug: bool = bool(values["debug"])
        self.systemd_cgroup: bool = bool(values["systemd-cgroup"])

    def store(self) -> Any:
        from ..state import Store
        return Store(self.root)


def usage() -> str:
    lines = ["usage: corral-runc [global options] command [command options] [arguments...]",
             "", "commands:"]
    lines += [f"   {v:<10} {d}" for v, d in VERBS.items()]
    lines += ["", "global options: --root DIR (default /run/corral-runc), --log FILE, "
              "--log-format text|json, --debug, --systemd-cgroup"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from .. import log
    verb = ""
    try:
        values, rest = parse(GLOBAL_FLAGS, argv)
        if values["version"]:
            sys.stdout.write(f"corral-runc version {VERSION}\nspec: {SPEC_VERSION}\n")
            return 0
        if values["log-format"] not in (None, "text", "json"):
            raise UsageError(f"invalid log-format: {values['log-format']}")
        g = Globals(values)
        log.configure(g.log, g.log_format, g.debug)
        if values["help"] or not rest or rest[0] == "help":
            sys.stdout.write(usage())
            return 0
        verb = ALIASES.get(rest[0], rest[0])
        if verb not in VERBS:
            raise UsageError(f"No help topic for '{rest[0]}'")
        if g.systemd_cgroup and verb in ("create", "run"):
            _check_systemd()
        module = __import__(f"runtime.oci.cli.{'spec_cmd' if verb == 'spec' else verb + '_cmd'}",
                            fromlist=["main"])
        rc: int = module.main(g, rest[1:])
        return rc
    except UsageError as e:
        sys.stderr.write(f"corral-runc: {e}\n")
        log.error(str(e))
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # every failure becomes runc's "message on stderr, exit 1"
        from ..errors import OCIError
        msg = str(e) if isinstance(e, OCIError | OSError) else f"{type(e).__name__}: {e}"
        if verb == "exec":
            msg = "exec failed: " + msg
        sys.stderr.write(msg + "\n")
        log.error(msg)
        if os.environ.get("CORRAL_RUNC_TRACEBACK"):
            import traceback
            traceback.print_exc()
        return 255 if verb == "exec" else 1


def _check_systemd() -> None:
    if not os.path.isdir("/run/systemd/system"):
        from ..errors import Unsupported
        raise Unsupported("--systemd-cgroup", "systemd is not running on this host "
                          "(no /run/systemd/system); use the default cgroupfs driver",
                          source="corral-runc")


def need_id(args: list[str], verb: str) -> str:
    if len(args) < 1:
        raise UsageError(f"{verb}: requires a container id")
    return args[0]
