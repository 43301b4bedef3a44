"""`clusterctl scale TYPE NAME --replicas=N [--current-replicas=M]`: through the scale
subresource (read it, set spec.replicas, write it back at its resourceVersion)."""

from __future__ import annotations

import argparse

from clusterctl.session import CLIError, Session, emit


def add_arguments(p: argparse.ArgumentParser, verb: str) -> None:
    p.add_argument("targets", nargs="+", metavar="TYPE NAME | TYPE/NAME")
    p.add_argument("--replicas", type=int, required=True)
    p.add_argument("--current-replicas", type=int, default=None,
                   help="scale only if the current size is this")


def run(args: argparse.Namespace) -> int:
    from api.errors import APIError
    from clusterctl.resources import parse_targets
    from clusterctl.session import server_error
    if args.replicas < 0:
        raise CLIError(f"--replicas: must be >= 0, got {args.replicas}")
    s = Session(args)
    rc = 0
    for type_text, name in parse_targets(args.targets):
        res = s.resolver().resolve(type_text)
        if name is None:
            raise CLIError("scale needs a NAME (TYPE NAME or TYPE/NAME)")
        if "scale" not in res.subresources:
            raise CLIError(f"{res.qualified} cannot be scaled (no scale subresource)")
        ns = s.namespace if res.namespaced else ""
        try:
            scale = s.client().get(res.name, name, namespace=ns, subresource="scale")
            current = (scale.get("spec") or {}).get("replicas", 0)
            if args.current_replicas is not None and current != args.current_replicas:
                raise CLIError(f"{res.ref(name)}: expected {args.current_replicas} "
                               f"replicas, found {current}")
            scale["spec"] = {**(scale.get("spec") or {}), "replicas": args.replicas}
            s.client().update(res.name, scale, namespace=ns, subresource="scale")
        except APIError as err:
            import sys
            sys.stderr.write(server_error(err, res=res, name=name) + "\n")
            rc = 1
            continue
        emit(f"{res.ref(name)} scaled")
    s.close()
    return rc
