"""`clusterctl get TYPE[,TYPE] [NAME...] | TYPE/NAME... [-n NS|-A] [-l SEL] [-o FMT] [-w]`.

    targets ─► (resource, names) per type ─► get each name / list the type
        ─► table per type (NAME prefixed `kind/` when several types), or -o yaml|json|
           name|jsonpath over all objects ─► errors after the output, exit 1
    -w: after the list, a watch from its resourceVersion prints a row per event
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

from clusterctl import printers
from clusterctl.session import Session, emit, server_error, strip_for_output, warn


def add_arguments(p: argparse.ArgumentParser, verb: str) -> None:
    p.add_argument("targets", nargs="*", metavar="TYPE[/NAME] [NAME...]")
    p.add_argument("-A", "--all-namespaces", action="store_true")
    p.add_argument("-l", "--selector", default="", help="label selector: app=web,tier!=db")
    p.add_argument("--field-selector", default="", help="e.g. status.phase=Running")
    p.add_argument("-o", "--output", default="",
                   help="wide|yaml|json|name|jsonpath=TEMPLATE")
    p.add_argument("-w", "--watch", action="store_true", help="after listing, watch changes")
    p.add_argument("--show-labels", action="store_true")
    p.add_argument("--no-headers", action="store_true")
    p.add_argument("--show-managed-fields", action="store_true")
    p.add_argument("--request-timeout", type=float, default=None,
                   help="seconds before a watch ends (default: until interrupted)")


def with_kind(obj: dict[str, Any], res: Any) -> dict[str, Any]:
    """List items carry no apiVersion/kind on the wire; -o yaml shows them, like kubectl."""
    if "kind" in obj and "apiVersion" in obj:
        return obj
    return {"apiVersion": res.api_version, "kind": res.kind, **obj}


def gather(s: Session, args: argparse.Namespace,
           ) -> tuple[list[tuple[Any, list[dict[str, Any]], str]], list[str], bool]:
    """[(resource, objects, list resourceVersion)], errors, and whether one NAME was asked."""
    from api.errors import APIError
    from clusterctl.resources import parse_targets
    resolver = s.resolver()
    groups: dict[str, tuple[Any, list[str | None]]] = {}
    for type_text, name in parse_targets(args.targets):
        res = resolver.resolve(type_text)
        groups.setdefault(res.name, (res, []))[1].append(name)
    client = s.client()
    ns = "" if args.all_namespaces else s.namespace
    out: list[tuple[Any, list[dict[str, Any]], str]] = []
    errors: list[str] = []
    named = 0
    for res, names in groups.values():
        where = ns if res.namespaced else ""
        objs: list[dict[str, Any]] = []
        rv = ""
        if names == [None] or None in names:
            listed = client.list(res.name, namespace=where, label_selector=args.selector,
                                 field_selector=args.field_selector)
            objs = [with_kind(o, res) for o in listed.get("items") or []]
            rv = str((listed.get("metadata") or {}).get("resourceVersion") or "")
        else:
            for name in names:
                named += 1
                try:
                    objs.append(client.get(res.name, str(name), namespace=where))
                except APIError as err:
                    errors.append(server_error(err, res=res, name=str(name)))
        out.append((res, objs, rv))
    return out, errors, named == 1 and len(groups) == 1


def run(args: argparse.Namespace) -> int:
    s = Session(args)
    found, errors, single = gather(s, args)
    output = args.output
    if not args.show_managed_fields:
        found = [(r, [strip_for_output(o) for o in objs], rv) for r, objs, rv in found]
    total = sum(len(objs) for _, objs, _ in found)
    if total == 0 and not errors and not args.watch:
        ns = s.namespace
        namespaced = any(r.namespaced for r, _, _ in found)
        warn(f"No resources found in {ns} namespace." if namespaced and
             not args.all_namespaces else "No resources found")
    elif output in ("", "wide"):
        now = dt.datetime.now(dt.UTC)
        multi = len(found) > 1
        chunks = []
        for res, objs, _ in found:
            if objs:
                chunks.append(_table(res, objs, args, now=now, multi=multi, header=True))
        sys.stdout.write("\n".join(chunks))
    elif total:
        objs = [o for _, group, _ in found for o in group]
        refs = [res.ref(o["metadata"]["name"]) for res, group, _ in found for o in group]
        text = printers.render(objs, output=output, single=single, refs=refs)
        if not output.startswith("jsonpath="):  # kubectl ends jsonpath without a newline
            text = text if text.endswith("\n") or not text else text + "\n"
        sys.stdout.write(text)
    for line in errors:
        warn(line)
    if args.watch:
        if len(found) != 1:
            warn("error: you may only specify a single resource type with --watch")
            return 1
        watch(s, args, found[0][0], found[0][2])
    s.close()
    return 1 if errors else 0


def _table(res: Any, objs: list[dict[str, Any]], args: argparse.Namespace, *,
           now: dt.datetime, multi: bool, header: bool) -> str:
    rows = printers.table(res.kind, objs, now=now, wide=args.output == "wide",
                          all_namespaces=args.all_namespaces and res.namespaced,
                          name_prefix=res.ref("") if multi else "",
                          header=header and not args.no_headers)
    if args.show_labels:
        start = 1 if header and not args.no_headers else 0
        if start:
            rows[0].append("LABELS")
        for row, o in zip(rows[start:], objs, strict=True):
            labels = (o.get("metadata") or {}).get("labels") or {}
            row.append(",".join(f"{k}={v}" for k, v in labels.items()) or "<none>")
    return printers.format_table(rows)


def watch(s: Session, args: argparse.Namespace, res: Any, rv: str) -> None:
    """Print each change after RV until interrupted (or --request-timeout)."""
    from api.errors import APIError, Reason
    names = [t.partition("/")[2] or None for t in args.targets] if "/" in "".join(
        args.targets) else args.targets[1:]
    fields = [args.field_selector] if args.field_selector else []
    if len(names) == 1 and names[0]:
        fields.append(f"metadata.name={names[0]}")
    ns = "" if args.all_namespaces or not res.namespaced else s.namespace
    header = not rv  # a table was printed already when the list returned objects
    try:
        for ev in s.client().watch(res.name, namespace=ns, resource_version=rv or "0",
                                   label_selector=args.selector,
                                   field_selector=",".join(fields),
                                   timeout=args.request_timeout):
            if ev["type"] == "BOOKMARK":
                continue
            obj = ev["object"] if args.show_managed_fields else strip_for_output(ev["object"])
            obj = with_kind(obj, res)
            if args.output in ("", "wide"):
                now = dt.datetime.now(dt.UTC)
                sys.stdout.write(_table(res, [obj], args, now=now, multi=False,
                                        header=header))
                header = False
            else:
                emit(printers.render([obj], output=args.output, single=True,
                                     refs=[res.ref(obj["metadata"]["name"])]))
            sys.stdout.flush()
    except APIError as err:
        if err.reason is not Reason.TIMEOUT:
            raise
