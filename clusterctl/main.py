"""The dispatcher: find the verb, import only its module, parse, run, map errors to exits.

    clusterctl [-n NS] [--config FILE] [--context NAME] VERB [ARGS...]

Each command module under clusterctl/commands/ has `add_arguments(parser)` and
`run(args) -> int`. Errors leave as `error: ...` (or kubectl's `Error from server
(Reason): ...`) on stderr with exit code 1.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

# verb -> (module under clusterctl.commands, one-line help); the order is the help's
COMMANDS: dict[str, tuple[str, str]] = {
    "apply": ("apply", "Apply a configuration to objects from files or stdin"),
    "get": ("get", "Display one or many objects"),
    "create": ("create", "Create objects from files or stdin"),
    "delete": ("delete", "Delete objects by file, type and name, or label selector"),
    "describe": ("describe", "Show details of an object, with its events"),
    "edit": ("edit", "Edit an object in $EDITOR"),
    "diff": ("diff", "Diff the live objects against what apply would make of the files"),
    "scale": ("scale", "Set a new size for a Deployment or ReplicaSet"),
    "rollout": ("rollout", "Manage the rollout of a Deployment"),
    "wait": ("wait", "Wait for a condition on objects, or for their deletion"),
    "explain": ("explain", "Documentation of a kind and its fields"),
    "logs": ("logs", "Print the logs of a container in a pod"),
    "exec": ("exec", "Run a command in a container"),
    "top": ("top", "Show CPU and memory use of nodes or pods"),
    "config": ("config", "Modify the client config (contexts, namespace)"),
    "cluster": ("cluster", "Start or stop a local multi-node cluster (up, down)"),
    "completion": ("completion", "Print a shell completion script (bash, zsh)"),
    "version": ("version", "Print the client and server versions"),
    "__complete": ("completion", argparse.SUPPRESS),
}
_VALUED_GLOBALS = ("-n", "--namespace", "--config", "--context")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # kubectl's usage errors exit 1, not 2
        self.print_usage(sys.stderr)
        sys.stderr.write(f"error: {message}\n")
        raise SystemExit(1)


def add_globals(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("global options")
    g.add_argument("--config", metavar="FILE", help="client config (default: $CORRAL_CONFIG,"
                   " else ~/.corral/config)")
    g.add_argument("--context", metavar="NAME", help="the config context to use")
    g.add_argument("-n", "--namespace", metavar="NS", help="the namespace (default: the "
                   "context's, else default)")


def find_command(argv: list[str]) -> int:
    """The index of the verb in ARGV (skipping global options and their values), or -1."""
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in _VALUED_GLOBALS:
            i += 2
            continue
        if not a.startswith("-"):
            return i
        i += 1
    return -1


def usage() -> str:
    width = max(len(c) for c in COMMANDS)
    lines = ["clusterctl controls a corral cluster.", "",
             "Usage: clusterctl [-n NS] [--config FILE] [--context NAME] COMMAND [ARGS]", "",
             "Commands:"]
    lines += [f"  {name.ljust(width)}  {text}" for name, (_, text) in COMMANDS.items()
              if text != argparse.SUPPRESS]
    lines += ["", 'Use "clusterctl COMMAND --help" for more about a command.']
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    at = find_command(argv)
    if at < 0:
        sys.stdout.write(usage())
        return 0 if not argv or any(a in ("-h", "--help") for a in argv) else 1
    verb = argv[at]
    if verb not in COMMANDS:
        sys.stderr.write(f'error: unknown command "{verb}" for "clusterctl"\n'
                         'Run "clusterctl --help" for usage.\n')
        return 1
    module_name, text = COMMANDS[verb]
    module = importlib.import_module(f"clusterctl.commands.{module_name}")
    parser = _Parser(prog=f"clusterctl {verb}", description=text)
    add_globals(parser)
    module.add_arguments(parser, verb)
    try:
        args = parser.parse_args(argv[:at] + argv[at + 1:])
        args.verb = verb
        rc: int = module.run(args)
        sys.stdout.flush()  # inside the try: a closed pipe is reported here, not later
        return rc
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `clusterctl get pods | head`
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as err:  # the one place where errors become exit codes
        from clusterctl.session import report
        return report(err)


if __name__ == "__main__":
    sys.exit(main())
