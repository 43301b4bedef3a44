"""`clusterctl completion bash|zsh` prints a completion script; the script asks the hidden
`clusterctl __complete WORDS...` for candidates, so completion knows what the CLI knows:

    word 1                  commands
    after get/describe/...  resource types (offline table: no server needed)
    after a type            object names (a list from the server; silent if unreachable)
    after config            its actions; after completion: bash, zsh
"""

from __future__ import annotations

import argparse
import sys

TYPED = ("get", "describe", "delete", "edit", "scale", "wait", "explain", "rollout")
ROLLOUT = ("status", "history", "undo", "restart")
CONFIG = ("view", "get-contexts", "current-context", "use-context", "set-context")

BASH = """# clusterctl bash completion: source <(clusterctl completion bash)
_clusterctl() {
    local cur="${COMP_WORDS[COMP_CWORD]}"
    local IFS=$'\\n'
    COMPREPLY=($(compgen -W "$(clusterctl __complete "${COMP_WORDS[@]:1:COMP_CWORD-1}" \
2>/dev/null)" -- "$cur"))
}
complete -o default -F _clusterctl clusterctl
"""

ZSH = """#compdef clusterctl
# clusterctl zsh completion: source <(clusterctl completion zsh)
_clusterctl() {
    local -a candidates
    candidates=("${(@f)$(clusterctl __complete "${(@)words[2,CURRENT-1]}" 2>/dev/null)}")
    compadd -- "${candidates[@]}"
}
if [ "$funcstack[1]" = "_clusterctl" ]; then
    _clusterctl "$@"
else
    compdef _clusterctl clusterctl
fi
"""


def add_arguments(p: argparse.ArgumentParser, verb: str) -> None:
    if verb == "__complete":
        p.add_argument("words", nargs=argparse.REMAINDER)
    else:
        p.add_argument("shell", choices=("bash", "zsh"))


def candidates(words: list[str]) -> list[str]:
    """What may come after WORDS (the words typed so far, without `clusterctl`)."""
    from clusterctl.main import COMMANDS, find_command
    at = find_command(words)
    if at < 0:
        return [c for c in COMMANDS if not c.startswith("_")]
    verb, rest = words[at], [w for w in words[at + 1:] if not w.startswith("-")]
    if verb == "config":
        return list(CONFIG) if not rest else _contexts() if rest[0] == "use-context" else []
    if verb == "completion":
        return ["bash", "zsh"] if not rest else []
    if verb == "rollout":
        if not rest:
            return list(ROLLOUT)
        rest = rest[1:]
    if verb not in TYPED and verb != "rollout":
        return []
    from clusterctl.resources import offline
    if not rest:
        return sorted(r.name for r in offline().resources)
    if verb == "explain":
        return []
    return _names(rest[0], words)


def _contexts() -> list[str]:
    try:
        from api.client import config_path
        from clusterctl.commands.config import load
        return [str(c.get("name")) for c in load(config_path()).get("contexts") or []]
    except Exception:  # completion stays silent
        return []


def _names(type_text: str, words: list[str]) -> list[str]:
    try:
        from clusterctl.main import _Parser, add_globals
        from clusterctl.session import Session
        parser = _Parser(add_help=False)
        add_globals(parser)
        args, _ = parser.parse_known_args(words)
        s = Session(args)
        res = s.resolver().resolve(type_text)
        listed = s.client().list(res.name, namespace=s.namespace if res.namespaced else "")
        return sorted(o["metadata"]["name"] for o in listed.get("items") or [])
    except Exception:  # completion stays silent
        return []


def run(args: argparse.Namespace) -> int:
    if args.verb == "__complete":
        sys.stdout.write("".join(f"{c}\n" for c in candidates(args.words)))
        return 0
    sys.stdout.write(BASH if args.shell == "bash" else ZSH)
    return 0
