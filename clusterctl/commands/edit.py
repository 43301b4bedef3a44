"""`clusterctl edit TYPE NAME`: the object as YAML in $EDITOR, then an update.

    get ─► YAML in a temp file ─► $EDITOR ─► unchanged? "Edit cancelled"
        ─► update at the read resourceVersion ─► error? reopen the file with the error as
           comments at the top (kubectl's loop); saved again unchanged? keep a copy, exit 1
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
from typing import Any

from clusterctl.session import CLIError, Session, emit, server_error, strip_for_output

HEADER = ("# Please edit the object below. Lines beginning with a '#' will be ignored,\n"
          "# and an empty file will abort the edit. If an error occurs while saving this "
          "file will be\n# reopened with the relevant failures.\n#\n")


def add_arguments(p: argparse.ArgumentParser, verb: str) -> None:
    p.add_argument("targets", nargs="+", metavar="TYPE NAME | TYPE/NAME")


def editor() -> list[str]:
    return shlex.split(os.environ.get("CLUSTERCTL_EDITOR") or os.environ.get("EDITOR")
                       or "vi")


def strip_comments(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def run(args: argparse.Namespace) -> int:
    from api import codec
    from api.errors import APIError
    from clusterctl.resources import parse_targets
    pairs = parse_targets(args.targets)
    if len(pairs) != 1 or pairs[0][1] is None:
        raise CLIError("edit takes one object: TYPE NAME or TYPE/NAME")
    s = Session(args)
    res = s.resolver().resolve(pairs[0][0])
    name = str(pairs[0][1])
    ns = s.namespace if res.namespaced else ""
    client = s.client()
    try:
        live = strip_for_output(client.get(res.name, name, namespace=ns))
    except APIError as err:
        sys.stderr.write(server_error(err, res=res, name=name) + "\n")
        return 1
    original = codec.to_yaml(live)
    fd, path = tempfile.mkstemp(prefix=f"clusterctl-edit-{name}-", suffix=".yaml")
    text = HEADER + original
    previous: str | None = None
    try:
        while True:
            with os.fdopen(os.open(path, os.O_WRONLY | os.O_TRUNC), "w") as f:
                f.write(text)
            if subprocess.call([*editor(), path]) != 0:
                raise CLIError(f"the editor {editor()[0]} failed")
            with open(path) as f:
                edited = strip_comments(f.read())
            if not edited.strip():
                emit("Edit cancelled, no changes made.")
                return 0
            if edited.strip() == strip_comments(original).strip():
                emit("Edit cancelled, no changes made.")
                return 0
            if previous is not None and edited == previous:
                sys.stderr.write(f"error: {res.ref(name)}: the edit was not saved\n"
                                 f"A copy of your changes has been stored to \"{path}\"\n")
                path = ""
                return 1
            problem = _save(client, res, ns, name, edited)
            if problem is None:
                emit(f"{res.ref(name)} edited")
                return 0
            previous = edited
            text = HEADER + "".join(f"# {line}\n" for line in problem.splitlines()) + \
                "#\n" + edited + "\n"
    finally:
        os.close(fd)
        if path:
            os.unlink(path)
        s.close()


def _save(client: Any, res: Any, ns: str, name: str, edited: str) -> str | None:
    """None when saved, else the error to show in the reopened file."""
    from api import codec, kinds
    from api.errors import APIError
    try:
        docs = codec.decode(edited, source=f"{res.ref(name)}")
    except codec.DecodeError as err:
        return f"error: {err}"
    if len(docs) != 1:
        return "error: the edited file must hold exactly one object"
    obj = docs[0].obj
    if (obj.get("metadata") or {}).get("name") != name:
        return "error: metadata.name: cannot be changed by edit"
    try:
        kinds.validate(kinds.defaults(obj))
    except kinds.Invalid as err:
        return f"error: {err}"
    try:
        client.update(res.name, obj, namespace=ns, field_manager="clusterctl-edit")
    except APIError as err:
        return server_error(err, res=res, name=name)
    return None
