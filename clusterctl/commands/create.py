"""`clusterctl create -f FILE|DIR|- [-R] [--dry-run=server]`: create each object; an
object that exists already is an error (AlreadyExists), the others are still created."""

from __future__ import annotations

import argparse
import sys

from clusterctl.commands.apply import add_file_arguments, plan
from clusterctl.session import Session, emit, server_error


def add_arguments(p: argparse.ArgumentParser, verb: str) -> None:
    add_file_arguments(p)
    p.add_argument("--dry-run", nargs="?", const="server", default="none",
                   choices=("none", "server"))


def run(args: argparse.Namespace) -> int:
    from api.errors import APIError
    from clusterctl import manifests
    s = Session(args)
    docs, read_errors = manifests.read(args.filename, recursive=args.recursive,
                                       verb="create")
    errors = [f"error: {e}" for e in read_errors]
    rc = 0
    dry = args.dry_run == "server"
    for doc, res, ns, obj in plan(s, docs, errors) if docs else []:
        name = str(obj["metadata"].get("name") or obj["metadata"].get("generateName", ""))
        try:
            made = s.client().create(res.name, obj, namespace=ns, dry_run=dry,
                                     field_manager="clusterctl")
        except APIError as err:
            sys.stderr.write(server_error(err, res=res, name=name, action=(
                f'error when creating "{doc.source}"')) + "\n")
            rc = 1
            continue
        emit(f"{res.ref(made['metadata']['name'])} created"
             + (" (server dry run)" if dry else ""))
    for line in errors:
        sys.stderr.write(line + "\n")
    s.close()
    return 1 if errors else rc
