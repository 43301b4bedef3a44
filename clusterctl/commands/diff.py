"""`clusterctl diff -f FILE|DIR|-`: unified diff of each live object against what a server
dry-run apply of the file would make of it. Exit 0: no differences; 1: differences;
2: an error (kubectl's codes, so scripts can tell "changed" from "failed")."""

from __future__ import annotations

import argparse
import difflib
import sys
from typing import Any

from clusterctl.commands.apply import MANAGER, add_file_arguments, plan
from clusterctl.session import Session, server_error

HIDDEN = ("managedFields", "resourceVersion", "generation")


def add_arguments(p: argparse.ArgumentParser, verb: str) -> None:
    add_file_arguments(p)
    p.add_argument("--force-conflicts", action="store_true")


def _yaml(obj: dict[str, Any] | None) -> list[str]:
    from api.codec import to_yaml
    if obj is None:
        return []
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in HIDDEN}
    return to_yaml({**obj, "metadata": meta}).splitlines(keepends=True)


def run(args: argparse.Namespace) -> int:
    from api.errors import APIError, Reason
    from clusterctl import manifests
    s = Session(args)
    docs, read_errors = manifests.read(args.filename, recursive=args.recursive, verb="diff")
    errors = [f"error: {e}" for e in read_errors]
    items = plan(s, docs, errors) if docs else []
    differs = False
    for _, res, ns, obj in items:
        name = str(obj["metadata"].get("name", ""))
        client = s.client()
        try:
            live: dict[str, Any] | None = client.get(res.name, name, namespace=ns)
        except APIError as err:
            if err.reason is not Reason.NOT_FOUND:
                errors.append(server_error(err, res=res, name=name))
                continue
            live = None
        try:
            merged = client.apply(res.name, obj, namespace=ns, field_manager=MANAGER,
                                  force=args.force_conflicts, dry_run=True)
        except APIError as err:
            errors.append(server_error(err, res=res, name=name))
            continue
        label = f"{res.api_version.replace('/', '.')}.{res.kind}.{ns + '.' if ns else ''}" \
                f"{name}"
        lines = list(difflib.unified_diff(_yaml(live), _yaml(merged),
                                          fromfile=f"live/{label}",
                                          tofile=f"merged/{label}"))
        if lines:
            differs = True
            sys.stdout.writelines(lines)
    for line in errors:
        sys.stderr.write(line + "\n")
    s.close()
    return 2 if errors else (1 if differs else 0)
