"""`clusterctl apply -f FILE|DIR|- [-R] [--dry-run=server] [--prune -l SEL]`.

    read every document ─► defaults + validate each locally ─► place (resource, namespace)
        ─► server dry-run of every object ─► any error? report all, apply nothing, exit 1
        ─► server-side apply each (field manager "clusterctl"): created|configured|unchanged
        ─► --prune: delete what clusterctl applied earlier, matches -l, and is not in files
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from clusterctl.session import CLIError, Session, emit, server_error

Key = tuple[str, str, str]  # (resource, namespace, name)
MANAGER = "clusterctl"


def add_file_arguments(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument("-f", "--filename", action="append", default=[], required=required,
                   metavar="FILE", help="a file, a directory of manifests, or - for stdin")
    p.add_argument("-R", "--recursive", action="store_true",
                   help="process the directories given with -f recursively")


def add_arguments(p: argparse.ArgumentParser, verb: str) -> None:
    add_file_arguments(p)
    p.add_argument("--dry-run", nargs="?", const="server", default="none",
                   choices=("none", "server", "client"),
                   help="server: the server admits every object and stores nothing")
    p.add_argument("--server-side", action="store_true",
                   help="accepted for kubectl's habits: apply is always server-side")
    p.add_argument("--force-conflicts", action="store_true",
                   help="take ownership of fields other managers own")
    p.add_argument("--field-manager", default=MANAGER)
    p.add_argument("--prune", action="store_true",
                   help="delete objects of the applied types that match -l and were "
                        "applied before but are not in the files")
    p.add_argument("-l", "--selector", default="", help="label selector for --prune")


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def norm(o: dict[str, Any]) -> dict[str, Any]:
        meta = {k: v for k, v in (o.get("metadata") or {}).items()
                if k not in ("managedFields", "resourceVersion", "generation")}
        return {**o, "metadata": meta}
    return norm(a) == norm(b)


def validate_locally(docs: list[Any], errors: list[str]) -> list[Any]:
    """The documents that pass api.kinds.validate (after defaults); ERRORS gets the rest."""
    from api import kinds
    good = []
    for doc in docs:
        try:
            kinds.validate(kinds.defaults(doc.obj))
        except kinds.Invalid as err:
            errors.append(f"error: {doc.where()}: {err}")
            continue
        good.append(doc)
    return good


def plan(s: Session, docs: list[Any], errors: list[str],
         ) -> list[tuple[Any, Any, str, dict[str, Any]]]:
    """(document, resource, namespace, object) for each document; ERRORS gets the rest."""
    from clusterctl import manifests
    resolver = s.resolver()
    namespace = s.namespace
    out = []
    for doc in docs:
        try:
            res, ns, obj = manifests.place(doc, resolver, namespace=namespace,
                                           explicit=s.explicit_namespace)
        except CLIError as err:
            errors.append(f"error: {err}")
            continue
        out.append((doc, res, ns, obj))
    return out


def run(args: argparse.Namespace) -> int:
    from api.errors import APIError, Reason
    from clusterctl import manifests
    if args.prune and not args.selector:
        raise CLIError("--prune needs a label selector (-l): only matching objects are "
                       "pruned")
    s = Session(args)
    docs, read_errors = manifests.read(args.filename, recursive=args.recursive)
    errors = [f"error: {e}" for e in read_errors]
    docs = validate_locally(docs, errors)
    items = plan(s, docs, errors) if docs else []
    client = s.client() if items else None
    new_namespaces = {m["metadata"].get("name") for _, r, _, m in items if r.name ==
                      "namespaces"}
    force = args.force_conflicts
    for doc, res, ns, obj in items:  # the server's admission, for every object, first
        assert client is not None
        try:
            client.apply(res.name, obj, namespace=ns, field_manager=args.field_manager,
                         force=force, dry_run=True)
        except APIError as err:
            if err.reason is Reason.NOT_FOUND and err.details.get("kind") == "Namespace" \
                    and err.details.get("name") in new_namespaces:
                continue  # its namespace is in the same files: it will exist by then
            errors.append(_apply_error(err, doc, res, obj))
    if errors:
        for line in errors:
            sys.stderr.write(line + "\n")
        sys.stderr.write(f"error: nothing applied: {len(errors)} "
                         f"error{'s' if len(errors) > 1 else ''}\n")
        return 1
    rc = 0
    applied: set[Key] = set()
    suffix = {"server": " (server dry run)", "client": " (dry run)"}.get(args.dry_run, "")
    for doc, res, ns, obj in items:
        assert client is not None
        name = obj["metadata"].get("name", "")
        applied.add((res.name, ns, name))
        try:
            rc |= _apply_one(client, args, res=res, ns=ns, obj=obj, suffix=suffix)
        except APIError as err:
            sys.stderr.write(_apply_error(err, doc, res, obj) + "\n")
            rc = 1
    if args.prune and client is not None:
        rc |= prune(client, items, applied, selector=args.selector,
                    dry_run=args.dry_run != "none", suffix=suffix)
    s.close()
    return rc


def _apply_one(client: Any, args: argparse.Namespace, *, res: Any, ns: str,
               obj: dict[str, Any], suffix: str) -> int:
    from api.errors import APIError, Reason
    name = obj["metadata"].get("name", "")
    try:
        before: dict[str, Any] | None = client.get(res.name, name, namespace=ns)
    except APIError as err:
        if err.reason is not Reason.NOT_FOUND:
            raise
        before = None
    if args.dry_run == "client":
        emit(f"{res.ref(name)} {'created' if before is None else 'configured'}{suffix}")
        return 0
    out = client.apply(res.name, obj, namespace=ns, field_manager=args.field_manager,
                       force=args.force_conflicts, dry_run=args.dry_run == "server")
    if before is None:
        word = "created"
    elif args.dry_run == "server":
        word = "unchanged" if _same(before, out) else "configured"
    else:
        same = out["metadata"].get("resourceVersion") == before["metadata"].get(
            "resourceVersion")
        word = "unchanged" if same else "configured"
    emit(f"{res.ref(name)} {word}{suffix}")
    return 0


def _apply_error(err: Any, doc: Any, res: Any, obj: dict[str, Any]) -> str:
    from api.errors import Reason
    name = str((obj.get("metadata") or {}).get("name") or "")
    text = server_error(err, res=res, name=name, action=f"error when applying "
                        f'"{doc.source}" document {doc.index} (line {doc.line})')
    if err.reason is Reason.CONFLICT and err.causes:
        text += ("\nPlease review the fields above--they currently have other managers. "
                 "Rerun with --force-conflicts to take them over.")
    return text


def applied_by(obj: dict[str, Any], manager: str = MANAGER) -> bool:
    return any(m.get("manager") == manager and m.get("operation") == "Apply"
               for m in (obj.get("metadata") or {}).get("managedFields") or [])


def prune(client: Any, items: list[Any], applied: set[Key], *, selector: str,
          dry_run: bool, suffix: str) -> int:
    """Delete the objects of the applied types, in the applied namespaces, that match
    SELECTOR, were applied by clusterctl, and are not in APPLIED."""
    from api.errors import APIError
    types = {res.name: res for _, res, _, _ in items}
    namespaces = {ns for _, res, ns, _ in items if res.namespaced}
    rc = 0
    for res in types.values():
        for ns in sorted(namespaces) if res.namespaced else [""]:
            listed = client.list(res.name, namespace=ns, label_selector=selector)
            for o in listed.get("items") or []:
                m = o["metadata"]
                key = (res.name, m.get("namespace", ""), m["name"])
                if key in applied or not applied_by(o):
                    continue
                try:
                    client.delete(res.name, m["name"], namespace=key[1], dry_run=dry_run)
                    emit(f"{res.ref(m['name'])} pruned{suffix}")
                except APIError as err:
                    sys.stderr.write(server_error(err, res=res, name=m["name"]) + "\n")
                    rc = 1
    return rc
