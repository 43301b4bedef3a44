"""`clusterctl wait (TYPE/NAME... | TYPE NAME...) --for=condition=C[=V] | --for=delete |
--for=jsonpath='{.status.phase}'=Running [--timeout=30s]`.

    each object: get ─► met? print `pod/web condition met` ─► else watch it (field
    selector metadata.name) until met, deleted, or the deadline: exit 1 on a timeout
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from clusterctl.session import CLIError, Session, emit

Check = Callable[[dict[str, Any] | None], bool]  # None: the object is gone


def duration(text: str) -> float:
    """`30s`, `2m`, `1h`, `500ms`, or plain seconds."""
    units = (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0))
    for suffix, scale in units:
        if text.endswith(suffix) and text[:-len(suffix)].replace(".", "", 1).isdigit():
            return float(text[:-len(suffix)]) * scale
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30s, 2m)") from None


def add_arguments(p: argparse.ArgumentParser, verb: str) -> None:
    p.add_argument("targets", nargs="+", metavar="TYPE/NAME")
    p.add_argument("--for", dest="condition", required=True,
                   help="delete | condition=NAME[=VALUE] | jsonpath='{PATH}'=VALUE")
    p.add_argument("--timeout", type=duration, default=30.0)


def parse_for(text: str) -> tuple[Check, str]:
    """The check --for=TEXT asks for, and what is printed once it holds."""
    if text == "delete":
        return (lambda o: o is None), "deleted"
    kind, _, rest = text.partition("=")
    if kind == "condition" and rest:
        cond, _, want = rest.partition("=")
        want = want or "True"

        def has(o: dict[str, Any] | None) -> bool:
            for c in ((o or {}).get("status") or {}).get("conditions") or []:
                if str(c.get("type", "")).lower() == cond.lower():
                    return str(c.get("status", "")).lower() == want.lower()
            return False
        return has, "condition met"
    if kind == "jsonpath" and rest:
        from clusterctl.jsonpath import render
        path, _, want = rest.rpartition("=")
        if not path:
            raise CLIError(f"--for={text}: want jsonpath='{{PATH}}'=VALUE")
        path = path.strip("'\"")
        return (lambda o: o is not None and render(path, o) == want), "condition met"
    raise CLIError(f"--for={text}: want delete, condition=NAME[=VALUE] or "
                   "jsonpath='{PATH}'=VALUE")


def wait_one(s: Session, res: Any, ns: str, name: str, check: Check,
             deadline: float) -> bool:
    from api.errors import APIError, Reason
    client = s.client()
    while True:
        try:
            obj: dict[str, Any] | None = client.get(res.name, name, namespace=ns)
        except APIError as err:
            if err.reason is not Reason.NOT_FOUND:
                raise
            obj = None
        if check(obj):
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        if obj is None:
            time.sleep(min(left, 0.2))  # not there yet: it may be created
            continue
        rv = str(obj["metadata"].get("resourceVersion", ""))
        try:
            for ev in client.watch(res.name, namespace=ns, resource_version=rv,
                                   field_selector=f"metadata.name={name}",
                                   timeout=max(0.05, min(left, 5.0))):
                gone = ev["type"] == "DELETED"
                if check(None if gone else ev["object"]):
                    return True
                if gone:
                    break
        except APIError as err:
            if err.reason not in (Reason.TIMEOUT, Reason.GONE):
                raise


def run(args: argparse.Namespace) -> int:
    from clusterctl.resources import parse_targets
    check, done = parse_for(args.condition)
    s = Session(args)
    deadline = time.monotonic() + args.timeout
    rc = 0
    for type_text, name in parse_targets(args.targets):
        res = s.resolver().resolve(type_text)
        if name is None:
            raise CLIError("wait needs TYPE/NAME or TYPE NAME")
        ns = s.namespace if res.namespaced else ""
        if wait_one(s, res, ns, name, check, deadline):
            emit(f"{res.ref(name)} {done}")
        else:
            sys.stderr.write(f"error: timed out waiting for the condition on "
                             f"{res.name}/{name}\n")
            rc = 1
    s.close()
    return rc
