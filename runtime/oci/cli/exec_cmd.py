"""corral-runc exec [--process FILE | options] ID [COMMAND ARGS...]"""

from __future__ import annotations

from .flags import BOOL, INT, LIST, STR, UsageError, parse
from .main import Globals, need_id

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FLAGS = {
    "process": (STR, ("p",)),
    "tty": (BOOL, ("t",)),
    "detach": (BOOL, ("d",)),
    "pid-file": (STR, ()),
    "console-socket": (STR, ()),
    "env": (LIST, ("e",)),
    "cwd": (STR, ()),
    "user": (STR, ("u",)),
    "additional-gids": (LIST, ("g",)),
    "cap": (LIST, ("c",)),
    "no-new-privs": (BOOL, ()),
    "preserve-fds": (INT, ()),
    "process-label": (STR, ()),
    "apparmor": (STR, ()),
    "cgroup": (LIST, ()),
    "ignore-paused": (BOOL, ()),
}


def _user(text: str | None, gids: list[str]) -> dict[str, Any] | None:
    if text is None and not gids:
        return None
    user: dict[str, Any] = {}
    if text is not None:
        uid, _, gid = text.partition(":")
        try:
            user["uid"] = int(uid)
            if gid:
                user["gid"] = int(gid)
        except ValueError:
            raise UsageError(f"--user: expected UID[:GID] numbers, got {text!r}") from None
    if gids:
        try:
            user["additionalGids"] = [int(g) for g in gids]
        except ValueError:
            raise UsageError("--additional-gids: expected numbers") from None
    return user


def main(g: Globals, argv: list[str]) -> int:
    v, args = parse(FLAGS, argv)
    cid = need_id(args, "exec")
    if v["process-label"] or v["apparmor"]:
        raise UsageError("--process-label/--apparmor: SELinux and AppArmor are not supported")
    if v["cgroup"]:
        raise UsageError("--cgroup: joining a sub-cgroup is not supported")
    if not v["process"] and len(args) < 2:
        raise UsageError("exec: arguments or --process are required")
    from ..execproc import build_process, exec_in
    c = g.store().load(cid)
    proc = build_process(c, process_file=v["process"], args=args[1:], overrides={
        "env": v["env"], "cwd": v["cwd"], "user": _user(v["user"], v["additional-gids"]),
        "caps": v["cap"], "tty": v["tty"], "no_new_privs": v["no-new-privs"]})
    return exec_in(c, proc, detach=bool(v["detach"]), pid_file=v["pid-file"],
                   console_socket=v["console-socket"], preserve_fds=v["preserve-fds"] or 0)
