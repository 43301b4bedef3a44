"""`clusterctl delete (-f FILE | TYPE NAME... | TYPE/NAME... | TYPE -l SEL | TYPE --all)`.

    targets ─► (resource, namespace, name) ─► Delete (grace period, propagation)
        ─► `pod "web" deleted` ─► --wait (default): watch until each object is gone
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from clusterctl.session import CLIError, Session, emit, server_error

CASCADE = {"background": "Background", "foreground": "Foreground", "orphan": "Orphan",
           "true": "Background", "false": "Orphan"}


def _bool(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"want true or false, got {text!r}")
    return text.lower() == "true"


def add_arguments(p: argparse.ArgumentParser, verb: str) -> None:
    from clusterctl.commands.apply import add_file_arguments
    p.add_argument("targets", nargs="*", metavar="TYPE[/NAME] [NAME...]")
    add_file_arguments(p, required=False)
    p.add_argument("-l", "--selector", default="")
    p.add_argument("--field-selector", default="")
    p.add_argument("--all", action="store_true", help="every object of the type")
    p.add_argument("-A", "--all-namespaces", action="store_true")
    p.add_argument("--ignore-not-found", action="store_true")
    p.add_argument("--grace-period", type=int, default=None,
                   help="seconds a pod gets to stop (0 with --force: at once)")
    p.add_argument("--now", action="store_true", help="--grace-period=1")
    p.add_argument("--force", action="store_true")
    p.add_argument("--cascade", default="background", choices=sorted(CASCADE),
                   help="how dependents go: background, foreground or orphan")
    p.add_argument("--wait", nargs="?", const=True, default=True, type=_bool,
                   help="wait until the objects are gone (default true)")
    p.add_argument("--timeout", type=float, default=0,
                   help="seconds to wait (0: a week, as kubectl)")
    p.add_argument("--dry-run", nargs="?", const="server", default="none",
                   choices=("none", "server"))


def targets(s: Session, args: argparse.Namespace) -> list[tuple[Any, str, str]]:
    """(resource, namespace, name) of everything to delete."""
    from clusterctl import manifests
    from clusterctl.resources import parse_targets
    if args.filename:
        if args.targets:
            raise CLIError("give either -f or TYPE NAME, not both")
        docs, errors = manifests.read(args.filename, recursive=args.recursive, verb="delete")
        if errors:
            raise CLIError("\n".join(errors))
        resolver = s.resolver()
        out = []
        for doc in docs:
            res, ns, obj = manifests.place(doc, resolver, namespace=s.namespace,
                                           explicit=s.explicit_namespace)
            out.append((res, ns, str(obj["metadata"].get("name", ""))))
        return out
    pairs = parse_targets(args.targets)
    resolver = s.resolver()
    out = []
    ns_all = "" if args.all_namespaces else s.namespace
    for type_text, name in pairs:
        res = resolver.resolve(type_text)
        ns = s.namespace if res.namespaced else ""
        if name is not None:
            out.append((res, ns, name))
            continue
        if not (args.all or args.selector or args.field_selector):
            raise CLIError("resource(s) were provided, but no name was specified; give "
                           "NAME, -l SELECTOR or --all")
        listed = s.client().list(res.name, namespace=ns_all if res.namespaced else "",
                                 label_selector=args.selector,
                                 field_selector=args.field_selector)
        out += [(res, o["metadata"].get("namespace", ""), o["metadata"]["name"])
                for o in listed.get("items") or []]
    return out


def run(args: argparse.Namespace) -> int:
    from api.errors import APIError, Reason
    s = Session(args)
    todo = targets(s, args)
    grace = 1 if args.now else args.grace_period
    if args.force and grace is None:
        grace = 0
    dry = args.dry_run == "server"
    rc = 0
    gone: list[tuple[Any, str, str, str]] = []
    if not todo and not args.filename:
        sys.stderr.write("No resources found\n")
    for res, ns, name in todo:
        try:
            obj = s.client().delete(res.name, name, namespace=ns, grace_period=grace,
                                    propagation=CASCADE[args.cascade], dry_run=dry)
        except APIError as err:
            if err.reason is Reason.NOT_FOUND and args.ignore_not_found:
                continue
            sys.stderr.write(server_error(err, res=res, name=name) + "\n")
            rc = 1
            continue
        emit(f'{res.singular}{"." + res.group if res.group else ""} "{name}" deleted'
             + (" (server dry run)" if dry else ""))
        gone.append((res, ns, name, str((obj.get("metadata") or {}).get("uid") or "")))
    if args.wait and not dry and gone:
        deadline = time.monotonic() + (args.timeout or 7 * 24 * 3600)
        for res, ns, name, uid in gone:
            if not wait_gone(s, res, ns, name, uid=uid, deadline=deadline):
                sys.stderr.write(f"error: timed out waiting for {res.ref(name)} to be "
                                 "deleted\n")
                rc = 1
    s.close()
    return rc


def wait_gone(s: Session, res: Any, ns: str, name: str, *, uid: str,
              deadline: float) -> bool:
    """True once the object (this UID: a new one of the same name does not count) is
    gone; a watch wakes us, a short poll covers a missed event."""
    from api.errors import APIError, Reason
    client = s.client()
    while time.monotonic() < deadline:
        try:
            obj = client.get(res.name, name, namespace=ns)
        except APIError as err:
            if err.reason is Reason.NOT_FOUND:
                return True
            raise
        meta = obj.get("metadata") or {}
        if uid and meta.get("uid") != uid:
            return True
        left = deadline - time.monotonic()
        try:
            for ev in client.watch(res.name, namespace=ns,
                                   resource_version=str(meta.get("resourceVersion", "")),
                                   field_selector=f"metadata.name={name}",
                                   timeout=max(0.1, min(left, 5.0))):
                if ev["type"] == "DELETED":
                    return True
        except APIError as err:
            if err.reason not in (Reason.TIMEOUT, Reason.GONE):
                raise
    return False
