"""`clusterctl config view|get-contexts|current-context|use-context|set-context`: read and
change the kubeconfig-shaped client config (--config, else $CORRAL_CONFIG, else
~/.corral/config). Writes replace the file atomically and keep its mode."""

from __future__ import annotations

import argparse
import os
import tempfile
from typing import Any

from clusterctl.session import CLIError, emit

SECRET_FIELDS = {"certificate-authority-data": "DATA+OMITTED",
                 "client-certificate-data": "DATA+OMITTED",
                 "client-key-data": "DATA+OMITTED", "token": "REDACTED"}


def add_arguments(p: argparse.ArgumentParser, verb: str) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    view = sub.add_parser("view", help="print the config (secrets hidden unless --raw)")
    view.add_argument("--raw", action="store_true")
    view.add_argument("--minify", action="store_true", help="only the current context")
    sub.add_parser("get-contexts", help="list the contexts")
    sub.add_parser("current-context", help="print the current context's name")
    use = sub.add_parser("use-context", help="make NAME the current context")
    use.add_argument("name")
    st = sub.add_parser("set-context", help="change a context (or --current)")
    st.add_argument("name", nargs="?")
    st.add_argument("--current", action="store_true")
    st.add_argument("--namespace", dest="set_namespace")
    st.add_argument("--cluster")
    st.add_argument("--user")


def load(path: str) -> dict[str, Any]:
    import yaml
    try:
        with open(path) as f:
            doc = yaml.safe_load(f)
    except FileNotFoundError:
        raise CLIError(f"no client config at {path}") from None
    except yaml.YAMLError as err:
        raise CLIError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(doc, dict):
        raise CLIError(f"{path}: not a config (want a mapping with clusters, users, "
                       "contexts)")
    return doc


def save(path: str, doc: dict[str, Any]) -> None:
    import yaml
    mode = os.stat(path).st_mode & 0o777 if os.path.exists(path) else 0o600
    fd, tmp = tempfile.mkstemp(prefix=".config-", dir=os.path.dirname(path) or ".")
    try:
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(doc, f, sort_keys=False, default_flow_style=False)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def redact(doc: dict[str, Any]) -> dict[str, Any]:
    out = dict(doc)
    for section, inner in (("clusters", "cluster"), ("users", "user")):
        entries = []
        for entry in doc.get(section) or []:
            body = {k: (SECRET_FIELDS[k] if k in SECRET_FIELDS and v else v)
                    for k, v in (entry.get(inner) or {}).items()}
            entries.append({**entry, inner: body})
        out[section] = entries
    return out


def minify(doc: dict[str, Any]) -> dict[str, Any]:
    name = doc.get("current-context")
    ctxs = [c for c in doc.get("contexts") or [] if c.get("name") == name]
    ctx = (ctxs[0].get("context") or {}) if ctxs else {}
    return {**doc, "contexts": ctxs,
            "clusters": [c for c in doc.get("clusters") or []
                         if c.get("name") == ctx.get("cluster")],
            "users": [u for u in doc.get("users") or [] if u.get("name") == ctx.get("user")]}


def _context(doc: dict[str, Any], name: str) -> dict[str, Any]:
    for c in doc.get("contexts") or []:
        if c.get("name") == name:
            ctx: dict[str, Any] = c.setdefault("context", {})
            return ctx
    raise CLIError(f'no context exists with the name: "{name}"')


def run(args: argparse.Namespace) -> int:
    from api.client import config_path
    path = config_path(args.config)
    doc = load(path)
    if args.action == "view":
        shown = minify(doc) if args.minify else doc
        from api.codec import to_yaml
        emit(to_yaml(shown if args.raw else redact(shown)))
    elif args.action == "current-context":
        if not doc.get("current-context"):
            raise CLIError("current-context is not set")
        emit(str(doc["current-context"]))
    elif args.action == "get-contexts":
        from clusterctl.printers import format_table
        rows = [["CURRENT", "NAME", "CLUSTER", "AUTHINFO", "NAMESPACE"]]
        for c in doc.get("contexts") or []:
            ctx = c.get("context") or {}
            rows.append(["*" if c.get("name") == doc.get("current-context") else "",
                         str(c.get("name", "")), str(ctx.get("cluster", "")),
                         str(ctx.get("user", "")), str(ctx.get("namespace", "")) or ""])
        emit(format_table(rows))
    elif args.action == "use-context":
        _context(doc, args.name)
        doc["current-context"] = args.name
        save(path, doc)
        emit(f'Switched to context "{args.name}".')
    else:
        name = doc.get("current-context") if args.current else args.name
        if not name:
            raise CLIError("set-context needs a NAME or --current")
        try:
            ctx = _context(doc, str(name))
            verb = "modified"
        except CLIError:
            doc.setdefault("contexts", []).append({"name": name, "context": {}})
            ctx, verb = doc["contexts"][-1]["context"], "created"
        for key, value in (("namespace", args.set_namespace), ("cluster", args.cluster),
                           ("user", args.user)):
            if value is not None:
                ctx[key] = value
        save(path, doc)
        emit(f'Context "{name}" {verb}.')
    return 0
